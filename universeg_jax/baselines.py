"""Classical few-shot segmentation baselines: the honest references UniverSeg is compared with.

Every predictor (these and the model wrapper in ``universeg_jax.evaluate``) has one interface::

    predictor(support_images, support_labels, queries) -> probabilities

with ``support_images`` / ``support_labels`` ``(S, H, W, 1)`` float in [0, 1] (labels binary), ``queries``
``(Q, H, W, 1)`` in [0, 1], and foreground probabilities ``(Q, H, W)`` float32 in [0, 1]. Each predictor has a
``name`` used in reports. Nothing here is trained beforehand: each baseline is fitted on the support set alone.

* ``spatial_prior``: the mean of the support labels (where the structure usually is), for every query alike.
* ``intensity``: a per-pixel logistic classifier on intensity features (raw, blurred, gradient magnitude and
  squares, so intensity bands are representable), its decision threshold tuned to maximise Dice on the support.
* ``nearest_neighbour``: the label of the support image most similar to the query (normalised cross-correlation).
* ``label_fusion``: a similarity-weighted vote of the labels of the ``k`` most similar support images.
  (Atlas-style label fusion, without registration.)
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# ---------------------------------------------------------------------------------------------------------------
# The shared interface.


def check_inputs(support_images, support_labels, queries) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate one episode and return it as float32 arrays (shapes and ranges as in the module docstring)."""
    arrays = {}
    for name, x in (("support_images", support_images), ("support_labels", support_labels), ("queries", queries)):
        a = np.asarray(x, dtype=np.float32)
        if a.ndim != 4 or a.shape[-1] != 1:
            raise ValueError(f"{name} must have shape (N, H, W, 1), got {a.shape}")
        if a.shape[0] == 0:
            raise ValueError(f"{name} is empty: at least one example is needed")
        if not np.isfinite(a).all():
            raise ValueError(f"{name} contains NaN or inf values")
        if a.min() < 0 or a.max() > 1:
            raise ValueError(f"{name} values must lie in [0, 1], got range [{a.min():.4g}, {a.max():.4g}]")
        arrays[name] = a
    images, labels, queries = arrays["support_images"], arrays["support_labels"], arrays["queries"]
    if labels.shape != images.shape:
        raise ValueError(f"support_labels {labels.shape} must have the shape of support_images {images.shape}")
    if queries.shape[1:] != images.shape[1:]:
        raise ValueError(f"queries are {queries.shape[1:3]} but the support is {images.shape[1:3]}: sizes must match")
    return images, labels, queries


# ---------------------------------------------------------------------------------------------------------------
# (a) Spatial prior.


class SpatialPrior:
    """Probability = fraction of support labels that mark the pixel; ignores the query image."""

    name = "spatial_prior"

    def __call__(self, support_images, support_labels, queries) -> np.ndarray:
        _, labels, queries = check_inputs(support_images, support_labels, queries)
        prior = labels[..., 0].mean(axis=0)
        return np.broadcast_to(prior, queries.shape[:3]).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------
# (b) Intensity model.


def intensity_features(images: np.ndarray) -> np.ndarray:
    """``(N, H, W, 1)`` -> ``(N, H, W, 7)``: raw, Gaussian blur (sigma 1 and 3), gradient magnitude, and the
    squares of the first three (a logistic model on these can select an intensity band, not only a threshold)."""
    x = images[..., 0].astype(np.float64)
    blur1 = ndimage.gaussian_filter(x, sigma=(0, 1, 1))
    blur3 = ndimage.gaussian_filter(x, sigma=(0, 3, 3))
    gradient = np.hypot(ndimage.sobel(blur1, axis=1), ndimage.sobel(blur1, axis=2))
    return np.stack([x, blur1, blur3, gradient, x**2, blur1**2, blur3**2], axis=-1)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def fit_logistic(features: np.ndarray, targets: np.ndarray, *, ridge: float, iterations: int) -> np.ndarray:
    """Weights (bias last) of an L2-regularised logistic regression, by Newton's method (few features: exact)."""
    design = np.concatenate([features, np.ones((len(features), 1))], axis=1)
    penalty = ridge * np.eye(design.shape[1])
    penalty[-1, -1] = 0.0  # the bias is not shrunk
    weights = np.zeros(design.shape[1])
    for _ in range(iterations):
        p = _sigmoid(design @ weights)
        gradient = design.T @ (p - targets) + penalty @ weights
        hessian = (design * (p * (1 - p))[:, None]).T @ design + penalty + 1e-9 * np.eye(len(weights))
        step = np.linalg.solve(hessian, gradient)
        weights -= step
        if np.abs(step).max() < 1e-6:
            break
    return weights


def best_threshold(probabilities: np.ndarray, targets: np.ndarray, candidates: np.ndarray) -> float:
    """The candidate threshold with the highest Dice of ``probabilities >= t`` against binary ``targets``."""
    truth = targets > 0.5
    predicted = probabilities[None, :] >= candidates[:, None]
    overlap = (predicted & truth[None, :]).sum(axis=1)
    total = predicted.sum(axis=1) + truth.sum()
    scores = np.where(total == 0, 1.0, 2.0 * overlap / np.maximum(total, 1))
    return float(candidates[int(np.argmax(scores))])


class IntensityModel:
    """Per-pixel logistic regression on :func:`intensity_features`, fitted on (a sample of) the support pixels.

    The probability is shifted so that 0.5 falls at the threshold that maximises Dice on the support, because a
    plain logistic fit under-predicts small structures. ``max_pixels`` bounds the fitting cost; the pixel sample is
    seeded, so predictions are a pure function of the inputs.
    """

    name = "intensity"

    def __init__(self, *, max_pixels: int = 20_000, ridge: float = 1.0, iterations: int = 30):
        if max_pixels < 1 or ridge < 0 or iterations < 1:
            raise ValueError("max_pixels and iterations must be >= 1 and ridge >= 0")
        self.max_pixels, self.ridge, self.iterations = max_pixels, ridge, iterations

    def __call__(self, support_images, support_labels, queries) -> np.ndarray:
        images, labels, queries = check_inputs(support_images, support_labels, queries)
        features = intensity_features(images).reshape(-1, 7)
        targets = (labels[..., 0] > 0.5).reshape(-1).astype(np.float64)
        if targets.min() == targets.max():  # one class only: nothing to discriminate
            return np.full(queries.shape[:3], targets[0], np.float32)
        if len(targets) > self.max_pixels:
            keep = np.random.default_rng(0).choice(len(targets), self.max_pixels, replace=False)
            features, targets = features[keep], targets[keep]
        mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-6
        features = (features - mean) / scale
        weights = fit_logistic(features, targets, ridge=self.ridge, iterations=self.iterations)
        fitted = _sigmoid(features @ weights[:-1] + weights[-1])
        threshold = best_threshold(fitted, targets, np.linspace(0.02, 0.98, 49))
        bias = weights[-1] - np.log(threshold / (1 - threshold))
        query_features = (intensity_features(queries) - mean) / scale
        return _sigmoid(query_features @ weights[:-1] + bias).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------
# (c) Nearest-neighbour label fusion.


def normalized_cross_correlation(queries: np.ndarray, images: np.ndarray) -> np.ndarray:
    """``(Q, H, W, 1)``, ``(S, H, W, 1)`` -> ``(Q, S)`` correlation of whole images in [-1, 1] (flat image -> 0)."""

    def standardize(x):
        flat = x.reshape(len(x), -1).astype(np.float64)
        flat = flat - flat.mean(axis=1, keepdims=True)
        norm = np.linalg.norm(flat, axis=1, keepdims=True)
        return flat / np.where(norm > 0, norm, 1.0)

    return standardize(queries) @ standardize(images).T


class LabelFusion:
    """Average of the labels of the ``k`` support images most similar to the query, weighted by their positive
    normalised cross-correlation; ``k=1`` is the nearest neighbour's label."""

    def __init__(self, k: int = 5, *, name: str = "label_fusion"):
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        self.k, self.name = int(k), name

    def __call__(self, support_images, support_labels, queries) -> np.ndarray:
        images, labels, queries = check_inputs(support_images, support_labels, queries)
        similarity = normalized_cross_correlation(queries, images)
        k = min(self.k, len(images))
        nearest = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
        weights = np.maximum(np.take_along_axis(similarity, nearest, axis=1), 0.0) + 1e-6
        weights /= weights.sum(axis=1, keepdims=True)
        fused = np.einsum("qk,qkhw->qhw", weights, labels[nearest, ..., 0])
        return np.clip(fused, 0.0, 1.0).astype(np.float32)


BASELINES = {
    "spatial_prior": SpatialPrior,
    "intensity": IntensityModel,
    "nearest_neighbour": lambda: LabelFusion(1, name="nearest_neighbour"),
    "label_fusion": lambda: LabelFusion(5, name="label_fusion"),
}


def make_baseline(name: str):
    """The baseline predictor registered under ``name`` (see ``BASELINES``)."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; known baselines: {', '.join(BASELINES)}")
    return BASELINES[name]()


def episodes_dice(batches) -> dict[str, float]:
    """Mean Dice of each baseline on batches of uint8 episodes (``data.episodes``): the held-out episodes training
    evaluates its model on, so the numbers compare (same queries, same support sets, threshold 0.5)."""
    from universeg_jax import metrics

    scores: dict[str, list[float]] = {}
    for batch in batches:
        for b in range(len(batch["episode"])):
            images = batch["support_images"][b].astype(np.float32) / 255.0
            labels = batch["support_labels"][b].astype(np.float32)
            query = batch["query"][b][None].astype(np.float32) / 255.0
            truth = batch["query_label"][b][None, ..., 0] > 0
            for name in BASELINES:
                probabilities = make_baseline(name)(images, labels, query)
                scores.setdefault(name, []).append(float(metrics.dice(metrics.binarize(probabilities), truth)[0]))
    return {name: float(np.mean(values)) for name, values in scores.items()}
