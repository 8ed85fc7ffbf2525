"""Read raw image and volume files with errors that name the file (raw datasets are often incomplete)."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import nibabel as nib
import numpy as np
import tifffile
from PIL import Image

from universeg_jax import preprocess

TIFF_SUFFIXES = (".tif", ".tiff")
# Palette, bilevel and grey+alpha images become grey levels; other colour spaces become RGB.
TO_GRAY_MODES = ("P", "PA", "1", "LA")
TO_RGB_MODES = ("CMYK", "YCbCr", "LAB", "HSV")


def require_file(path: Path, what: str) -> Path:
    """``path`` if it is a file, else FileNotFoundError saying which ``what`` is missing."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def read_image(path: Path) -> np.ndarray:
    """A 2D image file (PNG, JPEG, BMP, GIF, PPM, TIFF, optionally gzipped) as an array ``(H,W)`` or ``(H,W,C)``."""
    path = require_file(Path(path), "image file")
    try:
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        stem = path.name[:-3] if path.suffix == ".gz" else path.name
        array = _read_tiff(data) if stem.lower().endswith(TIFF_SUFFIXES) else _read_pillow(data)
    except Exception as err:
        raise ValueError(f"cannot read image file {path}: {err}") from err
    array = np.squeeze(array)
    if array.ndim not in (2, 3) or array.size == 0:
        raise ValueError(f"image file {path} has shape {array.shape}; expected (H, W) or (H, W, C)")
    return array


def _read_pillow(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        if image.mode in TO_GRAY_MODES:
            image = image.convert("L")
        elif image.mode in TO_RGB_MODES:
            image = image.convert("RGB")
        return np.asarray(image)


def _read_tiff(data: bytes) -> np.ndarray:
    """tifffile reads every TIFF layout, but decodes compressed ones (LZW, Deflate, JPEG) only with the optional
    'imagecodecs' package; Pillow (a core dependency) decodes those instead (DRIVE's images are LZW-compressed)."""
    try:
        return tifffile.imread(io.BytesIO(data))
    except ValueError as err:
        if "imagecodecs" not in str(err):
            raise
    return _read_pillow(data)


def read_volume(path: Path) -> np.ndarray:
    """A NIfTI volume, reoriented to the closest canonical (RAS) axes, as float32 ``(X,Y,Z)`` or ``(X,Y,Z,C)``.

    Canonical orientation makes "axis 0/1/2" mean sagittal/coronal/axial for every source. Read with
    ``universeg_jax.preprocess.canonical_volume``, the function inference reads query volumes with.
    """
    path = require_file(Path(path), "NIfTI file")
    try:
        array, _ = preprocess.canonical_volume(nib.load(path), name=str(path))
    except Exception as err:
        raise ValueError(f"cannot read NIfTI file {path}: {err}") from err
    if array.ndim not in (3, 4):
        raise ValueError(f"NIfTI file {path} has shape {array.shape}; expected a 3D volume (X, Y, Z[, C])")
    if not np.isfinite(array).all():
        raise ValueError(f"NIfTI file {path} contains NaN or inf values")
    return array
