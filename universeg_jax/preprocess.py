"""Image and label preprocessing: the one copy used by inference and by the dataset builders.

UniverSeg expects single-channel images with intensities in [0, 1] and binary labels, all at the model
resolution (128x128 for v1). Wrong preprocessing is the most common cause of poor results, so every step
here validates its input and names the argument in its error.

Resizing is separable and exact (a weight matrix per axis, no third-party resampler), for 2D arrays or
stacks ``(..., H, W)``:

* ``"area"``: every output pixel averages the input area it covers (anti-aliased shrinking; pixel
  replication when enlarging);
* ``"bilinear"``: triangle filter on half-pixel centres, widened when shrinking (anti-aliased, like
  Pillow's BILINEAR); used to bring predicted probabilities back to a query's native size;
* ``"nearest"`` (labels only): the input pixel under each output pixel centre.

Aspect ratio: ``stretch`` resizes every image to the model size whatever its shape (how the training data are
made); ``pad`` first pads it to a square with its edge values, and :func:`crop_from_square` crops the prediction
back (see :func:`pad_to_square`).

Volumes (one path for the dataset builders and for inference):

1. :class:`Orientation` reorients a volume to the canonical RAS voxel order (the closest axes of its affine,
   as ``nibabel.as_closest_canonical``), so axis 0/1/2 mean sagittal/coronal/axial for every file; inference
   writes its masks back in the query's stored order with :meth:`Orientation.from_canonical`.
2. :func:`volume_slices` cuts 2D slices along a canonical axis and :func:`standardize_slices` normalises them
   with :data:`NORMALIZATION_SCOPE` and resizes them; a builder stores ``round(255 * x)`` of the same array.
"""

from __future__ import annotations

from collections.abc import Sequence

import dataclasses
import warnings

import numpy as np

DEFAULT_SIZE = (128, 128)
DEFAULT_PERCENTILES = (0.5, 99.5)
# ITU-R BT.601 luma weights (as Pillow's "L" conversion).
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)
IMAGE_METHODS = ("area", "bilinear")
LABEL_METHODS = ("nearest", "area")
RESIZE_MODES = ("stretch", "pad")
# How an image whose aspect ratio is not the model's square is fitted to it: by the dataset builders (recorded in
# each build's metadata.json) and, by default, at inference. Measured on real non-square images in docs/datasets.md
# ("Aspect ratio", benchmarks/compare_aspect_ratio.py).
RESIZE_MODE = "stretch"
# Canonical (RAS) voxel axes by anatomical plane name: a slice "along" an axis is perpendicular to it.
ANATOMICAL_AXES = {"sagittal": 0, "coronal": 1, "axial": 2}
# Intensity normalisation of volume slices, for training examples and inference alike: "slice" (percentiles
# of each 2D slice) or "volume" (percentiles of the whole volume). Chosen by the held-out comparison in
# docs/inference.md ("Normalisation of volumes").
NORMALIZATION_SCOPES = ("slice", "volume")
NORMALIZATION_SCOPE = "volume"
# A query's voxel spacing differs from a support volume's when some axis differs by more than this fraction.
SPACING_TOLERANCE = 0.1


def _as_real_array(x, name: str) -> np.ndarray:
    """``x`` as a non-empty numpy array of a real (bool, int or float) dtype with finite values."""
    try:
        arr = np.asarray(x)
    except Exception as err:  # e.g. ragged nested lists
        raise TypeError(f"{name} must be an array, got {type(x).__name__}: {err}") from err
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must have a real dtype (bool, integer or float), got dtype {arr.dtype}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf values")
    return arr


def to_grayscale(image, *, name: str = "image") -> np.ndarray:
    """``(H,W)``, ``(H,W,1)``, ``(H,W,3)`` or ``(H,W,4)`` of any real dtype -> ``(H,W)`` float32.

    RGB is converted with BT.601 luma weights; the alpha channel of RGBA is ignored. Intensities keep
    their scale (normalise afterwards with ``normalize_intensity``).
    """
    arr = _as_real_array(image, name)
    if arr.ndim == 2:
        return arr.astype(np.float32)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        return arr[..., 0].astype(np.float32)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        return arr[..., :3].astype(np.float32) @ LUMA_WEIGHTS
    raise ValueError(f"{name} must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {arr.shape}")


def normalize_intensity(
    image,
    *,
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    window: Sequence[float] | None = None,
    name: str = "image",
) -> np.ndarray:
    """Map intensities of an array of any shape to float32 in [0, 1].

    By default the ``percentiles`` (low, high) of the values are mapped to 0 and 1 and values outside are
    clipped, which is robust to a few hot pixels. If the percentiles coincide (e.g. mostly-empty images)
    the minimum and maximum are used instead. ``window=(lo, hi)`` maps a fixed range instead, e.g. a CT
    window in Hounsfield units such as ``(-1000, 400)``. A constant image maps to zeros.
    """
    arr = _as_real_array(image, name).astype(np.float32)
    if window is not None:
        lo, hi = _check_range(window, "window")
    else:
        lo, hi = _percentile_range(arr, percentiles)
    return _apply_range(arr, lo, hi)


def _check_range(pair, name: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in pair)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a pair of numbers (low, high), got {pair!r}") from err
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"{name} must be finite with low < high, got {pair!r}")
    return lo, hi


def check_size(size) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError) as err:
        raise ValueError(f"size must be a pair of positive integers (height, width), got {size!r}") from err
    if h < 1 or w < 1 or (h, w) != tuple(size):
        raise ValueError(f"size must be a pair of positive integers (height, width), got {size!r}")
    return h, w


def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` matrix: overlap of each output pixel's interval with each input pixel, rows sum to 1."""
    edges = np.arange(n_out + 1, dtype=np.float64) * (n_in / n_out)
    lo, hi = edges[:-1, None], edges[1:, None]
    pixel = np.arange(n_in, dtype=np.float64)[None, :]
    overlap = np.clip(np.minimum(hi, pixel + 1) - np.maximum(lo, pixel), 0.0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def _bilinear_weights(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` triangle-filter matrix on half-pixel centres, widened by the shrink factor."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    centres = (np.arange(n_out, dtype=np.float64) + 0.5) * scale - 0.5
    pixel = np.arange(n_in, dtype=np.float64)
    weights = np.clip(1.0 - np.abs(pixel[None, :] - centres[:, None]) / support, 0.0, None)
    return weights / weights.sum(axis=1, keepdims=True)


def _resize_separable(arr: np.ndarray, size: tuple[int, int], weights_fn) -> np.ndarray:
    """Resize the last two axes of float32 ``arr`` with per-axis weight matrices."""
    h, w = arr.shape[-2:]
    if (h, w) == size:
        return arr.astype(np.float32, copy=True)
    rows = weights_fn(h, size[0]).astype(np.float32)
    cols = weights_fn(w, size[1]).astype(np.float32)
    return (rows @ arr @ cols.T).astype(np.float32)


def _as_stack(x, name: str) -> np.ndarray:
    arr = _as_real_array(x, name)
    if arr.ndim < 2:
        raise ValueError(f"{name} must have at least 2 dimensions (..., H, W), got shape {arr.shape}")
    return arr


def resize_image(image, size, method: str = "area", *, name: str = "image") -> np.ndarray:
    """Resize ``(H, W)`` (or a stack ``(..., H, W)``) to ``size=(height, width)`` as float32.

    ``method="area"`` (default, best for shrinking) or ``"bilinear"`` (smooth enlarging). Both are
    convex combinations, so values in [0, 1] stay in [0, 1].
    """
    size = check_size(size)
    arr = _as_stack(image, name).astype(np.float32)
    if method == "area":
        return _resize_separable(arr, size, _area_weights)
    if method == "bilinear":
        return _resize_separable(arr, size, _bilinear_weights)
    raise ValueError(f"method must be one of {IMAGE_METHODS}, got {method!r}")


def resize_label(label, size, method: str = "nearest", *, name: str = "label") -> np.ndarray:
    """Resize a binary label ``(H, W)`` (or stack ``(..., H, W)``) to ``size``; float32 in {0, 1}.

    Values > 0 are foreground. ``"nearest"`` keeps the pixel under each output centre; ``"area"``
    averages the covered area and thresholds at 0.5 (thin structures survive shrinking better).
    """
    size = check_size(size)
    mask = (_as_stack(label, name) > 0).astype(np.float32)
    if method == "nearest":
        h, w = mask.shape[-2:]
        rows = _nearest_indices(h, size[0])
        cols = _nearest_indices(w, size[1])
        return mask[..., rows[:, None], cols[None, :]]
    if method == "area":
        return (_resize_separable(mask, size, _area_weights) >= 0.5).astype(np.float32)
    raise ValueError(f"method must be one of {LABEL_METHODS}, got {method!r}")


def _nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    centres = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out)
    return np.minimum(np.floor(centres).astype(np.int64), n_in - 1)


def label_to_2d(label, *, name: str = "label") -> np.ndarray:
    """A label as ``(H, W)``: accepts ``(H, W)``, ``(H, W, 1)``, or RGB(A) whose colour channels are equal."""
    arr = _as_real_array(label, name)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    elif arr.ndim == 3 and arr.shape[-1] in (3, 4):
        rgb = arr[..., :3]
        if not (rgb == rgb[..., :1]).all():
            raise ValueError(
                f"{name} is a colour image with differing channels; a label must be a single-channel mask "
                "or integer label map"
            )
        arr = rgb[..., 0]
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (H, W) or (H, W, 1), got {arr.shape}")
    return arr


def standardize_image(
    image,
    size=DEFAULT_SIZE,
    *,
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    window: Sequence[float] | None = None,
    method: str = "area",
    resize: str = RESIZE_MODE,
    name: str = "image",
) -> np.ndarray:
    """Grayscale, normalise to [0, 1] and fit one 2D image to ``size`` (:func:`fit_image`): ``(H, W)`` float32."""
    gray = to_grayscale(image, name=name)
    normed = normalize_intensity(gray, percentiles=percentiles, window=window, name=name)
    return fit_image(normed, size, resize, method, name=name)


def standardize_example(
    image,
    label,
    size=DEFAULT_SIZE,
    *,
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    window: Sequence[float] | None = None,
    label_method: str = "area",
) -> tuple[np.ndarray, np.ndarray]:
    """One image/binary-label pair in the model's format: ``(H, W, 1)`` float32 in [0, 1] and in {0, 1}.

    The label must have the image's height and width; values > 0 are foreground.
    """
    gray = to_grayscale(image, name="image")
    mask = label_to_2d(label, name="label")
    if mask.shape != gray.shape:
        raise ValueError(f"label shape {mask.shape} does not match image height and width {gray.shape}")
    img = standardize_image(gray, size, percentiles=percentiles, window=window)
    lab = resize_label(mask, size, label_method)
    return img[..., None], lab[..., None]


# ---------------------------------------------------------------------------------------------------------------
# Aspect ratio.


def check_resize_mode(mode: str) -> str:
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, got {mode!r}")
    return mode


def pad_to_square(image, *, name: str = "image") -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Pad the last two axes of ``image`` to a square with its edge values: ``(padded, box)``.

    ``box = (top, left, height, width)`` locates the original inside the square (for :func:`crop_from_square`).
    Labels are padded the same way, so support images and labels stay aligned.
    """
    arr = _as_stack(image, name)
    h, w = arr.shape[-2:]
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    if side == h and side == w:
        return arr, (0, 0, h, w)
    pad = [(0, 0)] * (arr.ndim - 2) + [(top, side - h - top), (left, side - w - left)]
    return np.pad(arr, pad, mode="edge"), (top, left, h, w)


def crop_from_square(square: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The inverse of :func:`pad_to_square` for an array at the padded square's size, ``(..., side, side)``."""
    top, left, h, w = box
    return square[..., top : top + h, left : left + w]


def fit_image(image, size, resize: str = "stretch", method: str = "area", *, name: str = "image") -> np.ndarray:
    """Resize ``(..., H, W)`` to ``size``: stretched, or padded to a square first (``resize="pad"``)."""
    if check_resize_mode(resize) == "pad":
        image = pad_to_square(image, name=name)[0]
    return resize_image(image, size, method, name=name)


def fit_label(label, size, resize: str = "stretch", method: str = "area", *, name: str = "label") -> np.ndarray:
    """:func:`fit_image` for a binary label (:func:`resize_label`)."""
    if check_resize_mode(resize) == "pad":
        label = pad_to_square((_as_stack(label, name) > 0), name=name)[0]
    return resize_label(label, size, method, name=name)


def unfit(probabilities, shape, resize: str = "stretch") -> np.ndarray:
    """Model-size maps ``(..., h, w)`` back to a native ``shape`` ``(H, W)`` (bilinear), undoing :func:`fit_image`."""
    h, w = (int(n) for n in shape)
    if check_resize_mode(resize) == "pad":
        side = max(h, w)
        square = resize_image(probabilities, (side, side), "bilinear")
        top, left = (side - h) // 2, (side - w) // 2
        return crop_from_square(square, (top, left, h, w)).astype(np.float32, copy=False)
    return resize_image(probabilities, (h, w), "bilinear")


# ---------------------------------------------------------------------------------------------------------------
# Volumes: orientation, anatomical axes, slices.


@dataclasses.dataclass(frozen=True)
class Orientation:
    """How a stored volume maps to the canonical RAS voxel order (the closest axes of its affine).

    ``transform``: nibabel orientation array ``(3, 2)`` from the stored axes to RAS; ``codes``: the stored axes'
    codes (``"LPS"``, ``"PIR"``, ...); ``spacing``: voxel spacing in mm in canonical (RAS) axis order;
    ``oblique``: whether the affine's axes are rotated away from the scanner axes (slices are still taken along
    the closest voxel axes, not resampled).
    """

    transform: np.ndarray
    codes: str
    spacing: tuple[float, float, float]
    oblique: bool = False

    @classmethod
    def from_affine(cls, affine) -> "Orientation":
        from nibabel import orientations as ornt

        affine = np.asarray(affine, np.float64)
        if affine.shape != (4, 4) or not np.isfinite(affine).all():
            raise ValueError(f"affine must be a finite 4x4 matrix, got shape {affine.shape}")
        linear = affine[:3, :3]
        if abs(np.linalg.det(linear)) < 1e-12:
            raise ValueError("affine is singular: the volume has no usable orientation")
        transform = ornt.io_orientation(affine)
        zooms = np.sqrt((linear**2).sum(axis=0))
        spacing = [0.0, 0.0, 0.0]
        for stored, (target, _) in enumerate(transform):
            spacing[int(target)] = float(zooms[stored])
        directions = linear / zooms
        oblique = bool(np.abs(np.abs(directions).max(axis=0) - 1.0).max() > 1e-3)
        return cls(transform, "".join(ornt.aff2axcodes(affine)), tuple(spacing), oblique)

    @classmethod
    def canonical(cls, spacing=(1.0, 1.0, 1.0)) -> "Orientation":
        """The orientation of an array already in RAS order (e.g. a volume given without an affine)."""
        return cls(np.array([[0, 1], [1, 1], [2, 1]], np.float64), "RAS", tuple(float(s) for s in spacing))

    @property
    def is_canonical(self) -> bool:
        return bool((self.transform == [[0, 1], [1, 1], [2, 1]]).all())

    def to_canonical(self, array: np.ndarray) -> np.ndarray:
        """The stored array (3 spatial axes first, any trailing axes kept) in RAS voxel order."""
        from nibabel import orientations as ornt

        return array if self.is_canonical else ornt.apply_orientation(array, self.transform)

    def from_canonical(self, array: np.ndarray) -> np.ndarray:
        """A RAS-ordered array back in the stored voxel order (the inverse of :meth:`to_canonical`)."""
        from nibabel import orientations as ornt

        if self.is_canonical:
            return array
        back = ornt.ornt_transform(np.array([[0, 1], [1, 1], [2, 1]], np.float64), self.transform)
        return ornt.apply_orientation(array, back)

    def canonical_axis(self, axis) -> int:
        """The canonical axis of an anatomical name (``"axial"``...) or of a stored voxel axis (0, 1, 2)."""
        if isinstance(axis, str):
            return anatomical_axis(axis)
        return int(self.transform[check_voxel_axis(axis), 0])

    def describe(self) -> str:
        spacing = "x".join(f"{s:.3g}" for s in self.spacing)
        return f"{self.codes}{' oblique' if self.oblique else ''}, spacing {spacing} mm"


def check_voxel_axis(axis) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -3 <= axis < 3:
        raise ValueError(f"axis must be a voxel axis (0, 1, 2) or a plane ({', '.join(ANATOMICAL_AXES)}), got {axis!r}")
    return int(axis) % 3


def anatomical_axis(name) -> int:
    """The canonical (RAS) axis perpendicular to the plane ``name``: sagittal 0, coronal 1, axial 2."""
    key = str(name).strip().lower()
    if key not in ANATOMICAL_AXES:
        raise ValueError(f"axis must be one of {', '.join(ANATOMICAL_AXES)} or a voxel axis (0, 1, 2), got {name!r}")
    return ANATOMICAL_AXES[key]


def parse_axis(text):
    """A command-line axis: ``"0"``/``"1"``/``"2"`` (voxel axes) or ``"sagittal"``/``"coronal"``/``"axial"``."""
    text = str(text).strip().lower()
    if text in ("0", "1", "2"):
        return int(text)
    anatomical_axis(text)
    return text


def axis_label(axis) -> str:
    return axis if isinstance(axis, str) else f"voxel axis {axis}"


def spacing_differs(a, b, tolerance: float = SPACING_TOLERANCE) -> bool:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return bool((np.abs(a - b) > tolerance * np.maximum(a, b)).any())


def geometry_mismatch(query: Orientation, support: Orientation) -> list[str]:
    """What differs between a query's and a support volume's geometry: ``[]``, or 'orientation' and/or
    'voxel spacing'."""
    problems = []
    if query.codes != support.codes or query.oblique != support.oblique:
        problems.append("orientation")
    if spacing_differs(query.spacing, support.spacing):
        problems.append("voxel spacing")
    return problems


def warn_geometry(query: Orientation, query_name: str, supports, *, stacklevel: int = 3) -> None:
    """Warn once per differing support volume when the query's orientation or spacing differs from it.

    ``supports``: ``(name, Orientation)`` pairs (2D supports without geometry are skipped).
    """
    seen = set()
    for name, geometry in supports:
        if geometry is None or name in seen:
            continue
        seen.add(name)
        problems = geometry_mismatch(query, geometry)
        if problems:
            warnings.warn(
                f"{query_name} ({query.describe()}) differs in {' and '.join(problems)} from support {name} "
                f"({geometry.describe()}): both are sliced in RAS order, but each slice is resized to the model "
                "size whatever its voxel spacing; prefer support scans like the query",
                UserWarning,
                stacklevel=stacklevel,
            )


def volume_slices(volume: np.ndarray, axis: int, indices=None) -> np.ndarray:
    """Slices ``(n, ...)`` of a canonical volume along canonical ``axis`` (all of them, or ``indices``)."""
    moved = np.moveaxis(volume, axis, 0)
    return moved if indices is None else moved[np.asarray(indices, np.int64)]


def check_scope(scope: str) -> str:
    if scope not in NORMALIZATION_SCOPES:
        raise ValueError(f"normalization scope must be one of {NORMALIZATION_SCOPES}, got {scope!r}")
    return scope


def intensity_range(volume, percentiles: Sequence[float] = DEFAULT_PERCENTILES, *, name: str = "volume"):
    """The (low, high) intensities that a whole volume's normalisation maps to 0 and 1 (its float32 percentiles,
    or its minimum and maximum when they coincide)."""
    return _percentile_range(_as_real_array(volume, name).astype(np.float32, copy=False), percentiles)


def normalize_slices(
    slices,
    *,
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    window: Sequence[float] | None = None,
    scope: str = NORMALIZATION_SCOPE,
    volume_range: tuple[float, float] | None = None,
    name: str = "volume",
) -> np.ndarray:
    """Normalise a stack of slices ``(n, H, W)`` to [0, 1].

    ``scope="volume"``: with ``volume_range``, the :func:`intensity_range` of the whole volume the slices come from
    (default: of the stack itself); ``scope="slice"``: each slice with its own percentiles. A fixed ``window`` is the
    same either way.
    """
    arr = _as_stack(slices, name).astype(np.float32)
    if window is not None:
        return normalize_intensity(arr, window=window, name=name)
    if check_scope(scope) == "volume":
        lo, hi = volume_range if volume_range is not None else intensity_range(arr, percentiles, name=name)
        return _apply_range(arr, float(lo), float(hi))
    return np.stack([normalize_intensity(s, percentiles=percentiles, name=f"{name} slice") for s in arr])


def _percentile_range(arr: np.ndarray, percentiles) -> tuple[float, float]:
    p_lo, p_hi = _check_range(percentiles, "percentiles")
    if p_lo < 0 or p_hi > 100:
        raise ValueError(f"percentiles must lie in [0, 100], got {tuple(percentiles)}")
    lo, hi = (float(v) for v in np.percentile(arr, [p_lo, p_hi]))
    if hi <= lo:
        lo, hi = float(arr.min()), float(arr.max())
    return lo, hi


def _apply_range(arr: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if hi <= lo:
        return np.zeros(arr.shape, np.float32)
    return np.clip((arr.astype(np.float32) - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def standardize_slices(
    slices,
    size=DEFAULT_SIZE,
    *,
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    window: Sequence[float] | None = None,
    scope: str = NORMALIZATION_SCOPE,
    volume_range: tuple[float, float] | None = None,
    resize: str = RESIZE_MODE,
    name: str = "volume",
) -> np.ndarray:
    """The model input for 2D slices ``(n, H, W)`` of a volume: normalised (:func:`normalize_slices`) and
    resized (:func:`fit_image`), ``(n, *size)`` float32 in [0, 1]. The dataset builders and the Segmenter both
    call this, so a training example and an inference input of the same slice are the same array."""
    normed = normalize_slices(
        slices, percentiles=percentiles, window=window, scope=scope, volume_range=volume_range, name=name
    )
    return np.stack([fit_image(s, size, resize, "area", name=name) for s in normed])


def canonical_volume(image, *, dtype=np.float32, name: str | None = None) -> tuple[np.ndarray, Orientation]:
    """A nibabel image's voxels in RAS order, ``(X, Y, Z)`` (trailing singleton axes dropped; other trailing axes,
    e.g. channels, kept), as ``dtype``, with its :class:`Orientation`. The builders' reader and inference both
    read volumes through this."""
    name = name or "volume"
    array = np.asarray(image.dataobj, dtype=dtype)
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim < 3:
        raise ValueError(f"{name} has shape {array.shape}; expected a 3D volume")
    orientation = Orientation.from_affine(image.affine)
    return orientation.to_canonical(array), orientation
