"""MegaMedical datasets distributed as DICOM series (CHAOS, I2CVB, NCI-ISBI 2013, Sunnybrook SCD).

Table rows read by ``layout.define``; a template ending in ``/`` is a folder holding one DICOM series (or one
label slice per file). Volumes are reoriented to RAS from the DICOM geometry, except where labels are separate
slice files in instance order (CHAOS), which keeps both in (rows, columns, instance) order.
"""

from __future__ import annotations

from universeg_datasets.raw import formats
from universeg_datasets.raw.layout import Layout, define

CHAOS_MR = {"liver": 63, "right_kidney": 126, "left_kidney": 189, "spleen": 252}
SCD_CONTOURS = "SCD_ManualContours/{case}/contours-manual/IRCCI-expert/IM-0001-{num}-{kind}contour-manual.txt"


def by_instance(path):
    return formats.Dicom(path, order="instance")


def chaos(image, ground: str, values, modality: str, prefix: str) -> Layout:
    return Layout(
        image,
        labels=(ground,),
        label_values=values,
        modality=modality,
        subject=f"{prefix}{{case}}",
        reader=by_instance,
        label_reader=formats.folder_slices,
    )


TABLE = {
    "chaos": dict(
        folder="CHAOS",
        url="https://chaos.grand-challenge.org/",
        doc="CHAOS: liver in CT; liver, kidneys and spleen in T2-SPIR and T1-DUAL (in/opposed phase) MRI. "
        "DICOM series with one ground-truth PNG per slice (grey levels 63/126/189/252 in MRI).",
        layouts=[
            chaos("Train_Sets/CT/{case}/DICOM_anon/", "Train_Sets/CT/{case}/Ground/", {"liver": None}, "ct", "ct"),
            chaos(
                "Train_Sets/MR/{case}/T2SPIR/DICOM_anon/",
                "Train_Sets/MR/{case}/T2SPIR/Ground/",
                CHAOS_MR,
                "t2spir",
                "mr",
            ),
            chaos(
                {
                    "t1_in_phase": "Train_Sets/MR/{case}/T1DUAL/DICOM_anon/InPhase/",
                    "t1_out_phase": "Train_Sets/MR/{case}/T1DUAL/DICOM_anon/OutPhase/",
                },
                "Train_Sets/MR/{case}/T1DUAL/Ground/",
                CHAOS_MR,
                "",
                "mr",
            ),
        ],
        note="Licence CC BY-SA 4.0 (zenodo record of CHAOS_Train_Sets.zip).",
    ),
    "i2cvb": dict(
        folder="I2CVB",
        url="https://i2cvb.github.io/",
        doc="I2CVB prostate MRI (Lemaitre et al. 2015): T2W series with DICOM ground truth of the prostate, "
        "peripheral zone, central gland and cancer.",
        layouts=[
            Layout(
                "{scanner}/{case}/T2W/",
                layers={
                    n: f"{{scanner}}/{{case}}/GT/{f}/"
                    for n, f in (
                        ("prostate", "prostate"),
                        ("peripheral_zone", "pz"),
                        ("central_gland", "cg"),
                        ("cancer", "cap"),
                    )
                },
                modality="t2",
                subject="{scanner}_{case}",
                reader=formats.Dicom,
                label_reader=formats.Dicom,
            )
        ],
        note="Research use; one folder per scanner (e.g. GE/, Siemens/), one per patient.",
    ),
    "nci_isbi": dict(
        folder="NCI-ISBI",
        url="https://wiki.cancerimagingarchive.net/display/DOI/NCI-ISBI+2013+Challenge",
        doc="NCI-ISBI 2013 prostate T2 MRI (TCIA DICOM) with NRRD labels: central gland (1), peripheral zone (2).",
        layouts=[
            Layout(
                "{collection}/{case}/",
                labels=("Labels/{case}.nrrd",),
                fields={"collection": "Prostate-3T|PROSTATE-DIAGNOSIS"},
                modality="t2",
                subject="{case}",
                label_values={"central_gland": 1, "peripheral_zone": 2},
                reader=formats.Dicom,
            )
        ],
        note="Licence CC BY 3.0 (TCIA); put each case's T2 series under Prostate-3T/<case>/ or "
        "PROSTATE-DIAGNOSIS/<case>/ and the challenge's label files in Labels/.",
    ),
    "scd": dict(
        folder="SCD",
        url="https://www.cardiacatlas.org/sunnybrook-cardiac-data/",
        doc="Sunnybrook Cardiac Data: cine short-axis MRI slices with manual LV endocardium (i) and epicardium (o) "
        "contours, filled into masks; only contoured images are used.",
        layouts=[
            Layout(
                "SCD_DeidentifiedImages/{case}/{series}/IM-{s}-{num}.dcm",
                layers={
                    "endocardium": SCD_CONTOURS.replace("{kind}", "i"),
                    "epicardium": SCD_CONTOURS.replace("{kind}", "o"),
                },
                unlabelled="skip",
                modality="cine_mri",
                subject="{case}",
                label_reader=lambda path: formats.Polygon(path=path),
            )
        ],
        note="Licence CC0 (Cardiac Atlas Project). Name each image folder like its contour folder (e.g. "
        "SCD_DeidentifiedImages/SC-HF-I-01/CINESAX_300/IM-0003-0048.dcm; the CAP release names it SCD0000101, "
        "see its patient table).",
    ),
}

for _name, _entry in TABLE.items():
    define(globals(), _name, volumetric=_name != "scd", **_entry)
