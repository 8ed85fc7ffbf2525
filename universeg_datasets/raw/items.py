"""MegaMedical datasets whose files each hold many examples, or whose labels are not image files.

ISBI 2012 EM (a multi-page TIFF), PanNuke (NumPy arrays of 256x256 patches), TUCC (one HDF5 file of
ultrasound frames), CheXplanation (COCO run-length masks in a JSON file), EchoNet-Dynamic (videos with
left-ventricle tracings in a CSV file) and HMC-QU (videos with MATLAB mask sequences). Templates cannot say where
their examples are: each table row names a function that lists them (``pairs``); the files are read by the shared
``formats`` sources.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import numpy as np

from universeg_datasets import readers, standardize
from universeg_datasets.raw import formats
from universeg_datasets.raw.common import Pair, files
from universeg_datasets.raw.layout import define

PANNUKE_TYPES = ("neoplastic", "inflammatory", "connective", "dead", "epithelial")  # channel 5: background
CHEXPLANATION_SPLITS = {"val": "valid", "test": "test"}  # JSON name part -> CheXpert image folder


def em_stack_pairs(root: Path) -> list[Pair]:
    """Each page of the training stack is one image; membranes are the black (0) pixels of the labels."""
    volume = readers.require_file(root / "train-volume.tif", "ISBI 2012 image stack")
    labels = readers.require_file(root / "train-labels.tif", "ISBI 2012 label stack")
    count = formats.tiff_pages(volume)
    if formats.tiff_pages(labels) != count:
        raise ValueError(f"{labels} has {formats.tiff_pages(labels)} pages but {volume} has {count}")
    return [
        Pair(f"slice{i:02d}", formats.TiffPage(volume, i), (formats.TiffPage(labels, i),), ("em",), {"membrane": 0})
        for i in range(count)
    ]


def pannuke_pairs(root: Path) -> list[Pair]:
    """Every 256x256 patch of each fold; one mask channel per nucleus type (instance ids, non-zero = nucleus)."""
    pairs = []
    for images in files(root, "Fold */images/fold*/images.npy"):
        fold = images.parent.name
        masks = readers.require_file(images.parents[2] / "masks" / fold / "masks.npy", f"masks of {images}")
        count = formats.npy_length(images)
        if formats.npy_length(masks) != count:
            raise ValueError(f"{masks} has {formats.npy_length(masks)} items but {images} has {count}")
        for i in range(count):
            layers = tuple((name, formats.ArrayItem(masks, i, c)) for c, name in enumerate(PANNUKE_TYPES))
            pairs.append(Pair(f"{fold}_{i}", formats.ArrayItem(images, i), (), ("he",), {}, layers=layers))
    return pairs


def tucc_pairs(root: Path) -> list[Pair]:
    """Every frame of dataset.hdf5 (datasets image, mask, annot_id); subject = annot_id (one per nodule clip)."""
    path = readers.require_file(root / "dataset.hdf5", "TUCC dataset.hdf5")
    ids = [v.decode() if isinstance(v, bytes) else str(v) for v in formats.hdf5_dataset(path, "annot_id")[:]]
    frames = len(formats.hdf5_dataset(path, "image"))
    if len(ids) != frames or len(formats.hdf5_dataset(path, "mask")) != frames:
        raise ValueError(f"{path}: image, mask and annot_id have different lengths")
    return [
        Pair(
            subject,
            formats.Hdf5Item(path, "image", i),
            (formats.Hdf5Item(path, "mask", i),),
            ("ultrasound",),
            {"thyroid_nodule": None},
            source=f"{subject}_{i}",
        )
        for i, subject in enumerate(ids)
    ]


def chexlocalize_pairs(root: Path) -> list[Pair]:
    """CheXlocalize ground truth: per image, one COCO RLE mask per pathology in gt_segmentations_<split>.json."""
    pairs = []
    for path in files(root, "gt_segmentation*_*.json"):
        split = path.stem.rsplit("_", 1)[-1]
        if split not in CHEXPLANATION_SPLITS:
            continue
        for key, masks in formats.read_json(path).items():
            patient, study, view = _chexpert_key(key, path)
            image = root / "CheXpert-v1.0" / CHEXPLANATION_SPLITS[split] / patient / study / f"{view}.jpg"
            readers.require_file(image, f"image of {key} in {path}")
            layers = tuple(
                (standardize.clean_name(name).lower(), formats.RleMask(path, (key, name))) for name in sorted(masks)
            )
            pairs.append(Pair(patient, image, (), ("xray",), {}, source=key, layers=layers))
    return pairs


def _chexpert_key(key: str, path: Path) -> tuple[str, str, str]:
    """'patient64541_study1_view1_frontal' -> ('patient64541', 'study1', 'view1_frontal')."""
    parts = key.split("_")
    if len(parts) < 4 or not parts[0].startswith("patient") or not parts[1].startswith("study"):
        raise ValueError(f"{path}: key {key!r} is not patient<id>_study<n>_view<n>_<frontal|lateral>")
    return parts[0], parts[1], "_".join(parts[2:])


def echonet_pairs(root: Path) -> list[Pair]:
    """The two traced frames (end-diastole, end-systole) of each video; the LV is the polygon of the tracing's
    segment ends (its first line, the long axis, left out), as in the EchoNet-Dynamic code."""
    tracings = readers.require_file(root / "VolumeTracings.csv", "EchoNet VolumeTracings.csv")
    rows = defaultdict(list)
    try:
        with tracings.open(newline="") as handle:
            for row in csv.DictReader(handle):
                rows[(row["FileName"], int(row["Frame"]))].append([float(row[k]) for k in ("X1", "Y1", "X2", "Y2")])
    except (KeyError, ValueError) as err:
        raise ValueError(f"{tracings} is not a tracing table FileName,X1,Y1,X2,Y2,Frame: {err}") from err
    pairs = []
    for (name, frame), lines in sorted(rows.items()):
        video = readers.require_file(
            root / "Videos" / (name if name.endswith(".avi") else f"{name}.avi"), f"video of {name} in {tracings}"
        )
        lines = np.asarray(lines)[1:]
        points = np.concatenate([lines[:, :2], lines[::-1, 2:]])
        label = formats.Polygon(tuple(map(tuple, points)), name=f"{tracings}:{name}@{frame}")
        pairs.append(
            Pair(
                video.stem,
                formats.Video(video, frame),
                (label,),
                ("echo_a4c",),
                {"left_ventricle": None},
                source=f"{video.stem}_{frame}",
            )
        )
    return pairs


def hmc_qu_pairs(root: Path) -> list[Pair]:
    """Apical 4-chamber videos with left-ventricle wall masks for the frames of one cardiac cycle: the masks
    (224x224) were drawn on the centred square of each frame, which is cut and resized to them."""
    pairs = []
    for masks in files(root / "LV Ground-truth Segmentation Masks", "Mask_*.mat"):
        name = masks.stem[len("Mask_") :]
        video = readers.require_file(root / "A4C" / f"{name}.avi", f"video of {masks}")
        frames, height, width = formats.read_mat(masks, "predicted").shape
        image = formats.Video(video, tuple(range(frames)), crop_square=True, size=(height, width))
        pairs.append(
            Pair(
                name.strip(),
                image,
                (formats.MatVariable(masks, "predicted", frames_first=True),),
                ("echo_a4c",),
                {"lv_wall": None},
                frames=True,
            )
        )
    return pairs


TABLE = {
    "isbi_em": dict(
        pairs=em_stack_pairs,
        folder="ISBI2012",
        url="https://imagej.net/events/isbi-2012-segmentation-challenge",
        layout_text="  ISBI2012/train-volume.tif   (30 pages)\n  ISBI2012/train-labels.tif   (label, 30 pages)",
        doc="ISBI 2012 EM segmentation challenge: neuronal membranes in serial-section EM; subject = section.",
        note="Research use; the challenge's training stacks.",
    ),
    "pannuke": dict(
        pairs=pannuke_pairs,
        folder="PanNuke",
        url="https://warwick.ac.uk/fac/cross_fac/tia/data/pannuke",
        layout_text="  PanNuke/Fold 1/images/fold1/images.npy   PanNuke/Fold 1/masks/fold1/masks.npy   (and Fold 2, 3)",
        doc="PanNuke: five nucleus types in H&E patches of 19 tissues; subject = patch.",
        note="Licence CC BY-NC-SA 4.0; fold_1.zip, fold_2.zip, fold_3.zip extracted.",
    ),
    "tucc": dict(
        pairs=tucc_pairs,
        folder="TUCC",
        url="https://aimi.stanford.edu/datasets/thyroid-ultrasound-cine-clip",
        layout_text="  TUCC/dataset.hdf5   (datasets image, mask, annot_id, frame_num)",
        doc="Stanford thyroid ultrasound cine-clips: thyroid nodule masks on every frame; subject = annot_id.",
        note="Stanford AIMI research use agreement. Reading needs h5py (extra 'raw').",
    ),
    "chexplanation": dict(
        pairs=chexlocalize_pairs,
        folder="CheXplanation",
        url="https://github.com/rajpurkarlab/cheXlocalize",
        layout_text="  CheXplanation/gt_segmentations_val.json (and _test.json)   (COCO RLE masks per pathology)\n"
        "  CheXplanation/CheXpert-v1.0/valid/patient64541/study1/view1_frontal.jpg ...   (and test/)",
        doc="CheXlocalize (CheXplanation): radiologist segmentations of 10 pathologies on CheXpert chest X-rays.",
        note="Stanford AIMI research use agreement (CheXlocalize and the CheXpert validation/test images).",
    ),
    "echonet": dict(
        pairs=echonet_pairs,
        folder="EchoNet-Dynamic",
        url="https://echonet.github.io/dynamic/",
        layout_text="  EchoNet-Dynamic/Videos/0X100009310A3BD7FC.avi ...\n"
        "  EchoNet-Dynamic/VolumeTracings.csv   (FileName,X1,Y1,X2,Y2,Frame)",
        doc="EchoNet-Dynamic: left ventricle traced at end-diastole and end-systole in apical-4-chamber videos.",
        note="Stanford AIMI research use agreement. Reading videos needs PyAV (extra 'raw').",
    ),
    "hmc_qu": dict(
        pairs=hmc_qu_pairs,
        folder="HMC-QU",
        url="https://www.kaggle.com/datasets/aysendegerli/hmcqu-dataset",
        layout_text="  HMC-QU/A4C/ES0001 _4CH_1.avi ...\n"
        "  HMC-QU/LV Ground-truth Segmentation Masks/Mask_ES0001 _4CH_1.mat ...   (variable 'predicted')",
        doc="HMC-QU: left-ventricle wall in apical 4-chamber echocardiography videos (one cycle per video).",
        note="Licence CC BY 4.0 (Kaggle). Reading videos needs PyAV (extra 'raw').",
    ),
}

for _name, _entry in TABLE.items():
    define(globals(), _name, **_entry)
