"""Medical Segmentation Decathlon (Antonelli et al. 2022): one builder per task, read generically.

Each task folder has ``imagesTr``, ``labelsTr`` and a ``dataset.json`` naming the image channels
(modalities) and the label values, which become the tasks.
"""

from __future__ import annotations

import json
from pathlib import Path

from universeg_datasets.raw.common import WHOLE_VOLUME_NOTES, Pair, files, label_path
from universeg_datasets.raw.layout import define
from universeg_datasets.readers import require_file

HOMEPAGE = "http://medicaldecathlon.com/"
RELEASE_NOTES = {
    **WHOLE_VOLUME_NOTES,
    "1.2.0": "Modality and label names lower-case like every other builder's (msd_hippocampus/mri/anterior/0; was: "
    "the capitalisation of dataset.json, msd_hippocampus/MRI/Anterior/0).",
}
# builder -> (task folder, description)
TASKS = {
    "msd_brain_tumour": ("Task01_BrainTumour", "MSD Task01: brain tumour (glioma) in multi-parametric MRI."),
    "msd_heart": ("Task02_Heart", "MSD Task02: left atrium in MRI."),
    "msd_liver": ("Task03_Liver", "MSD Task03: liver and liver tumour in CT."),
    "msd_hippocampus": ("Task04_Hippocampus", "MSD Task04: anterior and posterior hippocampus in MRI."),
    "msd_prostate": ("Task05_Prostate", "MSD Task05: prostate peripheral and transition zones in T2 and ADC MRI."),
    "msd_lung": ("Task06_Lung", "MSD Task06: lung tumours in CT."),
    "msd_pancreas": ("Task07_Pancreas", "MSD Task07: pancreas and pancreatic tumour in CT."),
    "msd_hepatic_vessel": ("Task08_HepaticVessel", "MSD Task08: hepatic vessels and tumour in CT."),
    "msd_spleen": ("Task09_Spleen", "MSD Task09: spleen in CT."),
    "msd_colon": ("Task10_Colon", "MSD Task10: colon cancer in CT."),
}


def task_pairs(root: Path) -> list[Pair]:
    """Every training image of a task folder with its label; channels and labels named by its dataset.json."""
    modalities, label_values = read_dataset_json(root / "dataset.json")
    pairs = []
    for image in files(root / "imagesTr", "*.nii.gz"):
        label = label_path(image, root / "labelsTr" / image.name)
        pairs.append(Pair(image.name[: -len(".nii.gz")], image, (label,), modalities, label_values))
    return pairs


def read_dataset_json(path) -> tuple[tuple[str, ...], dict[str, int]]:
    """(modality name per channel, {label name: value}) from an MSD ``dataset.json``, lower-case (task ids of every
    builder are lower-case; the releases write ``"MRI"``, ``"FLAIR"``, ``"Anterior"``, ``"cancer"``)."""
    require_file(path, "MSD dataset.json")
    try:
        info = json.loads(path.read_text())
        modalities = tuple(info["modality"][key].lower() for key in sorted(info["modality"], key=int))
        labels = {name.lower(): int(value) for value, name in info["labels"].items() if int(value) != 0}
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path} is not an MSD dataset.json with 'modality' and 'labels': {err}") from err
    return modalities, labels


for _name, (_folder, _doc) in TASKS.items():
    define(
        globals(),
        _name,
        folder=_folder,
        url=HOMEPAGE,
        doc=_doc,
        volumetric=True,
        pairs=task_pairs,
        layout_text=f"  {_folder}/dataset.json\n"
        f"  {_folder}/imagesTr/<case>.nii.gz ...   {_folder}/labelsTr/<case>.nii.gz ...",
        release_notes=RELEASE_NOTES,
    )
