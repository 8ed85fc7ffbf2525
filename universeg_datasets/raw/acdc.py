"""ACDC: cardiac cine MRI, right ventricle, myocardium, left ventricle (Bernard et al. 2018)."""

from __future__ import annotations

import tensorflow_datasets as tfds

from universeg_datasets.raw.common import Pair, RawTaskBuilder, files, label_path, manual_instructions

LABELS = {"right_ventricle": 1, "myocardium": 2, "left_ventricle": 3}


class Acdc(RawTaskBuilder):
    """ACDC short-axis cine MRI at end-diastole and end-systole with their label maps (3D volumes)."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "First release.",
        "1.1.0": "Volume slices are normalised with the intensity range of their whole volume, as inference does (was: each slice on its own).",
    }

    RAW_FOLDER = "ACDC"
    VOLUMETRIC = True
    HOMEPAGE = "https://www.creatis.insa-lyon.fr/Challenge/acdc/"
    MANUAL_DOWNLOAD_INSTRUCTIONS = manual_instructions(
        HOMEPAGE,
        "  ACDC/training/patient001/patient001_frame01.nii.gz, patient001_frame01_gt.nii.gz, ...\n"
        "  (optional) ACDC/testing/patient101/...",
    )

    @classmethod
    def _pairs(cls, root):
        pairs = []
        for split in ("training", "testing"):
            for image in files(root / split, "patient*/patient*_frame[0-9][0-9].nii.gz"):
                label = label_path(image, image.with_name(image.name.replace(".nii.gz", "_gt.nii.gz")))
                patient = image.parent.name
                frame = image.name.split("_")[1].split(".")[0]
                pairs.append(Pair(patient, image, (label,), ("cine_mri",), LABELS, source=f"{patient}_{frame}"))
        return pairs
