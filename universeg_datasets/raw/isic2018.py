"""ISIC 2018 Task 1: skin lesion boundary segmentation in dermoscopy images (Codella et al. 2019)."""

from __future__ import annotations

from universeg_datasets.raw.layout import Layout, define

define(
    globals(),
    "isic2018",
    folder="ISIC2018",
    url="https://challenge.isic-archive.com/data/#2018",
    doc="ISIC 2018 lesion segmentation: dermoscopy images with binary lesion masks.",
    layouts=[
        Layout(
            "ISIC2018_Task1-2_{split}_Input/ISIC_{id}.jpg",
            labels=("ISIC2018_Task1_{split}_GroundTruth/ISIC_{id}_segmentation.png",),
            fields={"split": "Training|Validation"},
            label_values={"lesion": None},
            modality="dermoscopy",
            subject="ISIC_{id}",
        )
    ],
    layout_text="  ISIC2018/ISIC2018_Task1-2_Training_Input/ISIC_0000000.jpg ...\n"
    "  ISIC2018/ISIC2018_Task1_Training_GroundTruth/ISIC_0000000_segmentation.png ...\n"
    "  (optional) ISIC2018/ISIC2018_Task1-2_Validation_Input/ and ISIC2018_Task1_Validation_GroundTruth/",
)
