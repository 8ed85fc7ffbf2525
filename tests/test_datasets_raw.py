"""Raw MegaMedical builders on tiny fake data in each dataset's published layout (universeg_datasets.raw.dummy)."""

import gzip
import json

import nibabel as nib
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from universeg_datasets import build as build_module
from universeg_datasets import registry, standardize
from universeg_datasets.raw import dummy, fakes
from universeg_datasets.validate import validate_built
from universeg_jax.data import tasks

AXES_3D = (0, 1, 2)
# (modalities, label names, axes, subjects) each dummy layout must give.
EXPECTED = {
    "acdc": (("cine_mri",), ("right_ventricle", "myocardium", "left_ventricle"), AXES_3D, {"patient001", "patient002"}),
    "busi": (("ultrasound",), ("lesion",), (0,), {"benign1", "malignant1"}),  # normal: empty mask, no example
    "drive": (("fundus",), ("vessel",), (0,), {"training21", "training22", "test01"}),
    "isic2018": (("dermoscopy",), ("lesion",), (0,), {"ISIC_0000000", "ISIC_0000001"}),
    "kits19": (("ct",), ("kidney", "tumor"), AXES_3D, {"case_00000", "case_00001"}),  # case_00210: test set
    "oasis_neurite": (
        ("t1",),
        ("cortex", "subcortical_grey_matter", "white_matter", "csf"),
        AXES_3D,
        {"OASIS_OAS1_0001_MR1", "OASIS_OAS1_0002_MR1"},
    ),
    "pan_dental": (("xray",), ("mandible",), (0,), {"1", "2"}),
    "stare": (("fundus",), ("vessel",), (0,), {"im0001", "im0002"}),
    "wbc": (
        ("jtsc", "cellavision"),
        ("nucleus", "cytoplasm"),
        (0,),
        {"jtsc001", "jtsc002", "cellavision001", "cellavision002"},
    ),
    # MSD's dataset.json names (FLAIR, Anterior) become lower-case task names
    **{
        name: (
            tuple(m.lower() for m in modalities),
            tuple(l.lower() for l in labels),
            AXES_3D,
            {"case_001", "case_002"},
        )
        for name, (_, modalities, labels) in dummy.MSD_TASKS.items()
    },
    # Table-defined builders (universeg_datasets.raw.volumes / images2d), on the files of raw.fakes.FAKES.
    "amos": (("ct", "mri"), ("spleen", "liver", "prostate_uterus"), AXES_3D, {"amos_0001", "amos_0507"}),  # 0507: MRI
    "brats2021": (
        ("flair", "t1", "t1ce", "t2"),
        ("necrotic_tumour_core", "edema", "enhancing_tumour"),
        AXES_3D,
        {"00000", "00002"},
    ),
    "btcv": (("ct",), ("liver", "spleen", "left_adrenal_gland"), AXES_3D, {"0001", "0002"}),
    "brain_development": (
        ("t1",),
        ("region03", "region17", "region83"),
        AXES_3D,
        {"Hammers_mith-n30r83_a01", "Hammers_mith-n30r83_a02"},
    ),
    "cdemris": (("lge_mri_pre", "lge_mri_post"), ("left_atrium",), AXES_3D, {"p1", "p2"}),
    "feta": (("t2",), ("external_csf", "white_matter", "brainstem"), AXES_3D, {"001", "002"}),
    "isles2017": (
        ("ADC", "MTT", "TTP", "Tmax", "rCBF", "rCBV"),
        ("stroke_lesion",),
        AXES_3D,
        {"training_1", "training_2"},
    ),
    "lits": (("ct",), ("liver", "tumour"), AXES_3D, {"volume-0", "volume-1"}),
    "luna16": (
        ("ct",),
        ("left_lung", "right_lung", "trachea"),
        AXES_3D,
        {
            f"1.3.6.1.4.1.14519.5.2.1.6279.6001.{n}"
            for n in ("100225287222365663678666836860", "100332161840553388986847034053")
        },
    ),
    "mm_whs": (
        ("ct", "mr"),
        ("lv_myocardium", "lv_blood_cavity", "pulmonary_artery"),
        AXES_3D,
        {"ct_1001", "ct_1002", "mr_1001", "mr_1002"},
    ),
    "mnms": (("cine_mri",), ("left_ventricle", "myocardium", "right_ventricle"), AXES_3D, {"A0S9V9", "A1D0Q7"}),
    "promise12": (("t2",), ("prostate",), AXES_3D, {"Case00", "Case01"}),
    "segthor": (("ct",), ("heart", "aorta"), AXES_3D, {"01", "02"}),
    "smir": (("ct",), ("vertebrae",), AXES_3D, {"001", "002"}),
    "spineweb": (("t2",), ("intervertebral_disc",), AXES_3D, {"01", "02"}),
    "verse": (("ct",), ("L1", "L5", "T13"), AXES_3D, {"verse004", "verse500"}),
    "wmh": (("flair", "t1"), ("white_matter_hyperintensities",), AXES_3D, {"0", "2"}),
    "word": (("ct",), ("liver", "colon", "right_femur_head"), AXES_3D, {"word_0001", "word_0002"}),
    # 2D slice stacks: views along the stacking axis only
    "lgg_flair": (
        ("pre_contrast", "flair", "post_contrast"),
        ("flair_abnormality",),
        (2,),
        {"TCGA_CS_4941_19960909", "TCGA_DU_5851_19950428"},
    ),
    "brain_met_share": (
        ("t1_gradient_echo_post", "t1_spin_echo_pre", "t1_spin_echo_post", "flair"),
        ("metastases",),
        (2,),
        {"Mets_000", "Mets_002"},
    ),
    "bbbc003": (("dic",), ("embryo",), (0,), {"7_19_M1E1", "7_19_M1E2"}),
    "bbbc038": (("microscopy",), ("nuclei",), (0,), {"00071198d059ba7f", "003cee89357d9fe1"}),
    "bus": (("ultrasound",), ("lesion",), (0,), {"000001", "000002"}),
    "camus": (
        ("echo_2CH", "echo_4CH"),
        ("left_ventricle", "myocardium", "left_atrium"),
        (0,),
        {"patient0001", "patient0002"},
    ),
    "consep": (("he",), ("fibroblast", "inflammatory", "malignant_epithelial"), (0,), {"train_1", "test_1"}),
    "eophtha": (("fundus",), ("exudates", "microaneurysms"), (0,), {"E0000404", "E0000043"}),  # healthy/: no labels
    "feto_plac": (("fetoscopy",), ("vessels",), (0,), {"video01", "video02"}),
    "idrid": (
        ("fundus",),
        ("microaneurysms", "haemorrhages", "hard_exudates", "soft_exudates", "optic_disc"),
        (0,),
        {"IDRiD_01", "IDRiD_55"},
    ),  # IDRiD_55 has no soft-exudate file
    "kvasir_seg": (("endoscopy",), ("polyp",), (0,), {"cju0qkwl35piu0993l0dewei2", "cju0roawvklrq0799vmjorwfv"}),
    "octa500": (("OCTA_FULL", "OCT_FULL"), ("vessels", "foveal_avascular_zone"), (0,), {"10001", "10002"}),
    "rose": (
        ("octa_SVC", "octa_SVC_DVC", "octa_rose2"),
        ("vessels",),
        (0,),
        {"rose1_01", "rose1_02", "rose2_01", "rose2_02"},
    ),
    # DICOM series (universeg_datasets.raw.dicom_sets)
    "chaos": (
        ("ct", "t2spir", "t1_in_phase", "t1_out_phase"),
        ("liver", "right_kidney", "spleen"),
        AXES_3D,
        {"ct1", "ct2", "mr1", "mr2"},
    ),  # CT: liver only
    "i2cvb": (("t2",), ("prostate", "peripheral_zone", "central_gland"), AXES_3D, {"GE_Patient_383", "GE_Patient_416"}),
    "nci_isbi": (("t2",), ("central_gland", "peripheral_zone"), AXES_3D, {"Prostate3T-01-0001", "ProstateDx-01-0006"}),
    "scd": (("cine_mri",), ("endocardium", "epicardium"), (0,), {"SC-HF-I-01", "SC-N-02"}),
    # one file, many items; labels that are not images (universeg_datasets.raw.items)
    "isbi_em": (("em",), ("membrane",), (0,), {"slice00", "slice01", "slice02"}),
    "pannuke": (
        ("he",),
        ("neoplastic", "connective", "epithelial"),
        (0,),
        {"fold1_0", "fold1_1", "fold2_0", "fold2_1"},
    ),
    "tucc": (("ultrasound",), ("thyroid_nodule",), (0,), {"101_", "102_"}),
    "chexplanation": (
        ("xray",),
        ("cardiomegaly", "lung_lesion"),
        (0,),
        {"patient64541", "patient64542"},
    ),  # empty: none
    "echonet": (("echo_a4c",), ("left_ventricle",), (0,), {"0X100009310A3BD7FC", "0X1002E8FBACD08477"}),
    "hmc_qu": (("echo_a4c",), ("lv_wall",), (0,), {"ES0001 _4CH_1", "ES0002 _4CH_1"}),
}
# (modality, label) pairs a dataset does not have
ABSENT = {"chaos": {("ct", "right_kidney"), ("ct", "spleen")}}
# Examples each fake layout gives (checks that no image is dropped or read twice).
EXAMPLES = {
    "idrid": 9,
    "mnms": 36,
    "camus": 18,
    "eophtha": 4,
    "feto_plac": 4,
    "consep": 6,
    "isles2017": 36,
    "chaos": 60,
    "i2cvb": 15,
    "scd": 6,
    "isbi_em": 3,
    "pannuke": 12,
    "tucc": 3,
    "chexplanation": 4,
    "echonet": 4,
    "hmc_qu": 6,
    "acdc": 36,  # 2 frames per patient
    "amos": 18,
    "mm_whs": 36,
    "wbc": 8,
    "rose": 6,
}  # each subject in one modality (ROSE-1: two)
# Fakes of these builders draw every label brighter than the background: a label must lie on bright pixels
# (catches an image and its label read in different orientations or orders).
ALIGNED = set(fakes.FAKES) | {"mnms", "nci_isbi", "scd", "pannuke", "tucc", "chexplanation", "echonet", "hmc_qu"}


def build(name, tmp_path, data="data", config="size64"):
    return registry.build(name, config=config, data_dir=tmp_path / data, manual_dir=tmp_path / "manual")


def read_all(path):
    source = tfds.builder_from_directory(str(path)).as_data_source(split="train")
    return [source[i] for i in range(len(source))]


def test_every_raw_builder_has_dummy_data_and_expectations():
    assert set(registry.RAW) == set(dummy.WRITERS) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(registry.RAW))
def test_raw_builder_gives_documented_examples(name, tmp_path):
    dummy.write_dummy(name, tmp_path / "manual")
    builder = build(name, tmp_path)
    summary = validate_built(builder.data_path)  # shapes, dtypes, strictly binary non-empty labels, index
    assert summary["size"] == 64
    modalities, labels, axes, subjects = EXPECTED[name]
    index = json.loads((builder.data_path / "task_index.json").read_text())
    expected = {(m, l) for m in modalities for l in labels} - ABSENT.get(name, set())
    assert set(index["tasks"]) == {standardize.task_id(name, m, l, a) for m, l in expected for a in axes}
    assert set(index["example_subject"]) == subjects
    # by default every subject has one image showing every label in every view
    assert len(index["example_task"]) == EXAMPLES.get(name, len(expected) * len(axes) * len(subjects))
    for example in read_all(builder.data_path):
        assert example["image"].max() > example["image"].min()  # a real image, not a constant
        if name in ALIGNED:
            inside, image = example["label"][..., 0] == 1, example["image"][..., 0].astype(float)
            assert image[inside].mean() > image[~inside].mean() + 5, (example["task"], example["subject"])


@pytest.mark.parametrize("name", sorted(registry.RAW))
def test_rebuild_gives_same_task_ids_and_data(name, tmp_path):
    dummy.write_dummy(name, tmp_path / "manual")
    first, second = build(name, tmp_path, "first"), build(name, tmp_path, "second")
    assert (first.data_path / "task_index.json").read_text() == (second.data_path / "task_index.json").read_text()
    for a, b in zip(read_all(first.data_path), read_all(second.data_path), strict=True):
        assert a["task"] == b["task"] and a["subject"] == b["subject"]
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])


def assert_nothing_readable(name, tmp_path):
    """A failed build leaves no dataset that a reader would pick up."""
    assert not list((tmp_path / "data").glob(f"{name}/*/*/dataset_info.json"))
    with pytest.raises(FileNotFoundError, match="not built"):
        tasks.open_tasks([name], tmp_path / "data", size=64)


def write_png(path, array):
    Image.fromarray(array).save(path)


BAD_INPUTS = {
    # name: (break the dummy data, exception, text the message must contain)
    "missing raw folder": ("drive", lambda m: (m / "DRIVE").rename(m / "elsewhere"), FileNotFoundError, "DRIVE"),
    "image without label": (
        "drive",
        lambda m: (m / "DRIVE/training/1st_manual/22_manual1.gif").unlink(),
        FileNotFoundError,
        "22_training.tif",
    ),
    "label without image": (
        "stare",
        lambda m: (m / "STARE/stare-images/im0002.ppm.gz").unlink(),
        FileNotFoundError,
        "im0002.ppm.gz",
    ),
    "corrupt image": (
        "drive",
        lambda m: (m / "DRIVE/training/images/21_training.tif").write_bytes(b"not a tiff"),
        ValueError,
        "21_training.tif",
    ),
    "corrupt gzip image": (
        "stare",
        lambda m: (m / "STARE/labels-ah/im0001.ah.ppm.gz").write_bytes(gzip.compress(b"P6 junk")),
        ValueError,
        "im0001.ah.ppm.gz",
    ),
    "label of wrong size": (
        "isic2018",
        lambda m: write_png(
            m / "ISIC2018/ISIC2018_Task1_Training_GroundTruth/ISIC_0000001_segmentation.png", np.zeros((7, 9), np.uint8)
        ),
        ValueError,
        "ISIC_0000001_segmentation.png",
    ),
    "colour label": (
        "pan_dental",
        lambda m: write_png(
            m / "PanDental/Segmentation1/2.png", np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)
        ),
        ValueError,
        "2.png",
    ),
    "corrupt NIfTI": (
        "acdc",
        lambda m: (m / "ACDC/training/patient002/patient002_frame12.nii.gz").write_bytes(b"\x1f\x8bjunk"),
        ValueError,
        "patient002_frame12.nii.gz",
    ),
    "truncated NIfTI": (
        "kits19",
        lambda m: (m / "kits19/data/case_00001/segmentation.nii.gz").write_bytes(
            (m / "kits19/data/case_00001/segmentation.nii.gz").read_bytes()[:300]
        ),
        ValueError,
        "segmentation.nii.gz",
    ),
    "volume label of wrong size": (
        "oasis_neurite",
        lambda m: nib.save(
            nib.Nifti1Image(np.zeros((5, 6, 7), np.uint8), np.eye(4)),
            m / "neurite-oasis/OASIS_OAS1_0002_MR1/aligned_seg4.nii.gz",
        ),
        ValueError,
        "aligned_seg4.nii.gz",
    ),
    "missing dataset.json": (
        "msd_spleen",
        lambda m: (m / "Task09_Spleen/dataset.json").unlink(),
        FileNotFoundError,
        "dataset.json",
    ),
    "no images": (
        "wbc",
        lambda m: [p.unlink() for p in m.glob("segmentation_WBC/*/*")],
        FileNotFoundError,
        "no images",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_names_the_file_and_leaves_nothing(case, tmp_path):
    name, corrupt, error, text = BAD_INPUTS[case]
    dummy.write_dummy(name, tmp_path / "manual")
    corrupt(tmp_path / "manual")
    with pytest.raises(error, match=text.replace(".", r"\.")):
        build(name, tmp_path)
    assert_nothing_readable(name, tmp_path)


def test_missing_manual_dir_mentions_instructions(tmp_path):
    with pytest.raises(Exception, match="manual"):
        build("drive", tmp_path)
    assert_nothing_readable("drive", tmp_path)


def test_open_tasks_on_unbuilt_raw_dataset_says_how_to_build(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        tasks.open_tasks(["kits19"], tmp_path)
    message = str(info.value)
    assert "python -m universeg_datasets.build kits19" in message
    assert "kits19/data/case_00000/imaging.nii.gz" in message  # the builder's manual download instructions
    assert str(tmp_path / "downloads" / "manual") in message


def to_second_annotator(manual):
    """The fake STARE download with the second annotator's labels (labels-vk) instead of labels-ah."""
    (manual / "STARE/labels-vk").mkdir()
    for label in (manual / "STARE/labels-ah").iterdir():
        label.rename(manual / "STARE/labels-vk" / label.name.replace(".ah.", ".vk."))
    (manual / "STARE/labels-ah").rmdir()


@pytest.mark.parametrize("annotators", [("labels-ah",), ("labels-vk",), ("labels-ah", "labels-vk")])
def test_stare_builds_from_either_annotator_and_records_which(annotators, tmp_path):
    dummy.write_dummy("stare", tmp_path / "manual")
    if "labels-ah" not in annotators:
        to_second_annotator(tmp_path / "manual")
    elif "labels-vk" in annotators:
        (tmp_path / "manual/STARE/labels-vk").mkdir()
        (tmp_path / "manual/STARE/labels-vk/im0001.vk.ppm.gz").write_bytes(b"not read: labels-ah come first")
    builder = build("stare", tmp_path)
    assert json.loads((builder.data_path / "metadata.json").read_text())["annotator"] == annotators[0]
    assert tfds.builder_from_directory(str(builder.data_path)).info.metadata["annotator"] == annotators[0]
    assert len(read_all(builder.data_path)) == 2


def test_stare_without_labels_names_both_patterns_and_is_not_listed_as_present(tmp_path, capsys):
    dummy.write_dummy("stare", tmp_path / "manual")
    for label in (tmp_path / "manual/STARE/labels-ah").iterdir():
        label.unlink()
    with pytest.raises(FileNotFoundError, match=r"labels-ah/im\*\.ah\.ppm\[\.gz\].*labels-vk/im\*\.vk\.ppm\[\.gz\]"):
        build("stare", tmp_path)
    assert_nothing_readable("stare", tmp_path)
    build_module.main(["raw", "--list", "--manual_dir", str(tmp_path / "manual")])
    out, err = capsys.readouterr()
    assert "stare" not in out.split()
    assert "| STARE | stare | STARE/ |" in err and "no vessel labels found" in err
