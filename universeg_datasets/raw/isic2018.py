"""ISIC 2018 Task 1: skin lesion boundary segmentation in dermoscopy images (Codella et al. 2019)."""

from __future__ import annotations

from universeg_datasets.raw.common import Pair, RawTaskBuilder, files, label_path, manual_instructions

SPLITS = (("Training", True), ("Validation", False))  # (name, required)


class Isic2018(RawTaskBuilder):
    """ISIC 2018 lesion segmentation: dermoscopy images with binary lesion masks."""

    RAW_FOLDER = "ISIC2018"
    HOMEPAGE = "https://challenge.isic-archive.com/data/#2018"
    MANUAL_DOWNLOAD_INSTRUCTIONS = manual_instructions(
        HOMEPAGE,
        "  ISIC2018/ISIC2018_Task1-2_Training_Input/ISIC_0000000.jpg ...\n"
        "  ISIC2018/ISIC2018_Task1_Training_GroundTruth/ISIC_0000000_segmentation.png ...\n"
        "  (optional) ISIC2018/ISIC2018_Task1-2_Validation_Input/ and ISIC2018_Task1_Validation_GroundTruth/",
    )

    @classmethod
    def _pairs(cls, root):
        pairs = []
        for split, required in SPLITS:
            inputs = root / f"ISIC2018_Task1-2_{split}_Input"
            if not required and not inputs.is_dir():
                continue
            truth = root / f"ISIC2018_Task1_{split}_GroundTruth"
            for image in files(inputs, "ISIC_*.jpg"):
                label = label_path(image, truth / f"{image.stem}_segmentation.png")
                pairs.append(Pair(image.stem, image, (label,), ("dermoscopy",), {"lesion": None}))
        return pairs
