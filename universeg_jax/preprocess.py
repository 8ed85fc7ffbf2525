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
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_SIZE = (128, 128)
DEFAULT_PERCENTILES = (0.5, 99.5)
# ITU-R BT.601 luma weights (as Pillow's "L" conversion).
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)
IMAGE_METHODS = ("area", "bilinear")
LABEL_METHODS = ("nearest", "area")


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
    raise ValueError(
        f"{name} must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {arr.shape}"
    )


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
        p_lo, p_hi = _check_range(percentiles, "percentiles")
        if p_lo < 0 or p_hi > 100:
            raise ValueError(f"percentiles must lie in [0, 100], got {tuple(percentiles)}")
        lo, hi = (float(v) for v in np.percentile(arr, [p_lo, p_hi]))
        if hi <= lo:
            lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return np.zeros(arr.shape, np.float32)
    return np.clip((arr - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


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
    name: str = "image",
) -> np.ndarray:
    """Grayscale, normalise to [0, 1] and resize one 2D image: ``(H, W)`` float32 at ``size``."""
    gray = to_grayscale(image, name=name)
    normed = normalize_intensity(gray, percentiles=percentiles, window=window, name=name)
    return resize_image(normed, size, method, name=name)


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
