"""Grey and white matter of the MNI152 2009a template (the files shipped with nilearn)."""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from universeg_datasets import base, bundled, readers, standardize

DATASET = "mni152_tissue"
FILES = "datasets/data/mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"


class Mni152Tissue(base.TaskBuilder):
    """Grey matter, white matter and whole-brain (grey or white) masks of the MNI152 ICBM 2009a symmetric
    T1 template, from its tissue probability maps thresholded at 0.5. One template, so each slice is its
    own subject (``mni152@<slice>``)."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "First release.",
        "1.1.0": "Volume slices are normalised with the intensity range of their whole volume, as inference does (was: each slice on its own).",
    }

    BUILDER_CONFIGS = base.size_configs(slices=72)
    HOMEPAGE = "https://nist.mni.mcgill.ca/icbm-152-nonlinear-atlases-2009/"

    def _generate_examples(self, dl_manager):
        paths = {name: bundled.package_file("nilearn", FILES.format(name)) for name in ("t1", "gm", "wm")}
        t1, grey, white = (readers.read_volume(paths[name]) for name in ("t1", "gm", "wm"))
        for name, volume in (("gm", grey), ("wm", white)):
            standardize.check_same_size(t1, volume, str(paths["t1"]), str(paths[name]), ndim=3)
        grey, white = grey / max(grey.max(), 1e-6), white / max(white.max(), 1e-6)
        # One label map: 1 grey matter, 2 white matter (probabilities >= 0.5, the larger one wins).
        tissue = np.where(grey >= white, 1, 2) * (np.maximum(grey, white) >= 0.5)
        labels = {"grey_matter": 1, "white_matter": 2, "brain": None}
        for view in standardize.volume_views(t1, tissue, self.builder_config.slices):
            yield from standardize.view_examples(
                view,
                labels,
                dataset=DATASET,
                modality="t1",
                subject=f"mni152@{view.slice_index}",
                size=self.builder_config.size,
            )
