"""Raw builders on real release files: every sample dataset in ../shared/megamedical (skipped when absent) is built
and each built example is compared with its raw files, read here without the builders' code (Pillow, tifffile,
nibabel, a COCO RLE decoder): label Dice and image correlation after the same resize.

The files are not part of the project (their licences do not allow redistribution); see docs/datasets.md,
"Built from real release files".
"""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tensorflow_datasets as tfds
import tifffile
from PIL import Image

from universeg_datasets import registry
from universeg_jax import preprocess

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "megamedical"
SIZE = 64
MIN_DICE = 0.95
MIN_CORRELATION = 0.95


def gray(path, channel=None) -> np.ndarray:
    """A 2D image file as float grayscale (ITU-R BT.601 luma of colour images, or one channel)."""
    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB") if image.mode not in ("L", "I;16", "I", "F") else image, np.float64)
    if array.ndim == 3 and channel is not None:
        return array[..., channel]
    return array @ [0.299, 0.587, 0.114] if array.ndim == 3 else array


def mask(path, keep=lambda a: a > 0) -> np.ndarray:
    with Image.open(path) as image:
        array = np.asarray(image.convert("L") if image.mode == "P" else image)
    array = array.max(axis=-1) if array.ndim == 3 else array
    return keep(array)


def coco_rle(rle: dict) -> np.ndarray:
    """A COCO run-length mask (compressed string counts, column-major), decoded as the COCO API documents it."""
    text, counts, i = rle["counts"], [], 0
    while i < len(text):
        value, shift, more = 0, 0, True
        while more:
            c = ord(text[i]) - 48
            value |= (c & 0x1F) << (5 * shift)
            more = c & 0x20
            i, shift = i + 1, shift + 1
            if not more and c & 0x10:
                value |= -1 << (5 * shift)
        counts.append(value + (counts[-2] if len(counts) > 2 else 0))
    h, w = rle["size"]
    flat = np.repeat(np.arange(len(counts)) % 2, counts).astype(bool)
    return flat.reshape(w, h).T


def drive(root, ex):
    split, number = ex["subject"][:-2], ex["subject"][-2:]
    return (
        gray(root / split / "images" / f"{number}_{split}.tif"),
        mask(root / split / "1st_manual" / f"{number}_manual1.gif"),
    )


def stare(root, ex):
    annotator = next(p.name for p in sorted(root.glob("labels-*")))
    return (
        gray(root / "stare-images" / f"{ex['subject']}.ppm"),
        mask(root / annotator / f"{ex['subject']}.{annotator[-2:]}.ppm"),
    )


def wbc(root, ex):
    folder = "Dataset 1" if ex["subject"].startswith("jtsc") else "Dataset 2"
    number = ex["subject"][-3:]
    value = {"nucleus": 255, "cytoplasm": 128}[ex["label_name"]]
    return gray(root / folder / f"{number}.bmp"), mask(root / folder / f"{number}.png", lambda a: a == value)


def kvasir_seg(root, ex):
    return (
        gray(root / "images" / f"{ex['subject']}.jpg"),
        mask(root / "masks" / f"{ex['subject']}.jpg", lambda a: a >= 128),
    )


def bbbc038(root, ex):
    case = root / ex["subject"]
    nuclei = np.any([mask(p) for p in sorted((case / "masks").glob("*.png"))], axis=0)
    return gray(case / "images" / f"{ex['subject']}.png"), nuclei


def chexplanation(root, ex):
    (path,) = root.glob("gt_segmentations_val.json")
    for key, masks in json.loads(path.read_text()).items():
        if key.startswith(ex["subject"] + "_"):
            study, view = key.split("_")[1], "_".join(key.split("_")[2:])
            label = next(coco_rle(m) for n, m in masks.items() if n.replace(" ", "_").lower() == ex["label_name"])
            return gray(root / "CheXpert-v1.0" / "valid" / ex["subject"] / study / f"{view}.jpg"), label
    raise KeyError(ex["subject"])


def isbi_em(root, ex):
    page = int(ex["subject"][len("slice") :])
    return (
        tifffile.imread(root / "train-volume.tif", key=page).astype(float),
        tifffile.imread(root / "train-labels.tif", key=page) == 0,
    )


def lgg_flair(root, ex):
    case = root / ex["subject"]
    numbers = sorted(int(p.stem.rsplit("_", 1)[1]) for p in case.glob("*.tif") if not p.stem.endswith("_mask"))
    k = numbers[ex["slice"]]  # the stack is cut along its slices only (axis 2)
    channel = ("pre_contrast", "flair", "post_contrast").index(ex["modality"])
    return gray(case / f"{ex['subject']}_{k}.tif", channel), mask(case / f"{ex['subject']}_{k}_mask.tif")


def msd_hippocampus(root, ex):
    values = {"anterior": 1, "posterior": 2}
    image, label = (
        np.asarray(nib.as_closest_canonical(nib.load(root / folder / f"{ex['subject']}.nii.gz")).dataobj)
        for folder in ("imagesTr", "labelsTr")
    )
    return (
        np.take(image, ex["slice"], axis=ex["axis"]).astype(float),
        np.take(label, ex["slice"], axis=ex["axis"]) == values[ex["label_name"]],
    )


RAW = {f.__name__: f for f in (drive, stare, wbc, kvasir_seg, bbbc038, chexplanation, isbi_em, lgg_flair,
                               msd_hippocampus)}  # fmt: skip
# Subjects each sample gives examples of. LGG: one view per case (the middle slice, size configs' slices=1), and
# the middle slice (11 of 20) of TCGA_CS_4943_20000902 has no abnormality.
SUBJECTS = {
    "drive": 6,
    "stare": 5,
    "wbc": 20,
    "kvasir_seg": 5,
    "bbbc038": 6,
    "chexplanation": 2,
    "isbi_em": 30,
    "lgg_flair": 1,
    "msd_hippocampus": 6,
}


def correlation(a, b) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def dice(a, b) -> float:
    return 2.0 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1)


@pytest.mark.parametrize("name", sorted(RAW))
def test_real_release_files_build_and_agree_with_the_raw_files(name, tmp_path):
    if not (SAMPLES / name).is_dir():
        pytest.skip(f"no real sample of {name} in {SAMPLES}")
    builder = registry.builder_class(name)
    assert builder.missing(SAMPLES / name) is None  # what `build raw --list` checks
    built = registry.build(name, config=f"size{SIZE}", data_dir=tmp_path, manual_dir=SAMPLES / name)
    info = tfds.builder_from_directory(str(built.data_path)).info
    resize = info.metadata["resize"]
    source = built.as_data_source(split="train")
    examples = [
        {k: v.decode() if isinstance(v, bytes) else v for k, v in source[i].items()} for i in range(len(source))
    ]
    subjects = {ex["subject"] for ex in examples}
    assert len(subjects) == SUBJECTS[name], sorted(subjects)
    for ex in examples:
        image, label = RAW[name](SAMPLES / name / builder.RAW_FOLDER, ex)
        expected_label = preprocess.fit_label(label, (SIZE, SIZE), resize, "area")
        expected_image = preprocess.fit_image(image, (SIZE, SIZE), resize, "area")
        where = f"{ex['task']} {ex['subject']} slice {ex['slice']}"
        assert dice(ex["label"][..., 0] > 0, expected_label > 0) >= MIN_DICE, where
        assert correlation(ex["image"][..., 0], expected_image) >= MIN_CORRELATION, where
