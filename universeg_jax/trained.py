"""A trained model from a weights spec: ``load(weights)`` -> ``(model, TrainedWith)``.

The one place that knows the kinds of weights a user may name (``--weights`` of the command line and the app,
``Segmenter.from_weights``, ``config.weights`` of the evaluation, ``config.train.init_weights`` of training):

* ``None``: the model shipped at ``universeg_jax/assets/default.safetensors``;
* ``"v1"``: the official weights (downloaded once; 128x128);
* ``*.safetensors``: written by ``universeg_jax.weights.save`` (architecture and how it was trained in the file);
* ``*.pt`` / ``*.pth``: an official PyTorch state_dict (assumed 128x128);
* a training run directory (``checkpoint.is_run``): its latest checkpoint, at its ``data.size``;
* another directory: the single ``*.safetensors`` export inside it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from universeg_jax import preprocess as pp
from universeg_jax import weights as W
from universeg_jax.model import UniverSeg

DEFAULT_WEIGHTS = Path(__file__).parent / "assets" / "default.safetensors"
# The support size v1 was trained with (the paper's), assumed for weights that do not record theirs.
DEFAULT_SUPPORT_SIZE = 64


@dataclasses.dataclass(frozen=True)
class TrainedWith:
    """How weights were trained, as far as inference needs it: image ``size``, ``support_size``, ``resize`` mode."""

    size: tuple[int, int] = pp.DEFAULT_SIZE
    support_size: int = DEFAULT_SUPPORT_SIZE
    resize: str = "stretch"


def load(weights: str | Path | None = None) -> tuple[UniverSeg, TrainedWith]:
    """The model for ``weights`` (see the module docstring) and how it was trained."""
    if weights is None:
        if not DEFAULT_WEIGHTS.is_file():
            raise FileNotFoundError(
                f"no default weights are shipped with this installation ({DEFAULT_WEIGHTS} is missing); "
                "choose one of:\n"
                "  --weights v1          the official UniverSeg weights (downloaded once; weights='v1' in Python)\n"
                "  --weights FILE        a .safetensors file (universeg-jax export) or an official .pt file\n"
                "  --weights RUN_DIR     a training run directory (python -m universeg_jax.main --workdir=RUN_DIR)"
            )
        return _from_safetensors(DEFAULT_WEIGHTS)
    if str(weights) in W.PRETRAINED:
        return W.pretrained(str(weights)), TrainedWith()
    path = Path(weights)
    if path.is_dir():
        from universeg_jax import checkpoint  # orbax only when a directory is named

        if checkpoint.is_run(path):
            data = checkpoint.read_config(path)["data"]
            support = int(data.get("support_size") or DEFAULT_SUPPORT_SIZE)
            return checkpoint.load_model(path), TrainedWith((data["size"], data["size"]), support)
        return _from_safetensors(_single_export(path))
    if not path.exists():
        raise FileNotFoundError(
            f"weights {str(weights)!r} is neither a known name ({', '.join(sorted(W.PRETRAINED))}) nor an "
            "existing file or directory"
        )
    if path.suffix in (".pt", ".pth"):
        return W.load_official(path), TrainedWith()
    if path.suffix == ".safetensors":
        return _from_safetensors(path)
    raise ValueError(f"weights file {path} must end in .safetensors, .pt or .pth")


def _from_safetensors(path: Path) -> tuple[UniverSeg, TrainedWith]:
    """A safetensors file and what its metadata records (``image_size``; ``support_size`` and ``resize`` when the
    writer recorded them, else v1's 64 and ``stretch``)."""
    model = W.load(path)
    metadata = W.read_metadata(path)
    try:
        support = int(json.loads(metadata.get("support_size", "0")) or DEFAULT_SUPPORT_SIZE)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: bad support_size in the metadata: {metadata.get('support_size')!r}") from err
    resize = metadata.get("resize", "stretch")
    if resize not in pp.RESIZE_MODES:
        raise ValueError(f"{path}: bad resize mode in the metadata: {resize!r}")
    return model, TrainedWith(W.trained_image_size(path) or pp.DEFAULT_SIZE, support, resize)


def _single_export(directory: Path) -> Path:
    """The one ``*.safetensors`` file in a directory (searched recursively, e.g. a training run's export)."""
    found = sorted(directory.rglob("*.safetensors"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise FileNotFoundError(
            f"weights directory {directory} contains no .safetensors export. Export the trained model with "
            "universeg_jax.weights.save(model, 'model.safetensors') and pass that file or its directory."
        )
    names = ", ".join(str(p.relative_to(directory)) for p in found)
    raise ValueError(f"weights directory {directory} contains several .safetensors files ({names}); pass one")
