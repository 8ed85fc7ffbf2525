"""Real unlabelled images with synthetic labels: scikit-image's bundled sample images, labelled by random rules.

Sources are the sample images that ship inside the scikit-image wheel (``skimage/data/*.png|jpg``, read as
files: ``skimage.data`` downloads some of its other samples at run time, and none of those is used). Every source
is cut into windows of ``tile`` x ``tile`` pixels on a grid, ``gap`` pixels apart (``universeg_datasets.tiling``):

* **a subject is one window** (``<source>@y<top>x<left>``), seen once, through its own random flip/rotation and
  gamma (an augmented view of that crop only). No two subjects of a task share a pixel: any two windows of a
  source are at least ``gap`` pixels apart (the tests check it on the built data);
* **a task is one labelling rule** applied to the whole source image, then cut with the same windows, so every
  subject of a task is labelled by the same rule. A rule is a deterministic function of the grayscale image the
  model sees (before cropping), so the support tells the query's label:

  - ``threshold``: pixels above (or below) a random quantile of a smoothed feature: intensity, edge strength
    (gradient magnitude), texture (local standard deviation) or spots (difference of Gaussians), small specks
    dropped, optionally holes filled;
  - ``watershed``: superpixels that follow the image's own edges (watershed basins of the gradient, from its
    local minima) whose mean intensity or texture is above (below) a quantile of the basins.

  A fifth of the rules label the inner border (1 to 3 pixels wide) of their selection instead: contours and
  membranes. Tried and dropped because few of their rules pass the stability check below and they cost the most
  time: SLIC superpixels (in flat areas they follow SLIC's initial grid, not the image), Felzenszwalb's, and the
  lines between all watershed basins (in flat areas they follow the noise).

A window whose label is empty or covers more than 95 % of it gives no example for that rule (a window entirely
inside a selection shows nothing to segment). A rule is kept when it marks between 2 % and 80 % of the source and
labels at least ``min_subjects`` windows,
when it is stable (nearly the same mask on the source shifted by a few pixels, plus a little noise:
``MIN_STABILITY``), and when it
differs from the rules already kept for that source (Dice of the full-image masks below 0.8).
Rules come from ``numpy.random.default_rng((seed, source))``, views from ``default_rng((seed, source, window))``
(``source`` is the position in ``SOURCES``), so the data are a pure function of the seed.
"""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import tensorflow_datasets as tfds
from scipy import ndimage

from universeg_datasets import base, bundled, standardize, tiling
from universeg_jax import io, preprocess

DATASET = "real_synthetic_labels"


@dataclasses.dataclass(frozen=True)
class Source:
    """One sample image of the scikit-image wheel: file under ``skimage/data``, modality, and a zoom applied
    before cutting windows (so that structures have a useful size in a window)."""

    file: str
    modality: str
    zoom: float = 1.0
    field_of_view: bool = False  # only windows inside the bright field of view (e.g. a fundus photograph)


# Order matters: a source's position seeds its rules. Append new sources at the end.
SOURCES = {
    "cell": Source("cell.png", "phase_contrast"),
    "ihc": Source("ihc.png", "histology"),
    "retina": Source("retina.jpg", "fundus", zoom=0.5, field_of_view=True),
    "hubble": Source("hubble_deep_field.jpg", "astronomy", zoom=0.75),
    "coins": Source("coins.png", "photograph"),
    "moon": Source("moon.png", "photograph"),
    "camera": Source("camera.png", "photograph"),
    "brick": Source("brick.png", "texture"),
    "grass": Source("grass.png", "texture"),
    "gravel": Source("gravel.png", "texture"),
}
KINDS = ("threshold", "watershed")
FEATURES = ("intensity", "edges", "texture", "spots")
MIN_FRACTION, MAX_FRACTION = 0.02, 0.8  # of the source a rule may mark
MAX_OVERLAP = 0.8  # Dice between two kept rules of one source
MAX_WINDOW_FRACTION = 0.95  # a window inside a selection (all foreground) shows no border: not an example
# A rule must give nearly the same mask (Dice >= MIN_STABILITY) on the source shifted by STABILITY_SHIFT pixels
# plus Gaussian noise of STABILITY_NOISE (5 grey levels): labels that follow the noise (the edges of a featureless
# region) or a grid of the whole image (SLIC's initial grid in a flat area) cannot be read from a window.
STABILITY_NOISE, STABILITY_SHIFT, MIN_STABILITY = 0.02, (7, 5), 0.85


@dataclasses.dataclass(eq=False)
class RealConfig(base.TaskConfig):
    """``tile``/``gap``: window side and distance between windows, in (zoomed) source pixels; ``rules``: rules
    (tasks) per source; ``min_subjects``: windows a rule must label; ``sources``: names in ``SOURCES``."""

    tile: int = 64
    gap: int = 8
    rules: int = 6
    min_subjects: int = 12
    seed: int = 0
    sources: tuple[str, ...] = tuple(SOURCES)


class RealSyntheticLabels(base.TaskBuilder):
    """Real images (scikit-image's bundled samples: cells, histology, fundus, astronomy, photographs, textures)
    with labels from random rules: thresholds of smoothed features or watershed superpixels, or their borders.
    Task ids ``real_synthetic_labels/<modality>/<source>_r<k>_<kind>_<feature>[_border]/0``, e.g.
    ``real_synthetic_labels/histology/ihc_r3_threshold_edges/0``; subjects ``<source>@y<top>x<left>``
    (disjoint windows)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release: 10 scikit-image samples, 6 rules each, 64 px windows 8 px apart."}
    BUILDER_CONFIGS = base.size_configs(RealConfig)
    HOMEPAGE = "https://scikit-image.org/docs/stable/api/skimage.data.html"

    def _generate_examples(self, dl_manager):
        config = self.builder_config
        unknown = sorted(set(config.sources) - set(SOURCES))
        if unknown or config.rules < 1 or config.tile < 8 or config.gap < 1 or config.min_subjects < 1:
            raise ValueError(
                f"need known sources ({', '.join(SOURCES)}), rules >= 1, tile >= 8, gap >= 1 and min_subjects >= 1; "
                f"got unknown sources {unknown}, rules {config.rules}, tile {config.tile}, gap {config.gap}, "
                f"min_subjects {config.min_subjects}"
            )
        for name in config.sources:
            yield from source_examples(name, config)


def source_examples(name: str, config: RealConfig):
    """(key, example) of every rule and window of one source (``config``: a ``RealConfig``)."""
    source = SOURCES[name]
    index = list(SOURCES).index(name)
    gray = read_source(source)
    # Every window is normalised with the source's intensity range, so a rule's threshold means the same
    # brightness in every subject (a window normalised on its own could not show where it falls).
    intensity_range = preprocess.intensity_range(gray, name=name)
    windows = source_windows(gray, source, config.tile, config.gap)
    rules = choose_rules(np.random.default_rng((config.seed, index)), gray, windows, config.rules, config.min_subjects)
    if not rules:
        raise ValueError(f"{name}: no labelling rule met the conditions (min_subjects {config.min_subjects})")
    for window_index, window in enumerate(windows):
        view_rng = np.random.default_rng((config.seed, index, window_index))
        turn, flip, gamma = int(view_rng.integers(4)), bool(view_rng.integers(2)), np.exp(view_rng.normal(0, 0.1))
        image = augment(window.crop(gray), turn, flip) ** gamma
        for number, (rule, mask) in enumerate(rules):
            label = augment(window.crop(mask), turn, flip)
            if not 0 < label.mean() <= MAX_WINDOW_FRACTION:
                continue
            view = standardize.View(*enlarge(image, label, config.size), intensity_range=intensity_range)
            yield from standardize.view_examples(
                view,
                {f"{name}_r{number}_{rule.family.replace('/', '_').replace('+', '_')}": 1},
                dataset=DATASET,
                modality=source.modality,
                subject=window.subject(name),
                size=config.size,
            )


def read_source(source: Source) -> np.ndarray:
    """The source as grayscale float in [0, 1], zoomed (area average) by its factor."""
    if importlib.util.find_spec("skimage") is None:
        raise ModuleNotFoundError(
            "scikit-image is not installed; it ships the images of real_synthetic_labels "
            "(pip install scikit-image, or pip install 'universeg-jax[data]', whose stardist brings it)"
        )
    path = bundled.package_file("skimage", f"data/{source.file}")
    gray = preprocess.to_grayscale(io.read_2d_image(path), name=source.file) / 255.0
    if source.zoom != 1.0:
        shape = tuple(int(round(n * source.zoom)) for n in gray.shape)
        gray = preprocess.resize_image(gray, shape, "area", name=source.file)
    return np.clip(gray, 0.0, 1.0).astype(np.float64)


def source_windows(gray: np.ndarray, source: Source, tile: int, gap: int) -> list[tiling.Window]:
    """Disjoint windows on a grid; with ``field_of_view``, only those entirely inside the bright disc."""
    windows = tiling.grid(gray.shape, tile, gap)
    if source.field_of_view:
        inside = ndimage.binary_opening(ndimage.gaussian_filter(gray, 2) > 0.1 * np.percentile(gray, 99), iterations=3)
        windows = [w for w in windows if w.crop(inside).mean() >= 0.99]
    return windows


def augment(array: np.ndarray, turn: int, flip: bool) -> np.ndarray:
    """One of the 8 flips/rotations of a square crop."""
    array = np.rot90(array, turn)
    return np.ascontiguousarray(array[:, ::-1] if flip else array)


def enlarge(image: np.ndarray, label: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Crops smaller than ``size`` enlarged smoothly (bilinear image, label thresholded at 0.5) rather than by
    the pixel replication of the standard area resize; larger crops are left to the standard resize."""
    if image.shape[0] >= size:
        return image, label.astype(np.int32)
    image = preprocess.resize_image(image, (size, size), "bilinear")
    label = preprocess.resize_image(label.astype(np.float32), (size, size), "bilinear") >= 0.5
    return image, label.astype(np.int32)


# ---------------------------------------------------------------------------------------------------------------
# Labelling rules.


@dataclasses.dataclass(frozen=True)
class Rule:
    """A labelling rule: see the module docstring. ``apply(gray)`` gives its boolean mask of a whole source."""

    kind: str  # threshold | watershed
    feature: str  # what is thresholded (per pixel, or averaged over a region)
    sigma: float  # feature scale in pixels
    quantile: float  # threshold: this quantile of the feature (over pixels or regions)
    above: bool  # keep values above the threshold (else below)
    min_object: int = 0  # threshold: drop objects smaller than this many pixels
    fill_holes: bool = False
    region_area: float = 0.0  # watershed: about the mean basin area in pixels
    border: int = 0  # > 0: the label is the inner border of the selection, this many pixels wide

    @property
    def family(self) -> str:
        """e.g. ``threshold/edges`` or ``watershed/texture+border``."""
        return f"{self.kind}/{self.feature}" + ("+border" if self.border else "")

    def apply(self, gray: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
        """The rule's mask of ``gray``; quantiles are taken over the pixels ``where`` (default: all)."""
        where = np.ones(gray.shape, bool) if where is None else where
        mask = self.selection(gray, where)
        if self.border:
            mask = mask & ~ndimage.binary_erosion(mask, iterations=self.border, border_value=1)
        return mask

    def selection(self, gray: np.ndarray, where: np.ndarray) -> np.ndarray:
        if self.kind == "threshold":
            value = feature(gray, self.feature, self.sigma)
            mask = select(value, self.quantile, self.above, value[where])
            if self.min_object:
                objects, count = ndimage.label(mask)
                sizes = np.bincount(objects.ravel(), minlength=count + 1)
                mask = (sizes >= self.min_object)[objects] & mask
            return ndimage.binary_fill_holes(mask) if self.fill_holes else mask
        regions = self.regions(gray)
        value = feature(gray, self.feature, self.sigma)
        means = ndimage.mean(value, regions, np.arange(regions.max() + 1))
        areas = np.bincount(regions[where], minlength=len(means))  # basins weighted by their area in ``where``
        return select(means, self.quantile, self.above, means[areas > 0], areas[areas > 0])[regions]

    def regions(self, gray: np.ndarray) -> np.ndarray:
        """Region ids 0..n-1 of the watershed basins of the gradient of ``gray``, from its local minima over
        windows of about half a region's side."""
        from skimage import filters, segmentation

        gradient = filters.sobel(ndimage.gaussian_filter(gray, self.sigma))
        side = max(int(np.sqrt(self.region_area) / 2), 3)
        minima = gradient == ndimage.minimum_filter(gradient, side)
        labels = segmentation.watershed(gradient, markers=ndimage.label(minima)[0])
        return np.unique(labels, return_inverse=True)[1].reshape(gray.shape)


def feature(gray: np.ndarray, name: str, sigma: float) -> np.ndarray:
    """A per-pixel feature of the grayscale source at scale ``sigma``."""
    if name == "intensity":
        return ndimage.gaussian_filter(gray, sigma)
    if name == "edges":
        return ndimage.gaussian_gradient_magnitude(gray, sigma)
    if name == "texture":
        detail = gray - ndimage.gaussian_filter(gray, sigma)
        return np.sqrt(ndimage.gaussian_filter(detail**2, 2 * sigma))
    if name == "spots":
        return ndimage.gaussian_filter(gray, sigma) - ndimage.gaussian_filter(gray, 1.6 * sigma)
    raise ValueError(f"unknown feature {name!r}; known: {FEATURES}")


def select(values: np.ndarray, quantile: float, above: bool, reference: np.ndarray, weights=None) -> np.ndarray:
    """``values`` above (or below) the ``quantile`` of ``reference`` (weighted by ``weights``, e.g. region areas)."""
    if weights is None:
        threshold = np.quantile(reference, quantile)
    else:
        order = np.argsort(reference, kind="stable")
        cumulative = np.cumsum(weights[order]) / weights.sum()
        threshold = reference[order][min(np.searchsorted(cumulative, quantile), len(order) - 1)]
    return values > threshold if above else values < threshold


def sample_rule(rng: np.random.Generator) -> Rule:
    """One random rule; the foreground it marks is mostly 5 % to 70 % of the source."""
    kind = str(rng.choice(KINDS, p=[0.65, 0.35]))
    above = bool(rng.random() < 0.5)
    quantile = float(rng.uniform(0.3, 0.95) if above else rng.uniform(0.05, 0.7))
    border = int(rng.integers(1, 4)) if rng.random() < 0.2 else 0
    if kind == "threshold":
        name = str(rng.choice(FEATURES))
        return Rule(
            kind,
            name,
            float(rng.uniform(0.7, 4.0)),
            quantile,
            above,
            min_object=int(rng.integers(0, 30)),
            fill_holes=bool(rng.random() < 0.3),
            border=border,
        )
    return Rule(
        kind,
        str(rng.choice(["intensity", "texture"])),
        float(rng.uniform(1.0, 3.0)),
        quantile,
        above,
        region_area=float(np.exp(rng.uniform(np.log(60), np.log(1500)))),
        border=border,
    )


def choose_rules(rng, gray, windows, count, min_subjects, attempts_per_rule: int = 4):
    """Up to ``count`` (rule, mask) pairs that meet the conditions of the module docstring, in draw order.
    Quantiles are taken over the pixels the windows cover (e.g. not the black surround of a fundus photograph)."""
    chosen = []
    dy, dx = STABILITY_SHIFT
    moved = np.clip(gray[dy:, dx:] + np.random.default_rng(0).normal(0.0, STABILITY_NOISE, gray[dy:, dx:].shape), 0, 1)
    in_view = np.zeros(gray.shape, bool)
    for window in windows:
        in_view[window.top : window.top + window.height, window.left : window.left + window.width] = True
    for _ in range(count * attempts_per_rule):
        if len(chosen) == count:
            break
        rule = sample_rule(rng)
        mask = rule.apply(gray, in_view)
        fraction = mask[in_view].mean()
        labelled = sum(0 < w.crop(mask).mean() <= MAX_WINDOW_FRACTION for w in windows)
        if not MIN_FRACTION <= fraction <= MAX_FRACTION or labelled < min(min_subjects, len(windows)):
            continue
        if any(dice(mask, other) > MAX_OVERLAP for _, other in chosen):
            continue
        if dice(mask[dy:, dx:], rule.apply(moved, in_view[dy:, dx:])) < MIN_STABILITY:
            continue
        chosen.append((rule, mask))
    return chosen


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2.0 * (a & b).sum() / max(a.sum() + b.sum(), 1))
