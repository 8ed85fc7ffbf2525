"""KiTS19: kidney and kidney tumour in contrast CT (Heller et al. 2019)."""

from __future__ import annotations

import tensorflow_datasets as tfds

from universeg_datasets.raw.common import Pair, RawTaskBuilder, files, label_path, manual_instructions

LABELS = {"kidney": 1, "tumor": 2}
LABELLED_CASES = 210  # case_00000 .. case_00209 have segmentations; later cases are the test set


class Kits19(RawTaskBuilder):
    """KiTS19 abdominal CT with kidney (1) and tumour (2) labels, the 210 labelled cases."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "First release.",
        "1.1.0": "Volume slices are normalised with the intensity range of their whole volume, as inference does (was: each slice on its own).",
    }

    RAW_FOLDER = "kits19"
    VOLUMETRIC = True
    HOMEPAGE = "https://github.com/neheller/kits19"
    MANUAL_DOWNLOAD_INSTRUCTIONS = manual_instructions(
        HOMEPAGE,
        "  kits19/data/case_00000/imaging.nii.gz, segmentation.nii.gz ...  (git clone + get_imaging.py)",
    )

    @classmethod
    def _pairs(cls, root):
        pairs = []
        for image in files(root / "data", "case_*/imaging.nii.gz"):
            case = image.parent.name
            if int(case.split("_")[1]) >= LABELLED_CASES:
                continue
            label = label_path(image, image.with_name("segmentation.nii.gz"))
            pairs.append(Pair(case, image, (label,), ("ct",), LABELS))
        return pairs
