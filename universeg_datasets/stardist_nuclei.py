"""Fluorescence nuclei (DSB 2018 image shipped with stardist): tiles of one 512x512 image that never overlap."""

from __future__ import annotations

import dataclasses

import tensorflow_datasets as tfds

from universeg_datasets import base, bundled, standardize, tiling
from universeg_jax import io

DATASET = "stardist_nuclei"


@dataclasses.dataclass(eq=False)
class NucleiConfig(base.TaskConfig):
    """``tile``: tile side in source pixels (resized to ``size``). Tiles sit on a grid and never overlap."""

    tile: int = 96


class StardistNuclei(base.TaskBuilder):
    """Nuclei segmentation in a fluorescence microscopy image (stardist's img2d.tif / mask2d.tif, from the
    2018 Data Science Bowl). Each tile is one example and its own subject: ``img2d@y<top>x<left>``.

    Subjects must be really distinct, so tiles never overlap. Tiles that overlapped (stride half a tile, up to
    1.0.0) let a query share pixels with its support. With 96 px tiles on a centred 5x5 grid, the image gives
    25 tiles."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "First release (128 px tiles at stride 64: overlapping tiles were separate subjects).",
        "1.1.0": "Tiles never overlap (96 px tiles on a 5x5 grid), so no query shares pixels with its support.",
    }
    BUILDER_CONFIGS = base.size_configs(NucleiConfig)
    HOMEPAGE = "https://github.com/stardist/stardist"

    def _generate_examples(self, dl_manager):
        image = io.read_2d_image(bundled.package_file("stardist", "data/images/img2d.tif"))
        mask = io.read_2d_image(bundled.package_file("stardist", "data/images/mask2d.tif"))
        standardize.check_same_size(image, mask, "img2d.tif", "mask2d.tif", ndim=2)
        for window in tiling.grid(mask.shape, self.builder_config.tile):
            yield from standardize.view_examples(
                standardize.View(window.crop(image, channels_last=True), window.crop(mask)),
                {"nuclei": None},
                dataset=DATASET,
                modality="fluorescence",
                subject=window.subject("img2d"),
                size=self.builder_config.size,
            )
