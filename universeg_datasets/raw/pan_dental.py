"""Panoramic dental X-rays with segmented mandibles (Abdi et al. 2015)."""

from __future__ import annotations

from universeg_datasets.raw.common import Pair, RawTaskBuilder, files, label_path, manual_instructions


class PanDental(RawTaskBuilder):
    """Mandible segmentation in panoramic dental X-rays (labels of the first expert, Segmentation1)."""

    RAW_FOLDER = "PanDental"
    HOMEPAGE = "https://data.mendeley.com/datasets/hxt48yk462/1"
    MANUAL_DOWNLOAD_INSTRUCTIONS = manual_instructions(
        HOMEPAGE, "  PanDental/Images/1.png ...   PanDental/Segmentation1/1.png ..."
    )

    @classmethod
    def _pairs(cls, root):
        pairs = []
        for image in files(root / "Images", "*.png"):
            label = label_path(image, root / "Segmentation1" / image.name)
            pairs.append(Pair(image.stem, image, (label,), ("xray",), {"mandible": None}))
        return pairs
