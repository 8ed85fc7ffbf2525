"""Episode augmentations in numpy: in-task (per example) and task (one transform for the whole episode).

UniverSeg trains on a few hundred tasks; augmentation is what stops it from memorising them
(DESIGN.md section 5). Two kinds:

* **in-task** augmentation draws a fresh random transform for every example of the episode, so the support set
  shows the natural variation of one task;
* **task** augmentation draws one transform and applies it to every image and label of the episode (support and
  query alike), which turns a task into a new task.

Every augmentation is a factory ``make(rng, shape, **params) -> transform`` where ``transform(image, label)``
is deterministic: all randomness (including noise fields and elastic displacement fields) is drawn by the
factory. Applying one transform to many examples is then literally the same transform. Images are float32
``(H, W, 1)`` in [0, 1], labels float32 ``(H, W, 1)`` in {0, 1}; both stay so.

A config is a mapping ``name -> {"p": probability, **params}``; see ``configs/base.py`` for the defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from scipy import ndimage

Transform = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
Factory = Callable[..., Transform]


def _uniform(rng: np.random.Generator, bounds, name: str) -> float:
    """A draw from ``bounds``: a ``(low, high)`` pair, or a single number meaning ``(-x, x)``."""
    if np.isscalar(bounds):
        low, high = -float(bounds), float(bounds)
    else:
        low, high = (float(b) for b in bounds)
    if low > high:
        raise ValueError(f"augmentation parameter {name}={bounds!r}: low must not exceed high")
    return float(rng.uniform(low, high))


def _binarise(label: np.ndarray) -> np.ndarray:
    return (label > 0.5).astype(np.float32)


def _clip(image: np.ndarray) -> np.ndarray:
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def _warp(image: np.ndarray, label: np.ndarray, coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Resample image (linear) and label (linear, then thresholded) at ``coords`` (2, H, W); zero outside."""
    warp = lambda x: ndimage.map_coordinates(x[..., 0], coords, order=1, mode="constant", cval=0.0)[..., None]
    return _clip(warp(image)), _binarise(warp(label))


def _image_only(fn: Callable[[np.ndarray], np.ndarray]) -> Transform:
    return lambda image, label: (_clip(fn(image)), label)


def _label_only(fn: Callable[[np.ndarray], np.ndarray]) -> Transform:
    return lambda image, label: (image, fn(label[..., 0] > 0.5).astype(np.float32)[..., None])


# ---------------------------------------------------------------- spatial


def affine(rng, shape, *, degrees=180.0, scale=(0.9, 1.1), translate=0.1, shear=5.0) -> Transform:
    """Rotation (degrees), isotropic scale, shear (degrees) and translation (fraction of the side) about the centre."""
    h, w = shape[:2]
    angle = np.deg2rad(_uniform(rng, degrees, "degrees"))
    zoom = _uniform(rng, scale, "scale")
    shear_angle = np.deg2rad(_uniform(rng, shear, "shear"))
    shift = np.array([_uniform(rng, translate, "translate") * h, _uniform(rng, translate, "translate") * w])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    forward = zoom * rotation @ np.array([[1.0, np.tan(shear_angle)], [0.0, 1.0]])
    inverse = np.linalg.inv(forward)
    centre = np.array([(h - 1) / 2, (w - 1) / 2])
    grid = np.stack(np.meshgrid(np.arange(h), np.arange(w), indexing="ij")).reshape(2, -1).astype(np.float64)
    coords = inverse @ (grid - (centre + shift)[:, None]) + centre[:, None]
    coords = coords.reshape(2, h, w)
    return lambda image, label: _warp(image, label, coords)


def elastic(rng, shape, *, alpha=(0.0, 0.08), sigma=(0.06, 0.12)) -> Transform:
    """Smooth random displacement: ``alpha`` is its size and ``sigma`` its smoothness, both fractions of the side."""
    h, w = shape[:2]
    side = min(h, w)
    size, smooth = _uniform(rng, alpha, "alpha") * side, max(_uniform(rng, sigma, "sigma") * side, 1e-3)
    fields = []
    for _ in range(2):
        field = ndimage.gaussian_filter(rng.uniform(-1, 1, (h, w)), smooth, mode="constant")
        peak = np.abs(field).max()
        fields.append(size * field / peak if peak > 0 else field)
    coords = np.stack(np.meshgrid(np.arange(h), np.arange(w), indexing="ij")).astype(np.float64) + np.stack(fields)
    return lambda image, label: _warp(image, label, coords)


def hflip(rng, shape) -> Transform:
    """Mirror left-right."""
    return lambda image, label: (image[:, ::-1].copy(), label[:, ::-1].copy())


def vflip(rng, shape) -> Transform:
    """Mirror up-down."""
    return lambda image, label: (image[::-1].copy(), label[::-1].copy())


# ---------------------------------------------------------------- intensity


def brightness_contrast(rng, shape, *, brightness=0.1, contrast=(0.8, 1.2)) -> Transform:
    """``(x - mean) * contrast + mean + brightness``."""
    shift, factor = _uniform(rng, brightness, "brightness"), _uniform(rng, contrast, "contrast")
    return _image_only(lambda x: (x - x.mean()) * factor + x.mean() + shift)


def blur(rng, shape, *, sigma=(0.1, 1.0)) -> Transform:
    """Gaussian blur, ``sigma`` in pixels."""
    width = max(_uniform(rng, sigma, "sigma"), 0.0)
    return _image_only(lambda x: ndimage.gaussian_filter(x, (width, width, 0)))


def noise(rng, shape, *, std=(0.0, 0.05)) -> Transform:
    """Additive Gaussian noise; the noise field is drawn here, so one transform adds the same field everywhere."""
    field = rng.normal(0.0, max(_uniform(rng, std, "std"), 0.0), shape).astype(np.float32)
    return _image_only(lambda x: x + field)


def sharpness(rng, shape, *, amount=(0.0, 2.0)) -> Transform:
    """Unsharp masking: ``x + amount * (x - blur(x))``."""
    factor = _uniform(rng, amount, "amount")
    return _image_only(lambda x: x + factor * (x - ndimage.gaussian_filter(x, (1.0, 1.0, 0))))


def flip_intensities(rng, shape) -> Transform:
    """``1 - x``: a new task whose images look inverted."""
    return _image_only(lambda x: 1.0 - x)


# ---------------------------------------------------------------- label


def flip_labels(rng, shape) -> Transform:
    """Swap foreground and background."""
    return _label_only(np.logical_not)


def sobel_edges(rng, shape) -> Transform:
    """Replace the label by its boundary (non-zero Sobel gradient)."""
    def edges(y):
        y = y.astype(np.float32)
        return np.hypot(ndimage.sobel(y, 0), ndimage.sobel(y, 1)) > 0

    return _label_only(edges)


def dilate_erode(rng, shape, *, radius=(1, 2)) -> Transform:
    """Grow or shrink the label by a random number of pixels (``radius`` bounds, inclusive)."""
    steps = int(rng.integers(int(radius[0]), int(radius[1]) + 1))
    operation = ndimage.binary_dilation if rng.random() < 0.5 else ndimage.binary_erosion
    return _label_only(lambda y: operation(y, iterations=steps) if steps > 0 else y)


def morph_gradient(rng, shape, *, radius=1) -> Transform:
    """Dilation minus erosion: a band around the label boundary."""
    steps = int(radius)
    return _label_only(
        lambda y: ndimage.binary_dilation(y, iterations=steps) & ~ndimage.binary_erosion(y, iterations=steps)
    )


# Canonical order of application (spatial, then intensity, then label); a config's order does not matter.
AUGMENTATIONS: dict[str, Factory] = {
    "affine": affine,
    "elastic": elastic,
    "hflip": hflip,
    "vflip": vflip,
    "brightness_contrast": brightness_contrast,
    "blur": blur,
    "noise": noise,
    "sharpness": sharpness,
    "flip_intensities": flip_intensities,
    "flip_labels": flip_labels,
    "sobel_edges": sobel_edges,
    "dilate_erode": dilate_erode,
    "morph_gradient": morph_gradient,
}


class Augmenter:
    """A validated list of augmentations, applied per example (in-task) or once per episode (task).

    ``config`` maps augmentation name -> mapping with ``p`` (probability) and the factory's keyword parameters.
    With ``shared=True`` one set of transforms is drawn per call and applied to every example (task
    augmentation); otherwise every example draws its own (in-task augmentation).
    Parameters are validated here, at start-up, by drawing each augmentation once on a dummy example.
    """

    def __init__(self, config: Mapping[str, Mapping[str, Any]], *, shared: bool):
        what = "task augmentation" if shared else "in-task augmentation"
        config = {name: dict(spec) for name, spec in (config or {}).items()}
        unknown = sorted(set(config) - set(AUGMENTATIONS))
        if unknown:
            raise ValueError(f"unknown {what} {unknown}; known: {sorted(AUGMENTATIONS)}")
        self.shared = shared
        self.steps: list[tuple[Factory, float, dict]] = []
        for name, factory in AUGMENTATIONS.items():
            if name not in config:
                continue
            params = config[name]
            p = float(params.pop("p", 0.0))
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{what} {name}: probability p={p} must lie in [0, 1]")
            dummy = np.zeros((8, 8, 1), np.float32)
            try:
                factory(np.random.default_rng(0), dummy.shape, **params)(dummy, dummy)
            except TypeError as error:
                raise ValueError(f"{what} {name}: bad parameters {params}: {error}") from error
            if p > 0:
                self.steps.append((factory, p, params))

    def draw(self, rng: np.random.Generator, shape) -> list[Transform]:
        """Decide which augmentations fire and draw their transforms."""
        return [factory(rng, shape, **params) for factory, p, params in self.steps if rng.random() < p]

    def __call__(self, rng: np.random.Generator, images: np.ndarray, labels: np.ndarray):
        """Augment ``images``/``labels`` of shape ``(N, H, W, 1)``."""
        shared = self.draw(rng, images.shape[1:]) if self.shared else None
        out_images, out_labels = np.empty_like(images), np.empty_like(labels)
        for i, (image, label) in enumerate(zip(images, labels)):
            for transform in shared if self.shared else self.draw(rng, image.shape):
                image, label = transform(image, label)
            out_images[i], out_labels[i] = image, label
        return out_images, out_labels
