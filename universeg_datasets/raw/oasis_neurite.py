"""OASIS-1 brain MRI as preprocessed by neurite-oasis (Hoopes et al.; Marcus et al. 2007)."""

from __future__ import annotations

import tensorflow_datasets as tfds

from universeg_datasets.raw.common import Pair, RawTaskBuilder, files, label_path, manual_instructions

SEG4 = {"cortex": 1, "subcortical_grey_matter": 2, "white_matter": 3, "csf": 4}


class OasisNeurite(RawTaskBuilder):
    """OASIS-1 T1 MRI (skull-stripped, affinely aligned) with 4 tissue classes (aligned_seg4)."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "First release.",
        "1.1.0": "Volume slices are normalised with the intensity range of their whole volume, as inference does (was: each slice on its own).",
    }

    RAW_FOLDER = "neurite-oasis"
    VOLUMETRIC = True
    HOMEPAGE = "https://github.com/adalca/medical-datasets/blob/master/neurite-oasis.md"
    MANUAL_DOWNLOAD_INSTRUCTIONS = manual_instructions(
        HOMEPAGE,
        "  neurite-oasis/OASIS_OAS1_0001_MR1/aligned_norm.nii.gz, aligned_seg4.nii.gz ...",
        "Data use agreement: OASIS (https://www.oasis-brains.org/).",
    )

    @classmethod
    def _pairs(cls, root):
        pairs = []
        for image in files(root, "OASIS_OAS1_*_MR1/aligned_norm.nii.gz"):
            label = label_path(image, image.with_name("aligned_seg4.nii.gz"))
            pairs.append(Pair(image.parent.name, image, (label,), ("t1",), SEG4))
        return pairs
