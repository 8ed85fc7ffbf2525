"""2D MegaMedical datasets stored as image/label files (PNG, JPEG, BMP, TIFF, 2D MetaImage/NIfTI, MAT).

Table rows read by ``layout.define``; one task per (modality, label); subjects as noted.
"""

from __future__ import annotations

from universeg_datasets.raw import formats
from universeg_datasets.raw.layout import Layout, define

IDRID_GT = "A. Segmentation/2. All Segmentation Groundtruths/{split}"
IDRID_LESIONS = {"microaneurysms": "1. Microaneurysms/{case}_MA.tif", "haemorrhages": "2. Haemorrhages/{case}_HE.tif",
                 "hard_exudates": "3. Hard Exudates/{case}_EX.tif", "soft_exudates": "4. Soft Exudates/{case}_SE.tif",
                 "optic_disc": "5. Optic Disc/{case}_OD.tif"}  # fmt: skip
CAMUS = {"left_ventricle": 1, "myocardium": 2, "left_atrium": 3}
CONSEP_TYPES = ("other", "inflammatory", "healthy_epithelial", "malignant_epithelial", "fibroblast", "muscle",
                "endothelial")  # fmt: skip


def camus(folder: str, suffix: str) -> Layout:
    return Layout(
        f"{folder}/{{case}}/{{case}}_{{view}}_{{phase}}{suffix}",
        labels=(f"{folder}/{{case}}/{{case}}_{{view}}_{{phase}}_gt{suffix}",),
        fields={"view": "2CH|4CH", "phase": "ED|ES"},
        label_values=CAMUS,
        modality="echo_{view}",
    )


TABLE = {
    "bbbc003": dict(
        folder="BBBC003",
        url="https://bbbc.broadinstitute.org/BBBC003",
        doc="BBBC003: mouse embryos in DIC microscopy, foreground masks.",
        layouts=[
            Layout(
                "mouse_embryos_dic_images/{name}.{ext}",
                labels=("mouse_embryos_dic_foreground/{name}.*",),
                fields={"ext": "tif|tiff|png"},
                label_values={"embryo": None},
                modality="dic",
            )
        ],
        note="Licence CC BY 3.0; BBBC003_v1_images.zip and BBBC003_v1_foreground.zip.",
    ),
    "bbbc038": dict(
        folder="stage1_train",
        url="https://bbbc.broadinstitute.org/BBBC038",
        doc="BBBC038 (Data Science Bowl 2018): nuclei in fluorescence, brightfield and histology images; one mask "
        "file per nucleus, merged.",
        layouts=[
            Layout(
                "{case}/images/{case}.png",
                labels=("{case}/masks/*.png",),
                label_values={"nuclei": None},
                modality="microscopy",
            )
        ],
        note="Licence CC0; stage1_train.zip.",
    ),
    "bus": dict(
        folder="BUS",
        url="http://www2.docm.mmu.ac.uk/STAFF/m.yap/dataset.php",
        doc="BUS Dataset B (Yap et al. 2017): breast ultrasound lesions.",
        layouts=[
            Layout(
                "original/{case}.png", labels=("GT/{case}.png",), label_values={"lesion": None}, modality="ultrasound"
            )
        ],
        note="Research agreement with the authors (Manchester Metropolitan University).",
    ),
    "camus": dict(
        folder="CAMUS",
        url="https://www.creatis.insa-lyon.fr/Challenge/camus/",
        doc="CAMUS echocardiography (2- and 4-chamber views, ED and ES): LV, myocardium, left atrium.",
        layouts=[camus("database_nifti", ".nii.gz"), camus("training", ".mhd")],
        note="Registration; the NIfTI release (database_nifti/) or the first MetaImage release (training/).",
    ),
    "consep": dict(
        folder="CoNSeP",
        url="https://warwick.ac.uk/fac/cross_fac/tia/data/hovernet/",
        doc="CoNSeP colorectal H&E: seven nucleus types (type_map of each Labels/*.mat).",
        layouts=[
            Layout(
                "{split}/Images/{case}.png",
                labels=("{split}/Labels/{case}.mat",),
                fields={"split": "Train|Test"},
                subject="{case}",
                label_values={name: v for v, name in enumerate(CONSEP_TYPES, start=1)},
                modality="he",
                label_reader=lambda path: formats.MatVariable(path, "type_map"),
            )
        ],
        note="Research use (TIA Warwick).",
    ),
    "eophtha": dict(
        folder="e_ophtha",
        url="https://www.adcis.net/en/third-party/e-ophtha/",
        doc="e-ophtha: exudates and microaneurysms in colour fundus images (healthy images have no annotation).",
        layouts=[
            Layout(
                f"e_optha_{k}/{k}/{{exam}}/{{case}}.{{ext}}",
                labels=(f"e_optha_{k}/Annotation_{k}/{{exam}}/{{case}}*",),
                fields={"ext": "jpg|JPG|jpeg|png"},
                label_values={label: None},
                modality="fundus",
                subject="{exam}",
            )
            for k, label in (("EX", "exudates"), ("MA", "microaneurysms"))
        ],
        note="Registration with ADCIS; e_optha_EX/ and e_optha_MA/ folders.",
    ),
    "feto_plac": dict(
        folder="FetoscopyPlacentaDataset",
        url="https://www.ucl.ac.uk/interventional-surgical-sciences/fetoscopy-placenta-data",
        doc="Fetoscopy placenta dataset (Bano et al. 2020): placental vessels in fetoscopic video frames; "
        "subject = video.",
        layouts=[
            Layout(
                "Vessel_segmentation_annotations/{video}/images/{frame}.png",
                labels=("Vessel_segmentation_annotations/{video}/masks_gt/{frame}_mask.png",),
                label_values={"vessels": None},
                modality="fetoscopy",
            )
        ],
        note="Licence CC BY-NC-SA 4.0.",
    ),
    "idrid": dict(
        folder="IDRiD",
        url="https://idrid.grand-challenge.org/",
        doc="IDRiD segmentation: four lesion types and the optic disc in fundus images, one mask file per label "
        "(a lesion absent from an image has no file).",
        layouts=[
            Layout(
                "A. Segmentation/1. Original Images/{split}/{case}.jpg",
                fields={"split": "a. Training Set|b. Testing Set"},
                layers={n: f"{IDRID_GT}/{t}" for n, t in IDRID_LESIONS.items()},
                modality="fundus",
                subject="{case}",
            )
        ],
        note="Licence CC BY 4.0 (IEEE DataPort); the 'A. Segmentation' folder.",
    ),
    "kvasir_seg": dict(
        folder="Kvasir-SEG",
        url="https://datasets.simula.no/kvasir-seg/",
        doc="Kvasir-SEG: polyps in colonoscopy images (JPEG masks, thresholded at 128).",
        layouts=[
            Layout(
                "images/{case}.jpg",
                labels=("masks/{case}.jpg",),
                threshold=128,
                label_values={"polyp": 1},
                modality="endoscopy",
            )
        ],
        note="Research and educational use (Simula).",
    ),
    "octa500": dict(
        folder="OCTA-500",
        url="https://ieee-dataport.org/open-access/octa-500",
        doc="OCTA-500: retinal vessels (255) and foveal avascular zone (100) on full-depth OCT and OCTA projections.",
        layouts=[
            Layout(
                "OCTA_{fov}/Projection Maps/{proj}/{case}.bmp",
                labels=("OCTA_{fov}/GroundTruth/{case}.bmp",),
                fields={"fov": "3M|6M|3mm|6mm", "proj": r"OCT\(FULL\)|OCTA\(FULL\)"},
                label_values={"vessels": 255, "foveal_avascular_zone": 100},
                modality="{proj}",
                subject="{case}",
            )
        ],
        note="Licence CC BY 4.0 (IEEE DataPort).",
    ),
    "rose": dict(
        folder="ROSE",
        url="https://imed.nimte.ac.cn/dataofrose.html",
        doc="ROSE: retinal vessels in OCT angiography (ROSE-1 superficial, deep and joint plexus; ROSE-2).",
        layouts=[
            Layout(
                "ROSE-1/{plexus}/{split}/img/{case}.{ext}",
                labels=("ROSE-1/{plexus}/{split}/gt/{case}.*",),
                fields={"plexus": "SVC|DVC|SVC_DVC", "ext": "tif|png"},
                label_values={"vessels": None},
                modality="octa_{plexus}",
                subject="rose1_{case}",
            ),
            Layout(
                "ROSE-2/{split}/original/{case}.{ext}",
                labels=("ROSE-2/{split}/gt/{case}.*",),
                fields={"ext": "tif|png"},
                label_values={"vessels": None},
                modality="octa_rose2",
                subject="rose2_{case}",
            ),
        ],
        note="Research agreement with the authors (iMED China).",
    ),
}

for _name, _entry in TABLE.items():
    define(globals(), _name, **_entry)
