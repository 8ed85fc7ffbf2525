"""DRIVE: retinal vessels in colour fundus photographs (Staal et al. 2004)."""

from __future__ import annotations

from pathlib import Path

from universeg_datasets.raw.common import Pair, files, label_path
from universeg_datasets.raw.layout import define


def drive_pairs(root: Path) -> list[Pair]:
    """Each image with its first observer's vessel mask; the test split only when its labels are there."""
    pairs = []
    for split in ("training", "test"):
        if split == "test" and not (root / split / "1st_manual").is_dir():
            continue  # some DRIVE releases ship the test images without their labels
        for image in files(root / split / "images", "*.tif"):
            number = image.name.split("_")[0]
            label = label_path(image, root / split / "1st_manual" / f"{number}_manual1.gif")
            pairs.append(Pair(f"{split}{number}", image, (label,), ("fundus",), {"vessel": None}))
    return pairs


define(
    globals(),
    "drive",
    folder="DRIVE",
    url="https://drive.grand-challenge.org/",
    doc="DRIVE retinal vessel segmentation: 40 colour fundus images with manual vessel masks.",
    pairs=drive_pairs,
    layout_text="  DRIVE/training/images/21_training.tif ...  DRIVE/training/1st_manual/21_manual1.gif ...\n"
    "  DRIVE/test/images/01_test.tif ...          DRIVE/test/1st_manual/01_manual1.gif ... (optional)",
)
