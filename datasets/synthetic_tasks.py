"""Seeded synthetic segmentation tasks (SynthMorph-like), so that training never runs out of tasks.

A *draw* is one random generative model: 2 to ``labels_per_draw`` smooth random fields whose argmax is a
label map, a mean intensity (distinct levels, so that appearance can tell labels apart), a texture and an
object-to-object brightness spread per label (cells and lesions are not all equally bright). Every subject of
a draw either deforms the draw's fields with its own smooth random warp or (half of the draws) gets fields of
its own, and renders an image (per-label intensity + per-object offset + texture, blur, noise).
A task is one label of one draw; its examples are that label in every subject. Everything comes from
``numpy.random.default_rng((seed, draw[, subject]))``, so a (seed, draw, subject) always gives the same
data, whatever else is built.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds
from scipy import ndimage

from universeg_datasets import base, standardize

DATASET = "synthetic_tasks"
MODALITY = "synthetic"


@dataclasses.dataclass(eq=False)
class SyntheticConfig(base.TaskConfig):
    """``num_tasks`` tasks from draws of 2 to ``labels_per_draw`` labels; ``subjects`` examples per task;
    ``seed`` for everything."""

    num_tasks: int = 48
    subjects: int = 72  # training samples support_size + 1 different subjects per episode (64 + 1 in the paper)
    labels_per_draw: int = 8
    seed: int = 0


class SyntheticTasks(base.TaskBuilder):
    """Synthetic binary tasks from random smooth label maps with per-label intensities, textures and noise.
    Task ids ``synthetic_tasks/synthetic/d<draw>_l<label>/0``; subjects ``s<index>``."""

    VERSION = tfds.core.Version("1.2.0")
    RELEASE_NOTES = {
        "1.0.0": "First release.",
        "1.1.0": "Draws have 2 to labels_per_draw labels, each with its own smoothness and offset (large regions "
        "and small scattered objects); half of the draws give every subject its own layout.",
        "1.2.0": "Fewer labels per draw on average (2 + Binomial(labels_per_draw - 2, 0.3)); label intensities on "
        "distinct levels; every connected object gets its own brightness offset.",
    }
    BUILDER_CONFIGS = base.size_configs(SyntheticConfig) + base.size_configs(
        SyntheticConfig, "tasks1000", num_tasks=1000
    )

    def _generate_examples(self, dl_manager):
        config = self.builder_config
        if config.num_tasks < 1 or config.subjects < 1 or config.labels_per_draw < 2:
            raise ValueError(
                f"need num_tasks >= 1, subjects >= 1 and labels_per_draw >= 2, got {config.num_tasks}, "
                f"{config.subjects} and {config.labels_per_draw}"
            )
        draw, tasks = 0, 0
        while tasks < config.num_tasks:
            model = DrawModel.sample(config.seed, draw, config.labels_per_draw, config.size)
            labels_here = min(model.labels, config.num_tasks - tasks)
            labels = {f"d{draw:04d}_l{label}": label for label in range(labels_here)}
            for subject in range(config.subjects):
                image, label_map = model.render(subject)
                view = standardize.View(image, label_map)
                yield from standardize.view_examples(
                    view, labels, dataset=DATASET, modality=MODALITY, subject=f"s{subject:04d}", size=config.size
                )
            draw, tasks = draw + 1, tasks + labels_here


@dataclasses.dataclass(frozen=True)
class DrawModel:
    """The random generative model of one draw.

    A draw's labels keep their appearance (intensity, texture) in every subject. Their layout either is one
    template deformed per subject (``independent=False``: the structure is also where the support says it is, as
    in registered anatomy) or is drawn anew for every subject from the same smoothness and offsets
    (``independent=True``: only appearance tells the structure, as with cells or lesions anywhere in the image).
    """

    seed: int
    draw: int
    fields: np.ndarray  # (labels, size, size) smooth random fields of the template; argmax = label map
    smoothness: np.ndarray  # (labels,) field smoothing in pixels: larger -> fewer, bigger blobs
    offsets: np.ndarray  # (labels,) high: the label fills the background; low: scattered objects at its peaks
    independent: bool  # every subject gets its own layout instead of a deformed template
    means: np.ndarray  # (labels,) mean intensity per label
    texture_scales: np.ndarray  # (labels,) texture smoothing per label, in pixels
    texture_strengths: np.ndarray  # (labels,)
    object_spreads: np.ndarray  # (labels,) half-range of the brightness offset of each connected object

    @property
    def labels(self) -> int:
        return self.fields.shape[0]

    @classmethod
    def sample(cls, seed: int, draw: int, max_labels: int, size: int) -> "DrawModel":
        """A draw with between 2 and ``max_labels`` labels, mostly few (e.g. objects on a background).

        Label intensities sit on distinct levels ``(rank + U(0.2, 0.8)) / labels``, at least ``0.4 / labels``
        apart: with uniform draws, many labels of a draw looked alike and their tasks (when the layout is
        independent) could not be solved from appearance, teaching the model to ignore it."""
        rng = np.random.default_rng((seed, draw))
        labels = 2 + int(rng.binomial(max_labels - 2, 0.3))
        smoothness = rng.uniform(0.03, 0.12, labels) * size
        offsets = rng.normal(0.0, 0.75, labels)
        return cls(
            seed,
            draw,
            random_fields(rng, size, smoothness, offsets),
            smoothness,
            offsets,
            independent=bool(rng.random() < 0.5),
            means=(rng.permutation(labels) + rng.uniform(0.2, 0.8, labels)) / labels,
            texture_scales=rng.uniform(0.5, 4.0, labels),
            texture_strengths=rng.uniform(0.0, 0.15, labels),
            object_spreads=rng.uniform(0.0, 0.3, labels) / labels,
        )

    def render(self, subject: int) -> tuple[np.ndarray, np.ndarray]:
        """(image float32 (H,W), label map int32 (H,W)) of one subject."""
        rng = np.random.default_rng((self.seed, self.draw, subject + 1))
        labels, size = self.labels, self.fields.shape[1]
        if self.independent:
            fields = random_fields(rng, size, self.smoothness, self.offsets)
        else:
            fields = warp(self.fields, random_displacement(rng, size, rng.uniform(0.0, 0.08) * size))
        label_map = np.argmax(fields, axis=0).astype(np.int32)
        intensities = np.clip(self.means + rng.normal(0.0, 0.05, labels), 0.0, 1.0)
        image = intensities[label_map] + object_offsets(rng, label_map, self.object_spreads)
        for label in range(labels):
            texture = ndimage.gaussian_filter(rng.normal(size=(size, size)), self.texture_scales[label])
            texture /= max(texture.std(), 1e-6)
            image = image + (label_map == label) * self.texture_strengths[label] * texture
        image = ndimage.gaussian_filter(image, rng.uniform(0.0, 1.0))
        image = image + rng.normal(0.0, rng.uniform(0.0, 0.05), image.shape)
        return image.astype(np.float32), label_map


def object_offsets(rng: np.random.Generator, label_map: np.ndarray, spreads: np.ndarray) -> np.ndarray:
    """(H,W) brightness offset, constant over every connected object of every label, U(-spread, spread)."""
    offsets = np.zeros(label_map.shape)
    for label, spread in enumerate(spreads):
        objects, count = ndimage.label(label_map == label)
        offsets += np.concatenate([[0.0], rng.uniform(-spread, spread, count)])[objects]
    return offsets


def random_fields(rng: np.random.Generator, size: int, smoothness: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(labels, size, size) smooth fields, one per label, whose argmax is a label map where every label wins."""
    fields = np.stack([smooth_noise(rng, size, sigma) + offset for sigma, offset in zip(smoothness, offsets)])
    ensure_every_label(rng, fields, float(np.mean(smoothness)))
    return fields


def smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise with unit standard deviation."""
    field = ndimage.gaussian_filter(rng.normal(size=(size, size)), sigma, mode="wrap")
    return field / max(field.std(), 1e-6)


def ensure_every_label(rng: np.random.Generator, fields: np.ndarray, radius: float) -> None:
    """Add a bump to the field of every label that wins nowhere, so that every task has examples."""
    size = fields.shape[1]
    rows, cols = np.indices((size, size))
    for label in sorted(set(range(len(fields))) - set(np.unique(np.argmax(fields, axis=0)).tolist())):
        row, col = rng.uniform(0, size, 2)
        fields[label] += 6.0 * np.exp(-((rows - row) ** 2 + (cols - col) ** 2) / (2 * radius**2))


def random_displacement(rng: np.random.Generator, size: int, amplitude: float) -> np.ndarray:
    """(2, size, size) smooth displacement field with a maximum of about ``amplitude`` pixels."""
    return np.stack([smooth_noise(rng, size, size / 8) for _ in range(2)]) * amplitude / 3.0


def warp(fields: np.ndarray, displacement: np.ndarray) -> np.ndarray:
    """Every (H,W) field of ``fields`` resampled at grid + ``displacement`` (linear, edges repeated)."""
    grid = np.indices(fields.shape[1:], dtype=np.float64) + displacement
    return np.stack([ndimage.map_coordinates(field, grid, order=1, mode="nearest") for field in fields])
