"""BUSI / BUID: breast ultrasound lesions (Al-Dhabyani et al. 2020)."""

from __future__ import annotations

from pathlib import Path

from universeg_datasets.raw.common import Pair, files, label_path
from universeg_datasets.raw.layout import define

CLASSES = ("benign", "malignant", "normal")


def busi_pairs(root: Path) -> list[Pair]:
    """Each image with its mask, and its further masks (``_mask_1`` ...) when it has several; the subject is the
    file name without spaces and brackets."""
    pairs = []
    for category in CLASSES:
        for image in files(root / category, "*.png"):
            if "_mask" in image.stem:
                continue
            first = label_path(image, image.with_name(f"{image.stem}_mask.png"))
            extra = files(root / category, f"{_glob_escape(image.stem)}_mask_*.png")
            subject = image.stem.replace(" ", "").replace("(", "").replace(")", "")
            pairs.append(Pair(subject, image, (first, *extra), ("ultrasound",), {"lesion": None}))
    return pairs


def _glob_escape(text: str) -> str:
    """``text`` with glob wildcards ('(' is fine, '[' is not) escaped."""
    return text.replace("[", "[[]")


define(
    globals(),
    "busi",
    folder="Dataset_BUSI_with_GT",
    url="https://scholar.cu.edu.eg/?q=afahmy/pages/dataset",
    doc="Breast ultrasound images with lesion masks; an image's several masks (``_mask_1``...) are merged.\n"
    "    Images of normal breasts have empty masks and give no examples.",
    pairs=busi_pairs,
    layout_text="  Dataset_BUSI_with_GT/benign/benign (1).png, benign (1)_mask.png[, benign (1)_mask_1.png] ...\n"
    "  Dataset_BUSI_with_GT/malignant/...   Dataset_BUSI_with_GT/normal/...",
)
