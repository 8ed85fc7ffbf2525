"""Panoramic dental X-rays with segmented mandibles (Abdi et al. 2015)."""

from __future__ import annotations

from universeg_datasets.raw.layout import Layout, define

define(
    globals(),
    "pan_dental",
    folder="PanDental",
    url="https://data.mendeley.com/datasets/hxt48yk462/1",
    doc="Mandible segmentation in panoramic dental X-rays (labels of the first expert, Segmentation1).",
    layouts=[
        Layout(
            "Images/{name}.png",
            labels=("Segmentation1/{name}.png",),
            label_values={"mandible": None},
            modality="xray",
        )
    ],
    layout_text="  PanDental/Images/1.png ...   PanDental/Segmentation1/1.png ...",
)
