"""3D MegaMedical datasets stored as image/label volume files (NIfTI, MetaImage, NRRD, slice stacks).

Each entry is a table row read by ``layout.define``: folder in the manual dir, the official source the layout
comes from, file templates and label values. One task per (modality, label, axis); subjects as noted. Slice
stacks (LGG, BrainMetShare) give views along their stacking axis only.
"""

from __future__ import annotations

from universeg_datasets.raw.layout import Layout, define

ABDOMEN_15 = ("spleen", "right_kidney", "left_kidney", "gallbladder", "esophagus", "liver", "stomach", "aorta",
              "inferior_vena_cava", "pancreas", "right_adrenal_gland", "left_adrenal_gland", "duodenum",
              "bladder", "prostate_uterus")  # fmt: skip
BTCV_13 = ABDOMEN_15[:9] + ("portal_splenic_vein", "pancreas", "right_adrenal_gland", "left_adrenal_gland")
WORD_16 = ("liver", "spleen", "left_kidney", "right_kidney", "stomach", "gallbladder", "esophagus", "pancreas",
           "duodenum", "colon", "intestine", "adrenal", "rectum", "bladder", "left_femur_head",
           "right_femur_head")  # fmt: skip
VERTEBRAE = {**{f"C{i}": i for i in range(1, 8)}, **{f"T{i}": 7 + i for i in range(1, 13)},
             **{f"L{i}": 19 + i for i in range(1, 7)}, "T13": 28}  # fmt: skip
ISLES_MAPS = ("ADC", "MTT", "TTP", "Tmax", "rCBF", "rCBV")
SLICE_STACK_NOTES = {
    "1.0.0": "First release.",
    "1.1.0": "Views are the release's 2D slices only (was: also cut across the slice stack).",
}


def numbered(names) -> dict[str, int]:
    """{name: 1, name2: 2, ...}: label values in the order the dataset lists its classes."""
    return {name: value for value, name in enumerate(names, start=1)}


TABLE = {
    "amos": dict(
        folder="amos22",
        url="https://amos22.grand-challenge.org/",
        doc="AMOS 2022: 15 abdominal organs in CT (cases < 500) and MRI (cases >= 500); subject = case.",
        layouts=[
            Layout(
                "images{split}/amos_{case}.nii.gz",
                labels=("labels{split}/amos_{case}.nii.gz",),
                fields={"split": "Tr|Va", "case": r"\d+"},
                label_values=numbered(ABDOMEN_15),
                modality=lambda f: "ct" if int(f["case"]) < 500 else "mri",
                subject="amos_{case}",
            )
        ],
        note="Licence CC BY 4.0 (zenodo record of amos22.zip); imagesTs has no labels and is not read.",
    ),
    "brats2021": dict(
        folder="BraTS2021",
        url="https://www.med.upenn.edu/cbica/brats/",
        doc="BraTS 2021 glioma MRI: FLAIR, T1, T1Gd, T2; necrotic core (1), edema (2), enhancing tumour (4).",
        layouts=[
            Layout(
                {m: f"BraTS2021_{{case}}/BraTS2021_{{case}}_{m}.nii.gz" for m in ("flair", "t1", "t1ce", "t2")},
                labels=("BraTS2021_{case}/BraTS2021_{case}_seg.nii.gz",),
                label_values={"necrotic_tumour_core": 1, "edema": 2, "enhancing_tumour": 4},
            )
        ],
        note="Registration on Synapse (RSNA-ASNR-MICCAI BraTS 2021 training data); extract the training "
        "archive's case folders into BraTS2021/.",
    ),
    "btcv": dict(
        folder="BTCV",
        url="https://www.synapse.org/#!Synapse:syn3193805",
        doc="BTCV (Multi-Atlas Labeling Beyond the Cranial Vault): 13 abdominal organs in CT.",
        layouts=[
            Layout(
                "RawData/Training/img/img{case}.nii.gz",
                labels=("RawData/Training/label/label{case}.nii.gz",),
                label_values=numbered(BTCV_13),
                modality="ct",
            )
        ],
        note="Registration on Synapse; RawData.zip of the Abdomen challenge.",
    ),
    "brain_development": dict(
        folder="BrainDevelopment",
        url="https://brain-development.org/",
        doc="Hammersmith adult and paediatric brain atlases (T1 MRI with 83+ manually drawn regions).",
        layouts=[
            Layout(
                "{atlas}/{case}.nii.gz",
                labels=("{atlas}/{case}-seg.nii.gz",),
                fields={"case": r"a\d+"},
                label_values={f"region{v:02d}": v for v in range(1, 96)},
                modality="t1",
                subject="{atlas}_{case}",
            ),
            Layout(
                "PediatricAtlas/images/{case}.nii.gz",
                labels=("PediatricAtlas/segmentations/{case}_seg_83ROI.nii.gz",),
                label_values={f"region{v:02d}": v for v in range(1, 96)},
                modality="t1_paediatric",
            ),
        ],
        note="Licence CC BY-NC-SA 3.0; e.g. Hammers_mith-n30r83/a01.nii.gz with a01-seg.nii.gz.",
    ),
    "cdemris": dict(
        folder="cDEMRIS",
        url="https://www.cardiacatlas.org/",
        doc="ISBI 2012 left atrial fibrosis challenge (cDEMRIS): LGE MRI before/after ablation, left atrium.",
        layouts=[
            Layout(
                "{phase}/{case}/de_{v}_{n}.nrrd",
                labels=("{phase}/{case}/la_seg_{v}_{n}.nrrd",),
                fields={"phase": "pre|post", "v": "a|b", "n": r"\d+"},
                label_values={"left_atrium": None},
                modality="lge_mri_{phase}",
                subject="{case}",
            )
        ],
        note="Cardiac Atlas Project registration; folders pre/ (de_a_*, la_seg_a_*) and post/ (de_b_*, la_seg_b_*).",
    ),
    "feta": dict(
        folder="feta_2.1",
        url="https://feta.grand-challenge.org/",
        doc="FeTA 2.1 fetal brain T2 MRI: 7 tissues.",
        layouts=[
            Layout(
                "sub-{case}/anat/sub-{case}_rec-{rec}_T2w.nii.gz",
                labels=("sub-{case}/anat/sub-{case}_rec-{rec}_dseg.nii.gz",),
                modality="t2",
                label_values=numbered(
                    (
                        "external_csf",
                        "grey_matter",
                        "white_matter",
                        "ventricles",
                        "cerebellum",
                        "deep_grey_matter",
                        "brainstem",
                    )
                ),
            )
        ],
        note="Data use agreement (Synapse); the BIDS folder feta_2.1/.",
    ),
    "isles2017": dict(
        folder="ISLES2017",
        url="https://www.isles-challenge.org/",
        doc="ISLES 2017 ischemic stroke lesion in ADC and perfusion maps (MTT, TTP, Tmax, rCBF, rCBV).",
        layouts=[
            Layout(
                {m: f"training_{{case}}/*.MR_{m}.*/*.MR_{m}.*.nii" for m in ISLES_MAPS},
                labels=("training_{case}/*.OT.*/*.OT.*.nii",),
                fields={"case": r"\d+"},
                label_values={"stroke_lesion": None},
                subject="training_{case}",
            )
        ],
        note="Registration on the SMIR portal; training/ case folders (SMIR.Brain.XX.O.MR_ADC.<id>/...).",
    ),
    "lits": dict(
        folder="LiTS",
        url="https://competitions.codalab.org/competitions/17094",
        doc="LiTS liver and liver tumour in CT.",
        layouts=[
            Layout(
                "{batch}/volume-{case}.nii",
                labels=("{batch}/segmentation-{case}.nii",),
                fields={"case": r"\d+"},
                label_values={"liver": 1, "tumour": 2},
                modality="ct",
                subject="volume-{case}",
            )
        ],
        note="Licence CC BY-NC-SA 4.0; 'Training Batch 1' and 'Training Batch 2' folders.",
    ),
    "luna16": dict(
        folder="LUNA16",
        url="https://luna16.grand-challenge.org/",
        doc="LUNA16 chest CT with the lung masks of seg-lungs-LUNA16 (left lung 3, right lung 4, trachea 5).",
        layouts=[
            Layout(
                "subset{k}/{uid}.mhd",
                labels=("seg-lungs-LUNA16/{uid}.mhd",),
                fields={"k": r"\d+"},
                label_values={"left_lung": 3, "right_lung": 4, "trachea": 5},
                modality="ct",
                subject="{uid}",
            )
        ],
        note="Licence CC BY 4.0 (zenodo records of subset0-9.zip and seg-lungs-LUNA16.zip).",
    ),
    "mm_whs": dict(
        folder="MM-WHS",
        url="https://zmiclab.github.io/zxh/0/mmwhs/",
        doc="MM-WHS 2017: 7 whole-heart substructures in CT and MRI.",
        layouts=[
            Layout(
                "{mod}_train/{mod}_train_{case}_image.nii.gz",
                labels=("{mod}_train/{mod}_train_{case}_label.nii.gz",),
                fields={"mod": "ct|mr"},
                modality="{mod}",
                subject="{mod}_{case}",
                label_values={
                    "lv_myocardium": 205,
                    "left_atrium": 420,
                    "lv_blood_cavity": 500,
                    "right_atrium": 550,
                    "right_ventricle": 600,
                    "ascending_aorta": 820,
                    "pulmonary_artery": 850,
                },
            )
        ],
        note="Registration with the organisers; ct_train/ and mr_train/ folders.",
    ),
    "mnms": dict(
        folder="OpenDataset",
        url="https://www.ub.edu/mnms/",
        doc="M&Ms 2020 cine MRI (4D): the labelled end-diastolic and end-systolic frames; LV, myocardium, RV.",
        layouts=[
            Layout(
                "{split}/{case}/{case}_sa.nii.gz",
                labels=("{split}/{case}/{case}_sa_gt.nii.gz",),
                fields={"split": "Training/Labeled|Validation|Testing"},
                frames=True,
                modality="cine_mri",
                subject="{case}",
                label_values={"left_ventricle": 1, "myocardium": 2, "right_ventricle": 3},
            )
        ],
        note="Registration with the organisers; the OpenDataset/ folder.",
    ),
    "promise12": dict(
        folder="PROMISE12",
        url="https://promise12.grand-challenge.org/",
        doc="PROMISE12 prostate in T2 MRI.",
        layouts=[
            Layout(
                "{part}/Case{case}.mhd",
                labels=("{part}/Case{case}_segmentation.mhd",),
                fields={"case": r"\d+"},
                label_values={"prostate": None},
                modality="t2",
                subject="Case{case}",
            )
        ],
        note="Registration on grand-challenge; TrainingData_Part1..3 folders.",
    ),
    "segthor": dict(
        folder="SegTHOR",
        url="https://competitions.codalab.org/competitions/21145",
        doc="SegTHOR thoracic organs at risk in CT.",
        layouts=[
            Layout(
                "train/Patient_{case}/Patient_{case}.nii.gz",
                labels=("train/Patient_{case}/GT.nii.gz",),
                modality="ct",
                label_values=numbered(("esophagus", "heart", "trachea", "aorta")),
            )
        ],
        note="Registration on CodaLab; the train/ folder.",
    ),
    "smir": dict(
        folder="xVertSeg.v1",
        url="http://lit.fe.uni-lj.si/xVertSeg/",
        doc="xVertSeg (SMIR): lumbar vertebrae in CT (the five vertebrae merged into one label).",
        layouts=[
            Layout(
                "Data1/images/image{case}.mhd",
                labels=("Data1/masks/mask{case}.mhd",),
                label_values={"vertebrae": None},
                modality="ct",
            )
        ],
        note="Registration on the SMIR portal (xVertSeg.v1); the labelled Data1/ folder.",
    ),
    "spineweb": dict(
        folder="IVD_Challenge_Data",
        url="http://spineweb.digitalimaginggroup.ca/",
        doc="SpineWeb dataset 7 (MICCAI 2015 IVD challenge): intervertebral discs in T2 MRI.",
        layouts=[
            Layout(
                "{case}/{case}.nii",
                labels=("{case}/{case}_Label.nii",),
                label_values={"intervertebral_disc": None},
                modality="t2",
            )
        ],
        note="Research use, from SpineWeb (Dataset 7).",
    ),
    "verse": dict(
        folder="VerSe",
        url="https://github.com/anjany/verse",
        doc="VerSe 2019/2020 vertebrae (C1-L6, T13) in CT.",
        layouts=[
            Layout(
                "{ds}/rawdata/sub-{case}/sub-{case}{dir}_ct.nii.gz",
                labels=("{ds}/derivatives/sub-{case}/sub-{case}{dir}_seg-vert_msk.nii.gz",),
                fields={"dir": "(?:_dir-[a-z]+)?"},
                label_values=VERTEBRAE,
                modality="ct",
                subject="{case}",
            )
        ],
        note="Licence CC BY-SA 4.0; dataset-verse19training/, dataset-01training/ ... folders (BIDS).",
    ),
    "wmh": dict(
        folder="WMH",
        url="https://wmh.isi.uu.nl/",
        doc="MICCAI 2017 WMH challenge: white matter hyperintensities (label 1; 2 = other pathology) in FLAIR and T1.",
        layouts=[
            Layout(
                {"flair": "{site}/{case}/pre/FLAIR.nii.gz", "t1": "{site}/{case}/pre/T1.nii.gz"},
                labels=("{site}/{case}/wmh.nii.gz",),
                fields={"site": ".+?", "case": r"\d+"},
                label_values={"white_matter_hyperintensities": 1},
                subject="{case}",
            )
        ],
        note="Licence CC BY-NC 4.0; e.g. training/Utrecht/0/, training/Amsterdam/GE3T/100/.",
    ),
    "word": dict(
        folder="WORD-V0.1.0",
        url="https://github.com/HiLab-git/WORD",
        doc="WORD: 16 abdominal organs in CT.",
        layouts=[
            Layout(
                "images{split}/word_{case}.nii.gz",
                labels=("labels{split}/word_{case}.nii.gz",),
                fields={"split": "Tr|Val|Ts"},
                label_values=numbered(WORD_16),
                modality="ct",
                subject="word_{case}",
            )
        ],
        note="Research use (request form); imagesTr/labelsTr, imagesVal/labelsVal, imagesTs/labelsTs.",
    ),
    "lgg_flair": dict(
        folder="kaggle_3m",
        url="https://www.kaggle.com/datasets/mateuszbuda/lgg-mri-segmentation",
        doc="LGG segmentation (Buda et al. 2019): slices of pre-contrast, FLAIR, post-contrast MRI as RGB TIFFs, "
        "stacked per patient and cut along the stack only; FLAIR abnormality.",
        layouts=[
            Layout(
                "{case}/{case}_{k}.tif",
                labels=("{case}/{case}_{k}_mask.tif",),
                fields={"k": r"\d+"},
                stack="k",
                channels=("pre_contrast", "flair", "post_contrast"),
                label_values={"flair_abnormality": None},
            )
        ],
        note="Licence CC BY-NC-SA 4.0 (Kaggle).",
        release_notes=SLICE_STACK_NOTES,
    ),
    "brain_met_share": dict(
        folder="mets_stanford_releaseMask_train",
        url="https://aimi.stanford.edu/brainmetshare",
        doc="BrainMetShare: brain metastases; PNG slices of four MRI sequences stacked per patient and cut along "
        "the stack only.",
        layouts=[
            Layout(
                {
                    "t1_gradient_echo_post": "{case}/0/{k}.png",
                    "t1_spin_echo_pre": "{case}/1/{k}.png",
                    "t1_spin_echo_post": "{case}/2/{k}.png",
                    "flair": "{case}/3/{k}.png",
                },
                labels=("{case}/seg/{k}.png",),
                fields={"k": r"\d+"},
                stack="k",
                label_values={"metastases": None},
            )
        ],
        note="Stanford AIMI research use agreement.",
        release_notes=SLICE_STACK_NOTES,
    ),
}

for _name, _entry in TABLE.items():
    define(globals(), _name, volumetric=True, **_entry)
