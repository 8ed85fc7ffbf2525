"""DRIVE: retinal vessels in colour fundus photographs (Staal et al. 2004)."""

from __future__ import annotations

from universeg_datasets.raw.common import Pair, RawTaskBuilder, files, label_path, manual_instructions


class Drive(RawTaskBuilder):
    """DRIVE retinal vessel segmentation: 40 colour fundus images with manual vessel masks."""

    RAW_FOLDER = "DRIVE"
    HOMEPAGE = "https://drive.grand-challenge.org/"
    MANUAL_DOWNLOAD_INSTRUCTIONS = manual_instructions(
        HOMEPAGE,
        "  DRIVE/training/images/21_training.tif ...  DRIVE/training/1st_manual/21_manual1.gif ...\n"
        "  DRIVE/test/images/01_test.tif ...          DRIVE/test/1st_manual/01_manual1.gif ... (optional)",
    )

    @classmethod
    def _pairs(cls, root):
        pairs = []
        for split in ("training", "test"):
            if split == "test" and not (root / split / "1st_manual").is_dir():
                continue  # some DRIVE releases ship the test images without their labels
            for image in files(root / split / "images", "*.tif"):
                number = image.name.split("_")[0]
                label = label_path(image, root / split / "1st_manual" / f"{number}_manual1.gif")
                pairs.append(Pair(f"{split}{number}", image, (label,), ("fundus",), {"vessel": None}))
        return pairs
