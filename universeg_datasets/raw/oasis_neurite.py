"""OASIS-1 brain MRI as preprocessed by neurite-oasis (Hoopes et al.; Marcus et al. 2007)."""

from __future__ import annotations

from universeg_datasets.raw.common import WHOLE_VOLUME_NOTES
from universeg_datasets.raw.layout import Layout, define

define(
    globals(),
    "oasis_neurite",
    folder="neurite-oasis",
    url="https://github.com/adalca/medical-datasets/blob/master/neurite-oasis.md",
    doc="OASIS-1 T1 MRI (skull-stripped, affinely aligned) with 4 tissue classes (aligned_seg4).",
    layouts=[
        Layout(
            "OASIS_OAS1_{n}_MR1/aligned_norm.nii.gz",
            labels=("OASIS_OAS1_{n}_MR1/aligned_seg4.nii.gz",),
            label_values={"cortex": 1, "subcortical_grey_matter": 2, "white_matter": 3, "csf": 4},
            modality="t1",
            subject="OASIS_OAS1_{n}_MR1",
        )
    ],
    layout_text="  neurite-oasis/OASIS_OAS1_0001_MR1/aligned_norm.nii.gz, aligned_seg4.nii.gz ...",
    note="Data use agreement: OASIS (https://www.oasis-brains.org/).",
    volumetric=True,
    release_notes=WHOLE_VOLUME_NOTES,
)
