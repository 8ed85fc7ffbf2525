"""Segmentation metrics for the evaluation harness and the training step.

Dice of binary masks, ``2 |P & T| / (|P| + |T|)``, per example. Convention: when both the prediction and the truth
are empty the prediction is perfect and Dice is 1.0 (the usual choice, e.g. MONAI's ``ignore_empty=False`` and
the medical segmentation decathlon); an empty truth with a non-empty prediction (or the reverse) gives 0.0.
"""

from __future__ import annotations

import numpy as np

DEFAULT_THRESHOLD = 0.5


def binarize(probabilities, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Foreground mask ``probabilities >= threshold`` (bool); probabilities must be finite and in [0, 1]."""
    p = np.asarray(probabilities, dtype=np.float32)
    if not np.isfinite(p).all():
        raise ValueError("probabilities contain NaN or inf values")
    if p.size and (p.min() < 0 or p.max() > 1):
        raise ValueError(f"probabilities must lie in [0, 1], got range [{p.min():.4g}, {p.max():.4g}]")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be strictly between 0 and 1, got {threshold}")
    return p >= threshold


def _as_mask(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype == bool:
        return a
    if not np.isin(a, (0, 1)).all():
        raise ValueError(
            f"{name} must be a binary mask (bool or values in {{0, 1}}); threshold probabilities "
            "first with metrics.binarize"
        )
    return a.astype(bool)


def dice(prediction, truth, *, spatial_ndim: int = 2) -> np.ndarray:
    """Dice per example of binary masks of equal shape ``(..., H, W)``; the last ``spatial_ndim`` axes are summed.

    Returns float64 of shape ``prediction.shape[:-spatial_ndim]`` (a 0-d array for a single mask).
    Both masks empty -> 1.0 (see the module docstring).
    """
    pred, true = _as_mask(prediction, "prediction"), _as_mask(truth, "truth")
    if pred.shape != true.shape:
        raise ValueError(f"prediction {pred.shape} and truth {true.shape} must have the same shape")
    if pred.ndim < spatial_ndim:
        raise ValueError(f"masks need at least {spatial_ndim} spatial axes, got shape {pred.shape}")
    return mask_dice(pred, true, tuple(range(pred.ndim - spatial_ndim, pred.ndim)))


def mask_dice(prediction, truth, axes: tuple[int, ...], xp=np):
    """Dice of boolean masks summed over ``axes``, unchecked: the one formula of ``dice`` (evaluation) and of the
    training step's metric, where ``xp`` is ``jax.numpy`` (traced, so no checks that read values)."""
    overlap = xp.sum(prediction & truth, axis=axes)
    total = xp.sum(prediction, axis=axes) + xp.sum(truth, axis=axes)
    return xp.where(total == 0, 1.0, 2.0 * overlap / xp.maximum(total, 1))


def mean_std(values) -> tuple[float, float]:
    """Mean and population standard deviation (ddof=0, so one value has spread 0.0) of a non-empty sequence."""
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        raise ValueError("mean_std needs at least one value")
    return float(a.mean()), float(a.std())
