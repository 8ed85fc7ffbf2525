"""Medical Segmentation Decathlon (Antonelli et al. 2022): one builder per task, read generically.

Each task folder has ``imagesTr``, ``labelsTr`` and a ``dataset.json`` naming the image channels
(modalities) and the label values, which become the tasks.
"""

from __future__ import annotations

import json

import tensorflow_datasets as tfds

from universeg_datasets.raw.common import Pair, RawTaskBuilder, files, label_path, manual_instructions
from universeg_datasets.readers import require_file

HOMEPAGE = "http://medicaldecathlon.com/"


class MsdTask(RawTaskBuilder, skip_registration=True):
    """Base of the MSD builders: subclasses set ``RAW_FOLDER`` (e.g. ``Task04_Hippocampus``)."""

    VERSION = tfds.core.Version("1.2.0")
    RELEASE_NOTES = {
        "1.0.0": "First release.",
        "1.1.0": "Volume slices are normalised with the intensity range of their whole volume, as inference does (was: each slice on its own).",
        "1.2.0": "Modality and label names lower-case like every other builder's (msd_hippocampus/mri/anterior/0; was: "
        "the capitalisation of dataset.json, msd_hippocampus/MRI/Anterior/0).",
    }

    VOLUMETRIC = True
    HOMEPAGE = HOMEPAGE

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.MANUAL_DOWNLOAD_INSTRUCTIONS = manual_instructions(
            HOMEPAGE,
            f"  {cls.RAW_FOLDER}/dataset.json\n"
            f"  {cls.RAW_FOLDER}/imagesTr/<case>.nii.gz ...   {cls.RAW_FOLDER}/labelsTr/<case>.nii.gz ...",
        )

    @classmethod
    def _pairs(cls, root):
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


class MsdBrainTumour(MsdTask):
    """MSD Task01: brain tumour (glioma) in multi-parametric MRI."""

    RAW_FOLDER = "Task01_BrainTumour"


class MsdHeart(MsdTask):
    """MSD Task02: left atrium in MRI."""

    RAW_FOLDER = "Task02_Heart"


class MsdLiver(MsdTask):
    """MSD Task03: liver and liver tumour in CT."""

    RAW_FOLDER = "Task03_Liver"


class MsdHippocampus(MsdTask):
    """MSD Task04: anterior and posterior hippocampus in MRI."""

    RAW_FOLDER = "Task04_Hippocampus"


class MsdProstate(MsdTask):
    """MSD Task05: prostate peripheral and transition zones in T2 and ADC MRI."""

    RAW_FOLDER = "Task05_Prostate"


class MsdLung(MsdTask):
    """MSD Task06: lung tumours in CT."""

    RAW_FOLDER = "Task06_Lung"


class MsdPancreas(MsdTask):
    """MSD Task07: pancreas and pancreatic tumour in CT."""

    RAW_FOLDER = "Task07_Pancreas"


class MsdHepaticVessel(MsdTask):
    """MSD Task08: hepatic vessels and tumour in CT."""

    RAW_FOLDER = "Task08_HepaticVessel"


class MsdSpleen(MsdTask):
    """MSD Task09: spleen in CT."""

    RAW_FOLDER = "Task09_Spleen"


class MsdColon(MsdTask):
    """MSD Task10: colon cancer in CT."""

    RAW_FOLDER = "Task10_Colon"
