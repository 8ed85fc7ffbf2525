"""Pictures for the page: PNG data URLs of query slices, probability maps and support thumbnails."""

from __future__ import annotations

import base64
import functools
import io as _io

import numpy as np

from universeg_jax import overlay
from universeg_jax import preprocess as pp

THUMBNAIL = 96  # px, the longer side of a support thumbnail


def hex_colour(rgb) -> str:
    return "#" + "".join(f"{int(c):02x}" for c in rgb)


def png(array: np.ndarray) -> bytes:
    """PNG bytes of a uint8 ``(H, W)`` or ``(H, W, 3)`` array."""
    from PIL import Image

    buffer = _io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def data_url(array: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png(array)).decode("ascii")


def gray(image01: np.ndarray) -> np.ndarray:
    """A [0, 1] image as uint8."""
    return (np.clip(image01, 0, 1) * 255).round().astype(np.uint8)


@functools.cache
def _heat_table() -> np.ndarray:
    from matplotlib import colormaps

    return (colormaps["inferno"](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)


def heat(probability: np.ndarray) -> np.ndarray:
    """A probability map in [0, 1] as an RGB picture (inferno: black 0 -> yellow 1)."""
    return _heat_table()[gray(probability)]


def thumbnail(image01: np.ndarray, label: np.ndarray, colours: dict[int, np.ndarray]) -> str:
    """A small picture of a support example: the image with each label value tinted in its legend colour."""
    h, w = image01.shape
    scale = THUMBNAIL / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    picture = pp.resize_image(image01, size, "area" if scale < 1 else "bilinear")
    rgb = np.repeat(gray(picture)[..., None], 3, axis=-1).astype(np.float32)
    rows = np.minimum(((np.arange(size[0]) + 0.5) * h / size[0]).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(size[1]) + 0.5) * w / size[1]).astype(np.int64), w - 1)
    small = label[rows[:, None], cols[None, :]]  # nearest pixel: keeps every label value
    for value in np.unique(small):
        if value:
            overlay.tint(rgb, small == value, colours.get(int(value), overlay.PALETTE[0]), 0.55)
    return data_url(rgb.round().astype(np.uint8))
