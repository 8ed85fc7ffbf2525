"""Read raw volume files with errors that name the file (raw datasets are often incomplete); 2D image files are
read by ``universeg_jax.io.read_2d_image``, the reader inference uses."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from universeg_jax import preprocess


def require_file(path: Path, what: str) -> Path:
    """``path`` if it is a file, else FileNotFoundError saying which ``what`` is missing."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


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
