"""universeg-jax: UniverSeg universal medical image segmentation in JAX/Flax NNX.

The model is in ``universeg_jax.model``, weight files in ``universeg_jax.weights``, the model a weights spec
names (``"v1"``, a file, a run directory) in ``universeg_jax.trained`` and the researcher-facing API in
``universeg_jax.inference``; the common names are re-exported here.
"""

from universeg_jax.inference import Segmenter
from universeg_jax.model import UniverSeg
from universeg_jax.weights import load, load_official, pretrained, save

__all__ = ["Segmenter", "UniverSeg", "load", "load_official", "pretrained", "save"]
