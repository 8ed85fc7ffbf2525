"""ACDC: cardiac cine MRI, right ventricle, myocardium, left ventricle (Bernard et al. 2018)."""

from __future__ import annotations

from universeg_datasets.raw.common import WHOLE_VOLUME_NOTES
from universeg_datasets.raw.layout import Layout, define

define(
    globals(),
    "acdc",
    folder="ACDC",
    url="https://www.creatis.insa-lyon.fr/Challenge/acdc/",
    doc="ACDC short-axis cine MRI at end-diastole and end-systole with their label maps (3D volumes).",
    layouts=[
        Layout(
            f"{split}/patient{{p}}/patient{{p}}_frame{{frame}}.nii.gz",
            labels=(f"{split}/patient{{p}}/patient{{p}}_frame{{frame}}_gt.nii.gz",),
            fields={"frame": r"\d\d"},
            label_values={"right_ventricle": 1, "myocardium": 2, "left_ventricle": 3},
            modality="cine_mri",
            subject="patient{p}",
        )
        for split in ("training", "testing")
    ],
    layout_text="  ACDC/training/patient001/patient001_frame01.nii.gz, patient001_frame01_gt.nii.gz, ...\n"
    "  (optional) ACDC/testing/patient101/...",
    volumetric=True,
    release_notes=WHOLE_VOLUME_NOTES,
)
