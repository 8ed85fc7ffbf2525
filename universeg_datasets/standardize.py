"""The standardisation every builder shares: 2D views of a source, binary tasks, encoded examples.

A *view* is one 2D image with its label map: a whole 2D image, or a slice of a volume along one of its
three axes. Every (dataset, modality, label, axis) is one binary task; one view gives one example per
label. Images are stored as uint8 (0..255, i.e. [0, 1] in steps of 1/255) and labels as uint8 {0, 1}.

Images go through ``universeg_jax.preprocess``, the code inference uses: a 2D source image is normalised on its
own (``standardize_image``); a slice of a volume is normalised with the intensity range of its whole volume
(``preprocess.NORMALIZATION_SCOPE``, chosen by the held-out comparison in docs/inference.md) and resized by
``standardize_slices``. Volumes are read in RAS order (``readers.read_volume``), so axis 0/1/2 are
sagittal/coronal/axial.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping

import numpy as np

from universeg_jax import preprocess

# Views from a volume are cut within this central fraction of each axis (edges are mostly background).
DEFAULT_SPAN = 0.6
_UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]+")


def clean_name(text: str) -> str:
    """``text`` usable as one component of a task id (no '/', no spaces)."""
    cleaned = _UNSAFE.sub("_", str(text).strip()).strip("_")
    if not cleaned:
        raise ValueError(f"name {text!r} has no usable characters for a task id")
    return cleaned


def task_id(dataset: str, modality: str, label: str, axis: int) -> str:
    """Stable task id ``dataset/modality/label/axis`` (axis 0 for 2D images)."""
    return "/".join([clean_name(dataset), clean_name(modality), clean_name(label), str(int(axis))])


@dataclasses.dataclass(frozen=True)
class View:
    """One 2D image (``(H,W)`` or ``(H,W,C)``) and its ``(H,W)`` label map, with where it was cut from."""

    image: np.ndarray
    label: np.ndarray
    axis: int = 0
    slice_index: int = -1  # -1: a 2D source image, not a slice
    # The (low, high) intensity range of the whole volume a slice comes from (``volume_range``); None: the
    # image is normalised on its own.
    intensity_range: tuple[float, float] | None = None


def volume_range(volume: np.ndarray) -> tuple[float, float] | None:
    """The intensity range slices of ``volume`` are normalised with (None when the scope is per slice)."""
    if preprocess.NORMALIZATION_SCOPE == "volume":
        return preprocess.intensity_range(volume)
    return None


def slice_indices(length: int, count: int, span: float = DEFAULT_SPAN) -> list[int]:
    """``count`` distinct slice indices spread evenly over the central ``span`` of an axis of ``length``.

    ``count=1`` gives the middle slice (MegaMedical's default).
    """
    if count < 1:
        raise ValueError(f"slices must be >= 1, got {count}")
    if count == 1:
        return [length // 2]
    margin = (1.0 - span) / 2.0 * (length - 1)
    positions = np.linspace(margin, length - 1 - margin, count)
    return sorted({int(round(p)) for p in positions})


def volume_views(
    image: np.ndarray, label: np.ndarray, slices: int = 1, span: float = DEFAULT_SPAN, axes: tuple[int, ...] = (0, 1, 2)
) -> Iterator[View]:
    """Views of a 3D ``image`` and its ``label`` map: ``slices`` slices along each of ``axes``, each with the
    intensity range of the whole volume."""
    intensity_range = volume_range(image)
    for axis in axes:
        for index in slice_indices(image.shape[axis], slices, span):
            yield View(take_slice(image, index, axis), take_slice(label, index, axis), axis, index, intensity_range)


def take_slice(volume: np.ndarray, index: int, axis: int) -> np.ndarray:
    """Slice ``index`` along ``axis`` of a volume (a view: ``np.take`` copies and is slow on big volumes)."""
    return np.moveaxis(volume, axis, 0)[index]


def check_same_size(image: np.ndarray, label: np.ndarray, image_name: str, label_name: str, ndim: int) -> None:
    """Raise naming both files when the label's grid does not match the image's first ``ndim`` axes."""
    if image.shape[:ndim] != label.shape[:ndim] or label.ndim != ndim:
        raise ValueError(
            f"label {label_name} has shape {label.shape}, which does not match image {image_name} "
            f"of shape {image.shape} (expected a label map of shape {image.shape[:ndim]})"
        )


def binarize(label_map: np.ndarray, value: int | None) -> np.ndarray:
    """Foreground mask of one label: ``label_map == value``, or any non-zero value when ``value`` is None."""
    return label_map > 0 if value is None else label_map == value


def encode_image(image: np.ndarray, size: int, intensity_range: tuple[float, float] | None = None) -> np.ndarray:
    """``(H,W)``/``(H,W,C)`` image -> ``(size,size,1)`` uint8 (grayscale, intensities normalised to 0..255).

    ``intensity_range``: the range of the volume a slice comes from (normalised with it, as inference does);
    None: a 2D image normalised on its own.
    """
    if intensity_range is None:
        standard = preprocess.standardize_image(image, (size, size))
    else:
        standard = preprocess.standardize_slices(
            image[None], (size, size), scope="volume", volume_range=intensity_range
        )[0]
    return np.round(standard * 255.0).astype(np.uint8)[..., None]


def encode_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Binary ``(H,W)`` mask -> ``(size,size,1)`` uint8 in {0, 1} (area resize, so thin structures survive), fitted
    like the images (``preprocess.RESIZE_MODE``)."""
    return preprocess.fit_label(mask, (size, size), preprocess.RESIZE_MODE, "area").astype(np.uint8)[..., None]


def view_examples(
    view: View,
    labels: Mapping[str, int | None],
    *,
    dataset: str,
    modality: str,
    subject: str,
    size: int,
    source: str | None = None,
    skip_empty: bool = True,
) -> Iterator[tuple[str, dict]]:
    """(key, example) for every label of one view; labels absent from the view are skipped if ``skip_empty``.

    ``source`` names the image the view comes from when a subject has several (e.g. two cardiac phases);
    it keeps example keys unique and defaults to ``subject``.
    """
    image = None
    for label_name, value in labels.items():
        mask = binarize(view.label, value)
        if skip_empty and not mask.any():
            continue
        encoded_mask = encode_mask(mask, size)
        if skip_empty and not encoded_mask.any():
            continue
        if image is None:  # standardise the image once for all its labels
            image = encode_image(view.image, size, view.intensity_range)
        task = task_id(dataset, modality, label_name, view.axis)
        key = f"{task}|{source or subject}|{view.slice_index}"
        yield (
            key,
            {
                "image": image,
                "label": encoded_mask,
                "task": task,
                "subject": subject,
                "modality": modality,
                "label_name": label_name,
                "axis": view.axis,
                "slice": view.slice_index,
            },
        )
