"""WBC: white blood cell nucleus and cytoplasm (Zheng et al. 2018)."""

from __future__ import annotations

from universeg_datasets.raw.layout import Layout, define

SUBSETS = {"Dataset 1": "jtsc", "Dataset 2": "cellavision"}  # folder -> modality (source lab)

define(
    globals(),
    "wbc",
    folder="segmentation_WBC",
    url="https://github.com/zxaoyou/segmentation_WBC",
    doc="White blood cell images with nucleus (255) and cytoplasm (128) label maps, two sources.",
    layouts=[
        Layout(
            f"{folder}/{{n}}.bmp",
            labels=(f"{folder}/{{n}}.png",),
            label_values={"nucleus": 255, "cytoplasm": 128},
            modality=modality,
            subject=f"{modality}{{n}}",
        )
        for folder, modality in SUBSETS.items()
    ],
    layout_text="  segmentation_WBC/Dataset 1/001.bmp, 001.png, ...   (image .bmp, label .png)\n"
    "  segmentation_WBC/Dataset 2/001.bmp, 001.png, ...",
)
