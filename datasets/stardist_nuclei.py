"""Fluorescence nuclei (DSB 2018 image shipped with stardist): overlapping tiles of one 512x512 image."""

from __future__ import annotations

import dataclasses

import numpy as np

from universeg_datasets import base, bundled, readers, standardize

DATASET = "stardist_nuclei"


@dataclasses.dataclass(eq=False)
class NucleiConfig(base.TaskConfig):
    """``tile``: tile side in source pixels (resized to ``size``); tiles overlap by half a tile."""

    tile: int = 128


class StardistNuclei(base.TaskBuilder):
    """Nuclei segmentation in a fluorescence microscopy image (stardist's img2d.tif / mask2d.tif, from the
    2018 Data Science Bowl). Each tile is one example; its subject id is ``img2d@r<row>c<col>``, so tiles of
    the one source image count as separate subjects."""

    BUILDER_CONFIGS = base.size_configs(NucleiConfig)
    HOMEPAGE = "https://github.com/stardist/stardist"

    def _generate_examples(self, dl_manager):
        image = readers.read_image(bundled.package_file("stardist", "data/images/img2d.tif"))
        mask = readers.read_image(bundled.package_file("stardist", "data/images/mask2d.tif"))
        tile = self.builder_config.tile
        for top, left in tile_origins(image.shape, tile):
            view = standardize.View(image[top : top + tile, left : left + tile], mask[top : top + tile, left : left + tile])
            yield from standardize.view_examples(
                view,
                {"nuclei": None},
                dataset=DATASET,
                modality="fluorescence",
                subject=f"img2d@r{top}c{left}",
                size=self.builder_config.size,
            )


def tile_origins(shape, tile: int) -> list[tuple[int, int]]:
    """Top-left corners of tiles of side ``tile`` with stride ``tile // 2`` covering ``shape``."""
    if not 1 <= tile <= min(shape[:2]):
        raise ValueError(f"tile must be between 1 and {min(shape[:2])} pixels, got {tile}")
    stride = max(tile // 2, 1)
    rows = np.arange(0, shape[0] - tile + 1, stride)
    cols = np.arange(0, shape[1] - tile + 1, stride)
    return [(int(r), int(c)) for r in rows for c in cols]
