"""Raw MegaMedical builders on tiny fake data in each dataset's published layout (universeg_datasets.raw.dummy)."""

import gzip
import json

import nibabel as nib
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from universeg_datasets import registry, standardize
from universeg_datasets.raw import dummy
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
    "oasis_neurite": (("t1",), ("cortex", "subcortical_grey_matter", "white_matter", "csf"), AXES_3D,
                      {"OASIS_OAS1_0001_MR1", "OASIS_OAS1_0002_MR1"}),
    "pan_dental": (("xray",), ("mandible",), (0,), {"1", "2"}),
    "stare": (("fundus",), ("vessel",), (0,), {"im0001", "im0002"}),
    "wbc": (("jtsc", "cellavision"), ("nucleus", "cytoplasm"), (0,), {"jtsc001", "jtsc002", "cellavision001", "cellavision002"}),
    **{name: (modalities, labels, AXES_3D, {"case_001", "case_002"}) for name, (_, modalities, labels) in dummy.MSD_TASKS.items()},
}


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
    assert set(index["tasks"]) == {standardize.task_id(name, m, l, a) for m in modalities for l in labels for a in axes}
    assert set(index["example_subject"]) == subjects
    for example in read_all(builder.data_path):
        assert example["image"].max() > example["image"].min()  # a real image, not a constant


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
    "image without label": ("drive", lambda m: (m / "DRIVE/training/1st_manual/22_manual1.gif").unlink(),
                            FileNotFoundError, "22_training.tif"),
    "label without image": ("stare", lambda m: (m / "STARE/stare-images/im0002.ppm.gz").unlink(),
                            FileNotFoundError, "im0002.ppm.gz"),
    "corrupt image": ("drive", lambda m: (m / "DRIVE/training/images/21_training.tif").write_bytes(b"not a tiff"),
                      ValueError, "21_training.tif"),
    "corrupt gzip image": ("stare", lambda m: (m / "STARE/labels-ah/im0001.ah.ppm.gz").write_bytes(gzip.compress(b"P6 junk")),
                           ValueError, "im0001.ah.ppm.gz"),
    "label of wrong size": ("isic2018", lambda m: write_png(
        m / "ISIC2018/ISIC2018_Task1_Training_GroundTruth/ISIC_0000001_segmentation.png", np.zeros((7, 9), np.uint8)),
        ValueError, "ISIC_0000001_segmentation.png"),
    "colour label": ("pan_dental", lambda m: write_png(
        m / "PanDental/Segmentation1/2.png", np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)),
        ValueError, "2.png"),
    "corrupt NIfTI": ("acdc", lambda m: (m / "ACDC/training/patient002/patient002_frame12.nii.gz").write_bytes(b"\x1f\x8bjunk"),
                      ValueError, "patient002_frame12.nii.gz"),
    "truncated NIfTI": ("kits19", lambda m: (m / "kits19/data/case_00001/segmentation.nii.gz").write_bytes(
        (m / "kits19/data/case_00001/segmentation.nii.gz").read_bytes()[:300]), ValueError, "segmentation.nii.gz"),
    "volume label of wrong size": ("oasis_neurite", lambda m: nib.save(
        nib.Nifti1Image(np.zeros((5, 6, 7), np.uint8), np.eye(4)), m / "neurite-oasis/OASIS_OAS1_0002_MR1/aligned_seg4.nii.gz"),
        ValueError, "aligned_seg4.nii.gz"),
    "missing dataset.json": ("msd_spleen", lambda m: (m / "Task09_Spleen/dataset.json").unlink(), FileNotFoundError, "dataset.json"),
    "no images": ("wbc", lambda m: [p.unlink() for p in m.glob("segmentation_WBC/*/*")], FileNotFoundError, "no images"),
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
