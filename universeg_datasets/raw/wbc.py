"""WBC: white blood cell nucleus and cytoplasm (Zheng et al. 2018)."""

from __future__ import annotations

from universeg_datasets.raw.common import Pair, RawTaskBuilder, files, label_path, manual_instructions

SUBSETS = {"Dataset 1": "jtsc", "Dataset 2": "cellavision"}  # folder -> modality (source lab)


class Wbc(RawTaskBuilder):
    """White blood cell images with nucleus (255) and cytoplasm (128) label maps, two sources."""

    RAW_FOLDER = "segmentation_WBC"
    HOMEPAGE = "https://github.com/zxaoyou/segmentation_WBC"
    MANUAL_DOWNLOAD_INSTRUCTIONS = manual_instructions(
        HOMEPAGE,
        "  segmentation_WBC/Dataset 1/001.bmp, 001.png, ...   (image .bmp, label .png)\n"
        "  segmentation_WBC/Dataset 2/001.bmp, 001.png, ...",
    )

    @classmethod
    def _pairs(cls, root):
        pairs = []
        for folder, modality in SUBSETS.items():
            for image in files(root / folder, "*.bmp"):
                label = label_path(image, image.with_suffix(".png"))
                subject = f"{modality}{image.stem}"
                pairs.append(Pair(subject, image, (label,), (modality,), {"nucleus": 255, "cytoplasm": 128}))
        return pairs
