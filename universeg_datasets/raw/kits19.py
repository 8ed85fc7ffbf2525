"""KiTS19: kidney and kidney tumour in contrast CT (Heller et al. 2019)."""

from __future__ import annotations

from universeg_datasets.raw.common import WHOLE_VOLUME_NOTES
from universeg_datasets.raw.layout import Layout, define

LABELLED_CASES = r"00[01]\d\d|0020\d"  # case_00000 .. case_00209 have segmentations; later cases are the test set

define(
    globals(),
    "kits19",
    folder="kits19",
    url="https://github.com/neheller/kits19",
    doc="KiTS19 abdominal CT with kidney (1) and tumour (2) labels, the 210 labelled cases.",
    layouts=[
        Layout(
            "data/case_{case}/imaging.nii.gz",
            labels=("data/case_{case}/segmentation.nii.gz",),
            fields={"case": LABELLED_CASES},
            label_values={"kidney": 1, "tumor": 2},
            modality="ct",
            subject="case_{case}",
        )
    ],
    layout_text="  kits19/data/case_00000/imaging.nii.gz, segmentation.nii.gz ...  (git clone + get_imaging.py)",
    volumetric=True,
    release_notes=WHOLE_VOLUME_NOTES,
)
