"""Tiny fake copies of each raw dataset in its published file layout, for tests and for trying a builder.

``write_dummy(name, manual_dir)`` writes what the builder ``name`` expects under ``manual_dir``.
Images are small and random; label maps hold every label of the dataset (nested disks or balls around
the centre, so that middle slices contain them all).
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import tifffile
from PIL import Image

from universeg_datasets.raw import fakes

SHAPE_2D = (40, 48)
SHAPE_3D = (20, 24, 16)
# MSD task folder, channel names and label names, as in each task's dataset.json.
MSD_TASKS = {
    "msd_brain_tumour": ("Task01_BrainTumour", ("FLAIR", "T1w", "t1gd", "T2w"), ("edema", "non-enhancing tumor", "enhancing tumour")),
    "msd_heart": ("Task02_Heart", ("MRI",), ("left atrium",)),
    "msd_liver": ("Task03_Liver", ("CT",), ("liver", "cancer")),
    "msd_hippocampus": ("Task04_Hippocampus", ("MRI",), ("Anterior", "Posterior")),
    "msd_prostate": ("Task05_Prostate", ("T2", "ADC"), ("PZ", "TZ")),
    "msd_lung": ("Task06_Lung", ("CT",), ("cancer",)),
    "msd_pancreas": ("Task07_Pancreas", ("CT",), ("pancreas", "cancer")),
    "msd_hepatic_vessel": ("Task08_HepaticVessel", ("CT",), ("Vessel", "Tumour")),
    "msd_spleen": ("Task09_Spleen", ("CT",), ("spleen",)),
    "msd_colon": ("Task10_Colon", ("CT",), ("colon cancer primaries",)),
}  # fmt: skip


def nested_labels(shape, values) -> np.ndarray:
    """Label map of nested disks/balls around the centre: the first value outermost."""
    grid = np.indices(shape, dtype=np.float32)
    centre = np.array(shape, np.float32).reshape(-1, *([1] * len(shape))) / 2.0
    radius = np.sqrt((((grid - centre) / centre) ** 2).sum(axis=0))  # 0 centre, 1 at the edge midpoints
    label = np.zeros(shape, np.uint8)
    for rank, value in enumerate(values):
        label[radius < 0.8 * (len(values) - rank) / len(values)] = value
    return label


def fake_image(rng: np.random.Generator, label: np.ndarray, channels: int = 0) -> np.ndarray:
    """uint8 image whose intensity depends on the label, plus noise; ``channels`` > 0 adds a last axis."""
    base = 60.0 + 40.0 * label.astype(np.float32)
    shape = label.shape + ((channels,) if channels else ())
    noisy = (base[..., None] if channels else base) + rng.normal(0.0, 10.0, shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def save_image(path: Path, array: np.ndarray, format: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".tif", ".tiff"):
        tifffile.imwrite(path, array)
        return
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=format or path.suffix.lstrip(".").replace("jpg", "jpeg").upper())
    data = buffer.getvalue()
    path.write_bytes(gzip.compress(data) if format else data)


def save_nifti(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.eye(4)), path)


def _pairs_2d(rng, values, count, channels=3):
    for _ in range(count):
        label = nested_labels(SHAPE_2D, values)
        yield fake_image(rng, label, channels), label


def _drive(root, rng):
    for split, numbers in (("training", ("21", "22")), ("test", ("01",))):
        for number, (image, label) in zip(numbers, _pairs_2d(rng, [255], 2)):
            save_image(root / "DRIVE" / split / "images" / f"{number}_{split}.tif", image)
            save_image(root / "DRIVE" / split / "1st_manual" / f"{number}_manual1.gif", label)


def _stare(root, rng):
    for number, (image, label) in zip(("im0001", "im0002"), _pairs_2d(rng, [255], 2)):
        save_image(root / "STARE" / "stare-images" / f"{number}.ppm.gz", image, format="PPM")
        save_image(root / "STARE" / "labels-ah" / f"{number}.ah.ppm.gz", np.stack([label] * 3, -1), format="PPM")


def _wbc(root, rng):
    for folder in ("Dataset 1", "Dataset 2"):
        for number, (image, label) in zip(("001", "002"), _pairs_2d(rng, [128, 255], 2)):
            save_image(root / "segmentation_WBC" / folder / f"{number}.bmp", image)
            save_image(root / "segmentation_WBC" / folder / f"{number}.png", label)


def _busi(root, rng):
    for category in ("benign", "malignant", "normal"):
        image, label = next(_pairs_2d(rng, [255], 1))
        folder = root / "Dataset_BUSI_with_GT" / category
        save_image(folder / f"{category} (1).png", image)
        save_image(folder / f"{category} (1)_mask.png", label * (category != "normal"))
    extra = np.zeros(SHAPE_2D, np.uint8)
    extra[:5, :5] = 255
    save_image(root / "Dataset_BUSI_with_GT" / "benign" / "benign (1)_mask_1.png", extra)


def _isic2018(root, rng):
    for number, (image, label) in zip(("0000000", "0000001"), _pairs_2d(rng, [255], 2)):
        save_image(root / "ISIC2018" / "ISIC2018_Task1-2_Training_Input" / f"ISIC_{number}.jpg", image)
        save_image(root / "ISIC2018" / "ISIC2018_Task1_Training_GroundTruth" / f"ISIC_{number}_segmentation.png", label)


def _pan_dental(root, rng):
    for number, (image, label) in zip(("1", "2"), _pairs_2d(rng, [255], 2, channels=0)):
        save_image(root / "PanDental" / "Images" / f"{number}.png", image)
        save_image(root / "PanDental" / "Segmentation1" / f"{number}.png", label)


def _volume_pair(rng, values, channels=0):
    label = nested_labels(SHAPE_3D, values)
    return fake_image(rng, label, channels).astype(np.float32), label


def _acdc(root, rng):
    for patient in ("patient001", "patient002"):
        for frame in ("01", "12"):
            image, label = _volume_pair(rng, [1, 2, 3])
            folder = root / "ACDC" / "training" / patient
            save_nifti(folder / f"{patient}_frame{frame}.nii.gz", image)
            save_nifti(folder / f"{patient}_frame{frame}_gt.nii.gz", label)


def _oasis_neurite(root, rng):
    for subject in ("OASIS_OAS1_0001_MR1", "OASIS_OAS1_0002_MR1"):
        image, label = _volume_pair(rng, [4, 1, 3, 2])
        save_nifti(root / "neurite-oasis" / subject / "aligned_norm.nii.gz", image)
        save_nifti(root / "neurite-oasis" / subject / "aligned_seg4.nii.gz", label)


def _kits19(root, rng):
    for case in ("case_00000", "case_00001", "case_00210"):  # case_00210: test set, no segmentation
        image, label = _volume_pair(rng, [1, 2])
        save_nifti(root / "kits19" / "data" / case / "imaging.nii.gz", image)
        if case != "case_00210":
            save_nifti(root / "kits19" / "data" / case / "segmentation.nii.gz", label)


def _msd(name):
    folder, modalities, labels = MSD_TASKS[name]

    def write(root, rng):
        task = root / folder
        task.mkdir(parents=True, exist_ok=True)
        info = {
            "name": folder.split("_", 1)[1],
            "modality": {str(i): m for i, m in enumerate(modalities)},
            "labels": {"0": "background", **{str(i + 1): n for i, n in enumerate(labels)}},
        }
        (task / "dataset.json").write_text(json.dumps(info))
        for case in ("case_001", "case_002"):
            channels = len(modalities) if len(modalities) > 1 else 0
            image, label = _volume_pair(rng, list(range(1, len(labels) + 1)), channels)
            save_nifti(task / "imagesTr" / f"{case}.nii.gz", image)
            save_nifti(task / "labelsTr" / f"{case}.nii.gz", label)

    return write


WRITERS = {
    "acdc": _acdc,
    "busi": _busi,
    "drive": _drive,
    "isic2018": _isic2018,
    "kits19": _kits19,
    "oasis_neurite": _oasis_neurite,
    "pan_dental": _pan_dental,
    "stare": _stare,
    "wbc": _wbc,
    **{name: _msd(name) for name in MSD_TASKS},
    **fakes.WRITERS,  # the table-defined datasets
}


def write_dummy(name: str, manual_dir, seed: int = 0) -> None:
    """Write a tiny fake copy of raw dataset ``name`` under ``manual_dir`` (its published layout)."""
    if name not in WRITERS:
        raise ValueError(f"no dummy data for {name!r}; known: {', '.join(sorted(WRITERS))}")
    WRITERS[name](Path(manual_dir), np.random.default_rng(seed))
