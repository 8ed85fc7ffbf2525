"""BUSI / BUID: breast ultrasound lesions (Al-Dhabyani et al. 2020)."""

from __future__ import annotations

from universeg_datasets.raw.common import Pair, RawTaskBuilder, files, label_path, manual_instructions

CLASSES = ("benign", "malignant", "normal")


class Busi(RawTaskBuilder):
    """Breast ultrasound images with lesion masks; an image's several masks (``_mask_1``...) are merged.
    Images of normal breasts have empty masks and give no examples."""

    RAW_FOLDER = "Dataset_BUSI_with_GT"
    HOMEPAGE = "https://scholar.cu.edu.eg/?q=afahmy/pages/dataset"
    MANUAL_DOWNLOAD_INSTRUCTIONS = manual_instructions(
        HOMEPAGE,
        "  Dataset_BUSI_with_GT/benign/benign (1).png, benign (1)_mask.png[, benign (1)_mask_1.png] ...\n"
        "  Dataset_BUSI_with_GT/malignant/...   Dataset_BUSI_with_GT/normal/...",
    )

    @classmethod
    def _pairs(cls, root):
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
