"""Seeded synthetic segmentation tasks from many families of shapes and appearances.

A *draw* is one random generative model: a **layout family** that makes label maps and an **appearance family**
that renders them into an image. Layouts (``LAYOUTS``):

* ``noise``: argmax of 2 to ``labels_per_draw`` smoothed noise fields (large regions and scattered patches);
* ``voronoi``: power-diagram cells with wiggly borders, each cell one of several labels; optionally the cell
  borders are a label of their own (membranes);
* ``blobs``: 1 to 4 classes of cell-like objects (wobbly ellipses) on a background, from many small objects to
  a few large ones, classes differing in size, count and shape;
* ``curvilinear``: thin structures: branching vessel trees, or membranes (the zero set of a smooth field)
  between two tissues;
* ``nested``: objects made of a core inside one or two rings (nucleus in a cell, tumour core in oedema, a cavity
  in a wall).

Appearances (``APPEARANCES``):

* ``intensity``: every label on its own brightness level (objects of a label vary around it); in half of the
  ``blobs`` draws the object classes share one level and differ only by size and shape;
* ``texture``: the labels share one mean brightness and differ by texture (fine or coarse grain, oriented
  stripes, spots, smooth); lines and tiny objects keep a level of their own;
* ``outline``: one label is drawn only by its border line, its inside as bright as its surroundings.

Half of the draws also scatter unlabelled clutter (small specks or short strokes) over the background (or one
label), in 60 % of them as bright as one of the labels, so that only shape and size tell debris from structure.

Subjects vary as real subjects do: a draw either deforms one template layout per subject (registered anatomy)
or gives every subject its own layout from the same parameters (cells or lesions anywhere), and every subject
gets its own label brightness jitter, gamma, bias field, blur and noise, and fresh textures.

A task is one label of one draw (not the background around objects or lines); its examples are that label in
every subject. Everything comes from
``numpy.random.default_rng((seed, draw[, subject + 1]))``, so a (seed, draw, subject) always gives the same
data, whatever else is built.
"""

from __future__ import annotations

import dataclasses
import functools
import multiprocessing
import os

import numpy as np
import tensorflow_datasets as tfds
from scipy import ndimage

from universeg_datasets import base, standardize

DATASET = "synthetic_tasks"
MODALITY = "synthetic"

LAYOUTS = ("noise", "voronoi", "blobs", "curvilinear", "nested")
LAYOUT_WEIGHTS = (0.2, 0.2, 0.25, 0.15, 0.2)
APPEARANCES = ("intensity", "texture", "outline")
APPEARANCE_WEIGHTS = (0.35, 0.35, 0.3)
# Probability that the subjects of a draw deform one template layout (the others get layouts of their own).
TEMPLATED = {"noise": 0.5, "voronoi": 0.4, "blobs": 0.3, "curvilinear": 0.4, "nested": 0.4}
CLUTTER_PROBABILITY = 0.5
MIMIC_PROBABILITY = 0.6  # clutter as bright as one of the labels
TEXTURES = ("grain_fine", "grain_coarse", "stripes", "spots", "smooth")
REFERENCE_SIZE = 128  # lengths in pixels below are at this size and scale with the output size


@dataclasses.dataclass(eq=False)
class SyntheticConfig(base.TaskConfig):
    """``num_tasks`` tasks from draws of 2 to ``labels_per_draw`` labels; ``subjects`` examples per task;
    ``seed`` for everything."""

    num_tasks: int = 48
    subjects: int = 72  # training samples support_size + 1 different subjects per episode (64 + 1 in the paper)
    labels_per_draw: int = 8
    seed: int = 0


class SyntheticTasks(base.TaskBuilder):
    """Synthetic binary tasks from random label maps of several layout families (smooth noise, Voronoi cells,
    blobs, thin structures, nested objects) rendered by brightness, texture or outline, with clutter, bias
    fields and noise. Task ids ``synthetic_tasks/synthetic/d<draw>_l<label>/0``; subjects ``s<index>``."""

    VERSION = tfds.core.Version("2.0.0")
    RELEASE_NOTES = {
        "1.0.0": "First release.",
        "1.1.0": "Draws have 2 to labels_per_draw labels, each with its own smoothness and offset (large regions "
        "and small scattered objects); half of the draws give every subject its own layout.",
        "1.2.0": "Fewer labels per draw on average (2 + Binomial(labels_per_draw - 2, 0.3)); label intensities on "
        "distinct levels; every connected object gets its own brightness offset.",
        "2.0.0": "Layout families (smooth noise, Voronoi cells with optional membranes, blobs of many sizes, "
        "vessels and membranes, nested rings around cores) and appearance families (brightness levels, texture "
        "only, outline only), unlabelled clutter, per-subject gamma and bias field. Every draw changes.",
    }
    # tasks2000: twice the tasks with a third of the subjects each (enough for support 16 plus a query): more
    # variety for the same number of examples, for training runs of support 16 (configs/default_model.py).
    BUILDER_CONFIGS = (
        base.size_configs(SyntheticConfig)
        + base.size_configs(SyntheticConfig, "tasks1000", num_tasks=1000)
        + base.size_configs(SyntheticConfig, "tasks2000", num_tasks=2000, subjects=24)
    )

    def _generate_examples(self, dl_manager):
        config = self.builder_config
        if config.num_tasks < 1 or config.subjects < 1 or config.labels_per_draw < 2:
            raise ValueError(
                f"need num_tasks >= 1, subjects >= 1 and labels_per_draw >= 2, got {config.num_tasks}, "
                f"{config.subjects} and {config.labels_per_draw}"
            )
        draw_all = functools.partial(draw_examples, config.seed, config.labels_per_draw, config.size, config.subjects)
        processes = build_processes(config.num_tasks)
        # Draws are independent: many at once in worker processes (in order), or one after the other.
        pool = multiprocessing.get_context("spawn").Pool(processes) if processes > 1 else None
        try:
            # At most one task per draw is certain, so num_tasks draws always suffice.
            draws = pool.imap(draw_all, range(config.num_tasks)) if pool else map(draw_all, range(config.num_tasks))
            tasks = 0
            for names, examples in draws:
                kept = set(names[: config.num_tasks - tasks])
                yield from ((key, example) for key, example in examples if example["label_name"] in kept)
                tasks += len(kept)
                if tasks >= config.num_tasks:
                    break
        finally:
            if pool is not None:
                pool.terminate()


def build_processes(num_tasks: int) -> int:
    """Worker processes for a build: ``$UNIVERSEG_BUILD_PROCESSES`` or every CPU, for builds of 200 tasks or more
    (smaller ones are quicker than starting the workers)."""
    if num_tasks < 200:
        return 1
    return max(1, int(os.environ.get("UNIVERSEG_BUILD_PROCESSES", os.cpu_count() or 1)))


def draw_examples(seed: int, labels_per_draw: int, size: int, subjects: int, draw: int):
    """(task label names, every (key, example) of the draw in build order): one draw, as a worker builds it."""
    model = DrawModel.sample(seed, draw, labels_per_draw, size)
    labels = {f"d{draw:04d}_l{label}": label for label in model.tasks}
    examples = []
    for subject in range(subjects):
        image, label_map = model.render(subject)
        examples.extend(
            standardize.view_examples(
                standardize.View(image, label_map),
                labels,
                dataset=DATASET,
                modality=MODALITY,
                subject=f"s{subject:04d}",
                size=size,
            )
        )
    return list(labels), examples


# ---------------------------------------------------------------------------------------------------------------
# Layouts: label maps. Parameters are drawn once per draw (lengths as fractions of the image side);
# ``generate`` draws one label map from them.


@dataclasses.dataclass(frozen=True)
class Layout:
    """One layout family with the parameters of one draw. ``fine`` labels are lines a few pixels wide or objects
    a few pixels across: too fine to show a texture or an outline."""

    family: str
    labels: int
    params: dict
    fine: tuple[int, ...] = ()
    objects: tuple[int, ...] = ()  # labels made of separate objects on a background (label 0)
    background: bool = False  # label 0 is what is around the objects or lines: not a task

    @property
    def tasks(self) -> list[int]:
        """The labels that are tasks: all of them, except a background. (Segmenting "everything but the cells"
        is the cells' task with the label flipped, which training's task augmentation already does, and a
        brightness threshold solves it with Dice >= 0.9 for 85 % of such draws: measured, see docs/datasets.md.)"""
        return list(range(1 if self.background else 0, self.labels))

    def wide(self, candidates=None) -> list[int]:
        """The labels of ``candidates`` (default: all) that are not fine."""
        return [k for k in (range(self.labels) if candidates is None else candidates) if k not in self.fine]

    @classmethod
    def sample(cls, rng: np.random.Generator, family: str, max_labels: int) -> "Layout":
        return _SAMPLERS[family](rng, max_labels)

    def generate(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """An ``(size, size)`` int32 label map with values in ``0..labels-1``."""
        return _GENERATORS[self.family](rng, self.params, size).astype(np.int32)


def _few_labels(rng: np.random.Generator, max_labels: int) -> int:
    return 2 + int(rng.binomial(max_labels - 2, 0.3))


def _log_uniform(rng: np.random.Generator, low: float, high: float, count=None):
    return np.exp(rng.uniform(np.log(low), np.log(high), count))


def _sample_noise(rng, max_labels):
    labels = _few_labels(rng, max_labels)
    params = {"smoothness": rng.uniform(0.03, 0.12, labels), "offsets": rng.normal(0.0, 0.75, labels)}
    return Layout("noise", labels, params)


def _generate_noise(rng, params, size):
    return np.argmax(random_fields(rng, size, params["smoothness"] * size, params["offsets"]), axis=0)


def _sample_voronoi(rng, max_labels):
    membrane = bool(rng.random() < 0.4)
    classes = max(2 - membrane, min(_few_labels(rng, max_labels) - membrane, 4))
    params = {
        "cells": int(_log_uniform(rng, 6, 120)),
        "weight_spread": rng.uniform(0.0, 1.0),  # 0: plain Voronoi cells; 1: cells of very different sizes
        "class_probs": rng.dirichlet(np.full(classes, 2.0)),
        "wiggle": rng.uniform(0.0, 0.03),
        "membrane_width": rng.uniform(1.0, 3.0) if membrane else 0.0,
    }
    return Layout("voronoi", classes + membrane, params, fine=(classes,) if membrane else ())


def _generate_voronoi(rng, params, size):
    count = params["cells"]
    classes = len(params["class_probs"])
    points = rng.uniform(0, size, (count, 2)).astype(np.float32)
    weights = (rng.uniform(0.0, params["weight_spread"], count) * size**2 / count).astype(np.float32)
    grid = np.indices((size, size), dtype=np.float32)
    if params["wiggle"] > 0:
        grid = grid + random_displacement(rng, size, params["wiggle"] * size, smoothing=size / 16).astype(np.float32)
    cell = np.full((size, size), np.inf, np.float32)
    cells = np.zeros((size, size), np.int32)
    for index in range(count):  # the power diagram, one cell at a time (no (cells, H, W) array)
        distance = (grid[0] - points[index, 0]) ** 2 + (grid[1] - points[index, 1]) ** 2 - weights[index]
        closer = distance < cell
        cell[closer], cells[closer] = distance[closer], index
    # Every class gets a cell (the first ones: points are in random order), the others by the class weights.
    cell_class = np.concatenate(
        [rng.permutation(classes), rng.choice(classes, count - classes, p=params["class_probs"])]
    )
    label_map = cell_class[cells]
    if params["membrane_width"]:
        border = np.zeros((size, size), bool)
        border[:-1] |= cells[:-1] != cells[1:]
        border[:, :-1] |= cells[:, :-1] != cells[:, 1:]
        width = max(params["membrane_width"] * size / REFERENCE_SIZE, 1.0)
        label_map = np.where(ndimage.distance_transform_edt(~border) < width / 2, classes, label_map)
    return label_map


def _sample_blobs(rng, max_labels):
    classes = int(rng.integers(1, min(4, max_labels - 1) + 1))
    radius = np.sort(_log_uniform(rng, 0.012, 0.15, classes))[::-1]  # class 1 the largest
    coverage = rng.uniform(0.05, 0.35, classes) / classes
    count = np.clip(coverage / (np.pi * radius**2), 1, 80).astype(int)
    params = {
        "radius": radius,
        "count": count,
        "radius_spread": rng.uniform(0.0, 0.3, classes),
        "aspect": rng.uniform(1.0, 2.5, classes),
        "wobble": rng.uniform(0.0, 0.25, classes),
        "separate": bool(rng.random() < 0.5),  # objects do not overlap (touching cells) or pile up
    }
    small = tuple(k + 1 for k in range(classes) if radius[k] < 0.035)
    return Layout("blobs", classes + 1, params, fine=small, objects=tuple(range(1, classes + 1)), background=True)


def _generate_blobs(rng, params, size):
    label_map = np.zeros((size, size), np.int32)
    taken = (np.zeros((0, 2)), np.zeros(0)) if params["separate"] else None
    for k in range(len(params["radius"])):
        radius = params["radius"][k] * size * np.exp(rng.normal(0.0, params["radius_spread"][k], params["count"][k]))
        centres, radius, taken = free_centres(rng, size, np.maximum(radius, 0.7), taken)
        paint(label_map, centres, random_shapes(rng, radius, params["aspect"][k], params["wobble"][k]), k + 1)
    return label_map


def _sample_nested(rng, max_labels):
    # A core inside one ring (or two); a core alone when a draw may only have 2 labels.
    layers = 1 if max_labels < 3 else 2 if max_labels < 4 or rng.random() < 0.65 else 3
    radius = _log_uniform(rng, 0.04, 0.25)
    fractions = np.sort(rng.uniform(0.3, 0.8, layers - 1))[::-1]  # inner radius / outer radius, per layer
    params = {
        "radius": radius,
        "count": int(np.clip(rng.uniform(0.08, 0.4) / (np.pi * radius**2), 1, 40)),
        "radius_spread": rng.uniform(0.0, 0.25),
        "aspect": rng.uniform(1.0, 1.8),
        "wobble": rng.uniform(0.0, 0.2),
        "fractions": fractions,
        "eccentricity": rng.uniform(0.0, 0.5),  # how far the core may sit off-centre, as a fraction of the ring
    }
    return Layout("nested", layers + 1, params, objects=tuple(range(1, layers + 1)), background=True)


def _generate_nested(rng, params, size):
    label_map = np.zeros((size, size), np.int32)
    minimum = 1.5 * size / REFERENCE_SIZE
    radius = params["radius"] * size * np.exp(rng.normal(0.0, params["radius_spread"], params["count"]))
    centres, radius, _ = free_centres(rng, size, np.maximum(radius, 4.0), (np.zeros((0, 2)), np.zeros(0)))
    shapes = random_shapes(rng, radius, params["aspect"], params["wobble"])
    paint(label_map, centres, shapes, 1)
    for layer, fraction in enumerate(params["fractions"]):
        scale = np.minimum(fraction, 1.0 - minimum / shapes.radius)  # rings at least ~1.5 px thick
        room = (1.0 - scale) * shapes.radius * params["eccentricity"]
        centres = centres + rng.uniform(-1, 1, centres.shape) * room[:, None] / 2
        shapes = shapes.scaled(scale)
        paint(label_map, centres, shapes, layer + 2)
    return label_map


def _sample_curvilinear(rng, max_labels):
    kind = "vessels" if rng.random() < 0.6 else "membranes"
    second = bool(max_labels > 2 and rng.random() < 0.5)
    if kind == "vessels":
        params = {
            "kind": kind,
            "trees": int(rng.integers(1, 5)),
            "width": rng.uniform(1.5, 5.0),  # diameter at the root, pixels at REFERENCE_SIZE
            "curvature": rng.uniform(0.03, 0.25),  # radians per step
            "branching": rng.uniform(0.005, 0.03),  # branches per step
            "length": rng.uniform(0.3, 0.9),
            # A second, thinner network (capillaries) as label 2.
            "second_width": rng.uniform(1.0, 2.0) if second else 0.0,
        }
        return Layout("curvilinear", 2 + second, params, fine=(1, 2) if second else (1,), background=True)
    params = {"kind": kind, "scale": rng.uniform(0.04, 0.15), "width": rng.uniform(1.0, 3.5), "sides": second}
    # The membrane is label 1; with ``sides`` the tissue on its negative side is label 2.
    return Layout("curvilinear", 2 + second, params, fine=(1,), background=not second)


def _generate_curvilinear(rng, params, size):
    scale = size / REFERENCE_SIZE
    if params["kind"] == "membranes":
        field = smooth_noise(rng, size, params["scale"] * size)
        gradient = np.hypot(*np.gradient(field))
        distance = np.abs(field) / np.maximum(gradient, 1e-6)  # pixels to the zero set, to first order
        label_map = np.where(field < 0, 2, 0) if params["sides"] else np.zeros((size, size), np.int32)
        return np.where(distance < max(params["width"] * scale, 1.0) / 2, 1, label_map)
    label_map = np.zeros((size, size), np.int32)
    networks = [(1, params["width"], params["trees"])]
    if params["second_width"]:
        networks.append((2, params["second_width"], params["trees"] + 1))
    for label, width, trees in networks:
        points = [
            vessel_tree(rng, size, width * scale / 2, params["curvature"], params["branching"], params["length"] * size)
            for _ in range(trees)
        ]
        mask = rasterize_tubes(np.concatenate(points), size)
        label_map[mask & (label_map == 0)] = label
    return label_map


_SAMPLERS = {
    "noise": _sample_noise,
    "voronoi": _sample_voronoi,
    "blobs": _sample_blobs,
    "curvilinear": _sample_curvilinear,
    "nested": _sample_nested,
}
_GENERATORS = {
    "noise": _generate_noise,
    "voronoi": _generate_voronoi,
    "blobs": _generate_blobs,
    "curvilinear": _generate_curvilinear,
    "nested": _generate_nested,
}


@dataclasses.dataclass(frozen=True)
class Shapes:
    """Star-shaped objects around the origin: ellipses of ``radius`` and ``aspect`` turned by ``angle``, their
    border radius modulated by harmonics 2, 3 and 4 (``harmonics``: amplitude and phase). Arrays of one entry
    per object, so that all objects of a class are painted at once."""

    radius: np.ndarray  # (n,)
    aspect: np.ndarray  # (n,)
    angle: np.ndarray  # (n,)
    harmonics: np.ndarray  # (n, 3, 2)

    def __len__(self) -> int:
        return len(self.radius)

    def scaled(self, factor) -> "Shapes":
        return dataclasses.replace(self, radius=self.radius * factor)

    def extent(self) -> np.ndarray:
        """(n,) radius of a disc that holds each object."""
        return self.radius * np.sqrt(self.aspect) * (1.0 + np.abs(self.harmonics[:, :, 0]).sum(1)) + 1.0

    def inside(self, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
        """Whether offsets ``dy`` ``(n, P, 1)`` and ``dx`` ``(n, 1, P)`` from each object's centre are inside it."""
        column = (slice(None), None, None)
        cos, sin, root = np.cos(self.angle)[column], np.sin(self.angle)[column], np.sqrt(self.aspect)[column]
        u, v = (cos * dx + sin * dy) / root, (-sin * dx + cos * dy) * root
        theta = np.arctan2(v, u)
        border = 1.0
        for j, order in enumerate((2, 3, 4)):
            border = border + self.harmonics[:, j, 0][column] * np.cos(order * theta + self.harmonics[:, j, 1][column])
        return u**2 + v**2 <= (self.radius[column] * np.maximum(border, 0.3)) ** 2


def random_shapes(rng: np.random.Generator, radius: np.ndarray, max_aspect: float, wobble: float) -> Shapes:
    n = len(radius)
    harmonics = np.stack([rng.normal(0.0, wobble, (n, 3)) / [1.0, 1.5, 2.0], rng.uniform(0, 2 * np.pi, (n, 3))], 2)
    return Shapes(np.asarray(radius, float), rng.uniform(1.0, max_aspect, n), rng.uniform(0, np.pi, n), harmonics)


def paint(label_map: np.ndarray, centres: np.ndarray, shapes: Shapes, value: int) -> None:
    """Set the pixels of every shape placed at its centre (row, col) to ``value`` (clipped to the image)."""
    if not len(shapes):
        return
    half = int(np.ceil(shapes.extent().max()))
    span = np.arange(-half, half + 1)
    rows = np.floor(centres[:, :1]).astype(int) + span  # (n, P)
    cols = np.floor(centres[:, 1:]).astype(int) + span
    inside = shapes.inside((rows - centres[:, :1])[:, :, None], (cols - centres[:, 1:])[:, None, :])
    size_rows, size_cols = label_map.shape
    inside &= ((rows >= 0) & (rows < size_rows))[:, :, None] & ((cols >= 0) & (cols < size_cols))[:, None, :]
    which, row, col = np.nonzero(inside)
    label_map[rows[which, row], cols[which, col]] = value


def free_centres(rng, size, radius, taken, tries: int = 12):
    """Uniform centres for objects of ``radius``; with ``taken`` = (centres, radii) of earlier objects, each
    at least ~ the sum of radii from all others (objects that find no room in ``tries`` are dropped).
    Returns (centres, radii, taken + these)."""
    candidates = rng.uniform(0, size, (len(radius), tries, 2))
    if taken is None:
        return candidates[:, 0], radius, None
    centres, radii = [*taken[0]], [*taken[1]]
    for index, r in enumerate(radius):
        if centres:
            distance = np.hypot(*(candidates[index][:, None, :] - np.asarray(centres)[None]).transpose(2, 0, 1))
            free = np.nonzero((distance > 0.9 * (r + np.asarray(radii))[None]).all(1))[0]
        else:
            free = [0]
        if len(free):
            centres.append(candidates[index, free[0]])
            radii.append(r)
    new = len(taken[1])
    centres, radii = np.asarray(centres).reshape(-1, 2), np.asarray(radii)
    return centres[new:], radii[new:], (centres, radii)


def vessel_tree(rng, size, radius, curvature, branching, length, max_branches: int = 24) -> np.ndarray:
    """``(N, 3)`` points (row, col, radius) along a random branching tree, one pixel apart, that starts on the
    border heading inwards (or inside the image); children are thinner and shorter."""
    if rng.random() < 0.7:
        side = rng.integers(4)
        position = rng.uniform(0, size)
        start = [(0.0, position), (size - 1.0, position), (position, 0.0), (position, size - 1.0)][side]
        heading = [np.pi / 2, -np.pi / 2, 0.0, np.pi][side] + rng.normal(0.0, 0.4)
    else:
        start, heading = rng.uniform(0, size, 2), rng.uniform(0, 2 * np.pi)
    branches, points = [(np.asarray(start, float), heading, radius, length)], []
    while branches and len(points) < max_branches:
        origin, heading, r, steps = branches.pop()
        steps = max(int(steps), 2)
        angles = heading + np.cumsum(rng.normal(0.0, curvature, steps))
        path = origin + np.cumsum(np.stack([np.sin(angles), np.cos(angles)], 1), axis=0)
        radii = r * np.linspace(1.0, 0.75, steps)
        points.append(np.column_stack([path, radii]))
        for at in np.sort(rng.integers(0, steps, rng.poisson(branching * steps)))[:4]:
            child = r * rng.uniform(0.5, 0.8)
            if child >= 0.45:
                turn = rng.choice([-1, 1]) * rng.uniform(0.3, 1.2)
                branches.append((path[at], angles[at] + turn, child, steps * rng.uniform(0.3, 0.7)))
    return np.concatenate(points)


def rasterize_tubes(points: np.ndarray, size: int) -> np.ndarray:
    """``(size, size)`` mask of the union of discs (row, col, radius); every disc at least one pixel."""
    inside = (points[:, 0] >= 0) & (points[:, 0] < size) & (points[:, 1] >= 0) & (points[:, 1] < size)
    points = points[inside]
    mask = np.zeros((size, size), bool)
    if not len(points):
        return mask
    radius = np.zeros((size, size))
    rows, cols = points[:, 0].astype(int), points[:, 1].astype(int)
    np.maximum.at(radius, (rows, cols), points[:, 2])
    distance, (near_rows, near_cols) = ndimage.distance_transform_edt(radius == 0, return_indices=True)
    return distance <= np.maximum(radius[near_rows, near_cols], 0.5)


# ---------------------------------------------------------------------------------------------------------------
# The draw: a layout, an appearance, and per-subject variation.


@dataclasses.dataclass(frozen=True)
class Appearance:
    """How a draw's labels look: per label a mean level, a texture and (for fill labels) an object-to-object
    brightness spread; optionally one label drawn as an outline only, and unlabelled clutter."""

    family: str
    means: np.ndarray  # (labels,) mean intensity per label
    textures: tuple  # per label: (kind, scale in px at REFERENCE_SIZE, strength, angle)
    object_spreads: np.ndarray  # (labels,) half-range of the brightness offset of each connected object
    outline: int = -1  # the label drawn as its border only (-1: none)
    outline_level: float = 0.0
    outline_width: float = 0.0  # pixels at REFERENCE_SIZE
    clutter: dict | None = None  # {"host", "count", "radius", "level", "strokes"[, "mimic": label it looks like]}


def distinct_levels(rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` levels ``(rank + U(0.2, 0.8)) / count`` in random order, at least ``0.4 / count`` apart."""
    return (rng.permutation(count) + rng.uniform(0.2, 0.8, count)) / count


def sample_appearance(rng: np.random.Generator, layout: Layout, family: str) -> Appearance:
    labels = layout.labels
    means = distinct_levels(rng, labels)
    # Half of the labels get a faint grain (the others are smooth up to the image noise).
    textures = [
        ("grain", float(rng.uniform(0.5, 4.0)), float(rng.uniform(0.03, 0.15) * (rng.random() < 0.5)), 0.0)
        for _ in range(labels)
    ]
    spreads = rng.uniform(0.0, 0.3, labels) / labels
    outline, outline_level, outline_width = -1, 0.0, 0.0
    if family == "intensity" and layout.family == "blobs" and len(layout.objects) > 1 and rng.random() < 0.5:
        means[list(layout.objects)] = means[layout.objects[0]]  # object classes told apart by size and shape only
    elif family == "texture":
        wide = layout.wide()
        base_level = rng.uniform(0.3, 0.7)
        kinds = rng.permutation(TEXTURES)
        for position, k in enumerate(wide):
            if position >= len(TEXTURES):  # more labels than textures: the rest keep their own levels
                break
            means[k] = base_level + rng.uniform(-0.03, 0.03)
            textures[k] = random_texture(rng, str(kinds[position]))
            spreads[k] = 0.0
    elif family == "outline":
        outline = int(rng.choice(layout.wide(layout.objects or None)))
        others = [k for k in layout.wide() if k != outline]
        means[outline] = means[int(rng.choice(others))] if others else rng.uniform(0.2, 0.8)
        spreads[outline] = 0.0
        outline_level = float(np.clip(means[outline] + rng.choice([-1, 1]) * rng.uniform(0.25, 0.5), 0, 1))
        outline_width = float(rng.uniform(1.0, 3.0))
    clutter = None
    if rng.random() < CLUTTER_PROBABILITY:
        host = 0 if layout.objects or layout.fine else int(rng.choice(layout.wide() or [0]))
        clutter = {
            "host": host,
            "count": int(_log_uniform(rng, 5, 80)),
            "radius": float(rng.uniform(0.6, 2.5)),
            "level": float(rng.uniform(0.0, 1.0)),
            "strokes": bool(rng.random() < 0.4),
        }
        others = [k for k in range(labels) if k != host]
        if rng.random() < MIMIC_PROBABILITY:
            # Debris as bright as a label: only shape tells them apart (specks or strokes against objects,
            # short strokes against lines).
            mimic = int(rng.choice(others))
            clutter["level"] = float(means[mimic] if outline != mimic else outline_level)
            clutter["strokes"] = mimic in layout.fine and not layout.objects or bool(rng.random() < 0.3)
            clutter["mimic"] = mimic
            if layout.family == "blobs":  # specks at most half as wide as the objects they mimic, else strokes
                half = 0.5 * layout.params["radius"][mimic - 1] * REFERENCE_SIZE
                clutter["radius"] = max(min(clutter["radius"], half), 0.6)
                clutter["strokes"] = clutter["strokes"] or half < 0.8
    return Appearance(family, means, tuple(textures), spreads, outline, outline_level, outline_width, clutter)


def random_texture(rng: np.random.Generator, kind: str) -> tuple:
    """(kind, scale, strength, angle) of a texture of the given kind, strong enough to see."""
    strength = float(rng.uniform(0.12, 0.3))
    if kind == "grain_fine":
        return ("grain", float(rng.uniform(0.5, 1.0)), strength, 0.0)
    if kind == "grain_coarse":
        return ("grain", float(rng.uniform(2.5, 5.0)), strength, 0.0)
    if kind == "stripes":
        return ("stripes", float(rng.uniform(3.0, 9.0)), strength, float(rng.uniform(0, np.pi)))
    if kind == "spots":
        return ("spots", float(rng.uniform(0.8, 2.0)), strength * 1.5, float(rng.uniform(0.02, 0.08)))
    return ("smooth", 0.0, 0.0, 0.0)


def render_texture(rng: np.random.Generator, texture: tuple, size: int) -> np.ndarray:
    """A fresh ``(size, size)`` texture of unit-ish amplitude times its strength (zero for ``smooth``)."""
    kind, scale, strength, angle = texture
    scale *= size / REFERENCE_SIZE
    if kind == "smooth" or strength == 0:
        return np.zeros((size, size))
    if kind == "grain":
        field = ndimage.gaussian_filter(rng.normal(size=(size, size)), max(scale, 0.3))
        return strength * field / max(field.std(), 1e-6)
    if kind == "stripes":
        rows, cols = np.indices((size, size))
        phase = 2 * np.pi * (rows * np.sin(angle) + cols * np.cos(angle)) / max(scale, 2.0)
        wobble = smooth_noise(rng, size, size / 10) * 0.8
        return strength * np.sin(phase + rng.uniform(0, 2 * np.pi) + wobble)
    # spots: sparse dots of radius ~scale, density ``angle`` (fraction of pixels seeding a dot)
    seeds = (rng.random((size, size)) < angle).astype(float)
    dots = ndimage.gaussian_filter(seeds, max(scale, 0.5))
    return strength * dots / max(dots.max(), 1e-6) * rng.choice([-1, 1])


@dataclasses.dataclass(frozen=True)
class DrawModel:
    """The random generative model of one draw: a layout, an appearance, and how subjects vary.

    A draw's labels keep their appearance in every subject. Their layout either is one template deformed per
    subject (``independent=False``: the structure is also where the support says it is, as in registered anatomy)
    or is drawn anew for every subject from the same parameters (``independent=True``: only appearance and shape
    tell the structure, as with cells or lesions anywhere in the image).
    """

    seed: int
    draw: int
    size: int
    layout: Layout
    appearance: Appearance
    independent: bool
    template: np.ndarray | None  # (size, size) label map deformed per subject, when not independent
    deformation: float  # maximum displacement of the per-subject warp, as a fraction of the side

    @property
    def labels(self) -> int:
        return self.layout.labels

    @property
    def tasks(self) -> list[int]:
        """The labels that are tasks (see ``Layout.tasks``)."""
        return self.layout.tasks

    @property
    def family(self) -> str:
        """``layout/appearance``, e.g. ``blobs/texture``."""
        return f"{self.layout.family}/{self.appearance.family}"

    @property
    def means(self) -> np.ndarray:
        return self.appearance.means

    @classmethod
    def sample(cls, seed: int, draw: int, max_labels: int, size: int) -> "DrawModel":
        """A draw with between 2 and ``max_labels`` labels, its families chosen by the draw's own rng."""
        rng = np.random.default_rng((seed, draw))
        family = str(rng.choice(LAYOUTS, p=LAYOUT_WEIGHTS))
        layout = Layout.sample(rng, family, max_labels)
        weights = np.array(APPEARANCE_WEIGHTS)
        if family == "curvilinear" or not layout.wide(layout.objects or None):
            weights[APPEARANCES.index("outline")] = 0.0  # nothing wide enough to outline but the background
        if len(layout.wide()) < 2:
            weights[APPEARANCES.index("texture")] = 0.0  # one wide label only: no texture to tell apart
        appearance = sample_appearance(rng, layout, str(rng.choice(APPEARANCES, p=weights / weights.sum())))
        independent = bool(rng.random() >= TEMPLATED[family])
        deformation = float(rng.uniform(0.03, 0.1))
        template = None if independent else layout.generate(rng, size)
        if template is not None:
            template = ensure_labels(rng, template, layout, size)
        return cls(seed, draw, size, layout, appearance, independent, template, deformation)

    def label_map(self, rng: np.random.Generator) -> np.ndarray:
        """One subject's label map: the template under a smooth random warp, or a fresh layout."""
        if self.independent:
            return self.layout.generate(rng, self.size)
        # At least half the draw's amplitude: subjects of a templated draw are never near-copies of each other.
        displacement = random_displacement(rng, self.size, rng.uniform(0.5, 1.0) * self.deformation * self.size)
        return warp_labels(self.template, self.labels, displacement, smooth=bool(self.layout.fine))

    def render(self, subject: int) -> tuple[np.ndarray, np.ndarray]:
        """(image float32 (H,W), label map int32 (H,W)) of one subject."""
        rng = np.random.default_rng((self.seed, self.draw, subject + 1))
        label_map = self.label_map(rng)
        return render_image(rng, label_map, self.appearance, self.size), label_map


def ensure_labels(rng, label_map, layout, size, tries: int = 8):
    """A template in which every label appears (redrawn a few times; otherwise as it is)."""
    for _ in range(tries):
        if len(np.unique(label_map)) == layout.labels:
            break
        label_map = layout.generate(rng, size)
    return label_map


def render_image(rng: np.random.Generator, label_map: np.ndarray, look: Appearance, size: int) -> np.ndarray:
    """Render one subject: per-label levels (jittered), object offsets, textures, outline, clutter, then bias
    field, gamma, blur and noise."""
    labels = len(look.means)
    scale = size / REFERENCE_SIZE
    levels = np.clip(look.means + rng.normal(0.0, 0.04, labels), 0.0, 1.0)
    image = levels[label_map] + object_offsets(rng, label_map, look.object_spreads)
    for label in np.unique(label_map):
        if look.textures[label][2] > 0:
            mask = label_map == label
            image[mask] += render_texture(rng, look.textures[label], size)[mask]
    if look.outline >= 0:
        inside = label_map == look.outline
        if inside.any():
            border = inside & (ndimage.distance_transform_edt(inside) <= max(look.outline_width * scale, 1.0))
            image[border] = look.outline_level + rng.normal(0.0, 0.03)
    if look.clutter:
        image = add_clutter(rng, image, label_map == look.clutter["host"], look.clutter, scale)
    if rng.random() < 0.5:  # smooth multiplicative bias field (coil shading, uneven illumination)
        image = image * np.exp(rng.uniform(0.05, 0.2) * smooth_noise(rng, size, size / 4))
    low, high = image.min(), image.max()
    image = ((image - low) / max(high - low, 1e-6)) ** np.exp(rng.normal(0.0, 0.25))
    image = ndimage.gaussian_filter(image, rng.uniform(0.0, 1.0) * scale)
    image = image + rng.normal(0.0, rng.uniform(0.0, 0.05), image.shape)
    return image.astype(np.float32)


def add_clutter(rng, image, host, clutter, scale):
    """Unlabelled small dots (or short strokes) of the clutter's level, inside the ``host`` label only."""
    size = image.shape[0]
    mask = np.zeros(image.shape, np.int32)
    count = clutter["count"]
    radius = clutter["radius"] * scale * rng.uniform(0.6, 1.4, count)
    aspect = rng.uniform(4.0, 9.0, count) if clutter["strokes"] else rng.uniform(1.0, 1.5, count)
    if clutter["strokes"]:
        radius = radius * np.sqrt(aspect) / 1.5  # short strokes about as long as 4 to 6 radii
    shapes = Shapes(radius, aspect, rng.uniform(0, np.pi, count), np.zeros((count, 3, 2)))
    paint(mask, rng.uniform(0, size, (count, 2)), shapes, 1)
    clutter_pixels = (mask > 0) & host
    image = image.copy()
    image[clutter_pixels] = clutter["level"] + rng.normal(0.0, 0.03, clutter_pixels.sum())
    return image


def object_offsets(rng: np.random.Generator, label_map: np.ndarray, spreads: np.ndarray) -> np.ndarray:
    """(H,W) brightness offset, constant over every connected object of every label, U(-spread, spread)."""
    offsets = np.zeros(label_map.shape)
    for label, spread in enumerate(spreads):
        if spread <= 0:
            continue
        objects, count = ndimage.label(label_map == label)
        offsets += np.concatenate([[0.0], rng.uniform(-spread, spread, count)])[objects]
    return offsets


def random_fields(rng: np.random.Generator, size: int, smoothness: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(labels, size, size) smooth fields, one per label, whose argmax is a label map where every label wins."""
    fields = np.stack([smooth_noise(rng, size, sigma) + offset for sigma, offset in zip(smoothness, offsets)])
    ensure_every_label(rng, fields, float(np.mean(smoothness)))
    return fields


def smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise (periodic) with unit standard deviation.

    For a large ``sigma`` the noise is smoothed on a grid ``step`` times coarser and interpolated back (the
    filter's cost grows with ``sigma``; the field has no detail below ``sigma`` anyway)."""
    step = max(int(sigma // 3), 1)
    coarse = -(-size // step)
    field = ndimage.gaussian_filter(rng.normal(size=(coarse, coarse)), sigma / step, mode="wrap")
    if step > 1:
        field = ndimage.zoom(field, step, order=1, mode="grid-wrap", grid_mode=True)[:size, :size]
    return field / max(field.std(), 1e-6)


def ensure_every_label(rng: np.random.Generator, fields: np.ndarray, radius: float) -> None:
    """Add a bump to the field of every label that wins nowhere, so that every task has examples."""
    size = fields.shape[1]
    rows, cols = np.indices((size, size))
    for label in sorted(set(range(len(fields))) - set(np.unique(np.argmax(fields, axis=0)).tolist())):
        row, col = rng.uniform(0, size, 2)
        fields[label] += 6.0 * np.exp(-((rows - row) ** 2 + (cols - col) ** 2) / (2 * radius**2))


def random_displacement(rng: np.random.Generator, size: int, amplitude: float, smoothing: float | None = None):
    """(2, size, size) smooth displacement field with a maximum of about ``amplitude`` pixels."""
    smoothing = size / 8 if smoothing is None else smoothing
    return np.stack([smooth_noise(rng, size, smoothing) for _ in range(2)]) * amplitude / 3.0


def warp(fields: np.ndarray, displacement: np.ndarray) -> np.ndarray:
    """Every (H,W) field of ``fields`` resampled at grid + ``displacement`` (linear, edges repeated)."""
    grid = np.indices(fields.shape[1:], dtype=np.float64) + displacement
    return np.stack([ndimage.map_coordinates(field, grid, order=1, mode="nearest") for field in fields])


def warp_labels(label_map: np.ndarray, labels: int, displacement: np.ndarray, smooth: bool = True) -> np.ndarray:
    """``label_map`` under ``displacement``. ``smooth``: the argmax of the warped, slightly smoothed one-hot maps
    (lines one or two pixels wide survive); else nearest-neighbour resampling (one pass, for wide labels only)."""
    if not smooth:
        grid = np.indices(label_map.shape, dtype=np.float64) + displacement
        return ndimage.map_coordinates(label_map, grid, order=0, mode="nearest").astype(np.int32)
    one_hot = np.stack([ndimage.gaussian_filter((label_map == k).astype(np.float32), 0.5) for k in range(labels)])
    return np.argmax(warp(one_hot, displacement), axis=0).astype(np.int32)
