"""What every raw-dataset builder shares: find the files, read and check them, standardise.

A builder (made by ``layout.define``) says where its files are (``RAW_FOLDER`` inside the TFDS manual dir) and
lists its image/label ``Pair``s; everything else (reading, size checks, slicing, binary tasks) happens here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from universeg_datasets import base, standardize
from universeg_datasets.raw import formats
from universeg_jax import preprocess


@dataclasses.dataclass(frozen=True)
class Pair:
    """One image (2D, 3D, or 3D with channels) with its label file(s) (several are merged by maximum).

    ``image`` and each label are a ``Path`` (read by suffix) or a source object of ``formats`` (slices,
    channels, array items, RLE masks, polygons, video frames). ``layers`` are labels stored one binary mask
    per label (IDRiD's lesion files, CheXplanation's RLE masks): each gives the task ``name``; a layer whose
    source is None (that lesion is absent from the image) gives no example. ``frames``: the last axis of
    image and label is time; every frame whose label is not empty is one view (M&Ms, HMC-QU).
    """

    subject: str
    image: Any
    labels: tuple[Any, ...]
    modalities: tuple[str, ...]  # one name per image channel (2D colour images count as one)
    label_values: Mapping[str, int | None]  # label name -> value in the label map (None: any non-zero)
    source: str = ""  # unique id when a subject has several images; defaults to the subject
    layers: tuple[tuple[str, Any], ...] = ()
    frames: bool = False
    threshold: float | None = None  # labels >= threshold are foreground (lossy JPEG masks), applied first


# The release notes of the first volume builders (ACDC, KiTS19, OASIS, MSD).
WHOLE_VOLUME_NOTES = {
    "1.0.0": "First release.",
    "1.1.0": "Volume slices are normalised with the intensity range of their whole volume, as inference does (was: each slice on its own).",
}


class RawTaskBuilder(base.TaskBuilder, skip_registration=True):
    """Base of the raw MegaMedical builders, which ``layout.define`` makes: it sets ``RAW_FOLDER``, ``VOLUMETRIC``,
    ``MANUAL_DOWNLOAD_INSTRUCTIONS`` and the classmethod ``_pairs(root)``, which only lists files (the presence
    check calls it without building)."""

    RAW_FOLDER = ""
    VOLUMETRIC = False
    AXES = (0, 1, 2)  # volume axes views are cut along (a stack of 2D slices: its stacking axis only)

    @classmethod
    def _pairs(cls, root: Path) -> list[Pair]:
        raise NotImplementedError

    @classmethod
    def _source_metadata(cls, root: Path) -> dict:
        """What the build records about the files it found (e.g. STARE's annotator), in metadata.json."""
        return {}

    @classmethod
    def missing(cls, manual_dir) -> str | None:
        """Why a build from ``manual_dir`` would find nothing to read, or None when the files it needs are there."""
        root = Path(manual_dir) / cls.RAW_FOLDER
        if not root.is_dir():
            return f"folder {root} not found"
        try:
            pairs = cls._pairs(root)
        except (FileNotFoundError, ValueError) as err:
            return str(err)
        return None if pairs else f"no images found under {root}: no file there matches the layout of {cls.name}"

    def _generate_examples(self, dl_manager):
        root = Path(dl_manager.manual_dir) / self.RAW_FOLDER
        if not root.is_dir():
            raise FileNotFoundError(
                f"{self.name}: raw data folder {root} not found.\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
            )
        pairs = self._pairs(root)
        if not pairs:
            raise FileNotFoundError(
                f"{self.name}: no images found under {root}: no file there matches the layout below.\n"
                f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
            )
        self.info.metadata.update(self._source_metadata(root))
        for pair in pairs:
            yield from self._pair_examples(pair)

    def _pair_examples(self, pair: Pair) -> Iterator[tuple[str, dict]]:
        image, label_sets = self._read_pair(pair)
        for frame, (frame_image, frame_labels) in self._frames(pair, image, label_sets):
            source = (pair.source or pair.subject) + (f"@t{frame}" if frame is not None else "")
            yield from self._image_examples(pair, frame_image, frame_labels, source)

    def _frames(self, pair: Pair, image, label_sets):
        """(frame index or None, (image, label sets)) per frame: one item unless ``pair.frames``."""
        if not pair.frames:
            yield None, (image, label_sets)
            return
        for t in range(image.shape[-1]):
            frame_labels = [(values, label[..., t]) for values, label in label_sets]
            if any(label.any() for _, label in frame_labels):
                yield t, (image[..., t], frame_labels)

    def _image_examples(self, pair: Pair, image, label_sets, source: str) -> Iterator[tuple[str, dict]]:
        if self.VOLUMETRIC and image.ndim == 4:  # one modality per channel, e.g. MSD's FLAIR/T1w/T1gd/T2w
            images = [image[..., c] for c in range(image.shape[-1])]
        else:  # a 2D colour image is one modality: it becomes grayscale
            images = [image]
        if len(images) != len(pair.modalities):
            raise ValueError(
                f"image {pair.image} has {len(images)} channel(s) but {len(pair.modalities)} modality "
                f"name(s) {pair.modalities} were given"
            )
        for modality, channel in zip(pair.modalities, images):
            for label_values, label in label_sets:
                if self.VOLUMETRIC:
                    views = standardize.volume_views(channel, label, self.builder_config.slices, axes=self.AXES)
                else:
                    views = [standardize.View(channel, label)]
                for view in views:
                    yield from standardize.view_examples(
                        view,
                        label_values,
                        dataset=self.name,
                        modality=modality,
                        subject=pair.subject,
                        source=source,
                        size=self.builder_config.size,
                    )

    @classmethod
    def _read_pair(cls, pair: Pair) -> tuple[np.ndarray, list[tuple[Mapping[str, int | None], np.ndarray]]]:
        """The image and its label sets ``[(label values, label map)]``: the merged ``labels`` (if any) and
        one binary map per layer, each checked to match the image's grid."""
        image = formats.load(pair.image, cls.VOLUMETRIC)
        spatial = (3 if cls.VOLUMETRIC else 2) + (1 if pair.frames else 0)
        label = None
        for path in pair.labels:
            one = cls._read_label(pair, path, image, spatial)
            label = one if label is None else np.maximum(label, one)
        label_sets = [] if label is None else [(pair.label_values, np.rint(label).astype(np.int32))]
        for name, source in pair.layers:
            if source is not None:
                layer = cls._read_label(pair, source, image, spatial)
                label_sets.append(({name: None}, np.rint(layer).astype(np.int32)))
        return image, label_sets

    @classmethod
    def _read_label(cls, pair: Pair, source, image: np.ndarray, spatial: int) -> np.ndarray:
        one = formats.load(source, cls.VOLUMETRIC, like=image)
        if pair.threshold is not None:
            one = (one.max(axis=-1) if one.ndim > spatial else one) >= pair.threshold
        if not cls.VOLUMETRIC and not pair.frames:
            one = preprocess.label_to_2d(one, name=f"label file {source}")
        standardize.check_same_size(image, one, str(pair.image), str(source), ndim=spatial)
        return one


def label_path(image: Path, expected: Path) -> Path:
    """``expected`` if it exists, else an error saying the image has no label there."""
    if not expected.is_file():
        raise FileNotFoundError(f"label for image {image} not found: expected {expected}")
    return expected


def files(folder: Path, pattern: str) -> list[Path]:
    """Sorted files in ``folder`` matching ``pattern``, without macOS '._' resource files."""
    return sorted(p for p in folder.glob(pattern) if p.is_file() and not p.name.startswith("._"))


def manual_instructions(url: str, layout: str, note: str = "") -> str:
    """MANUAL_DOWNLOAD_INSTRUCTIONS text in one format for all raw builders."""
    text = (
        f"Download the dataset from {url} and extract it into the TFDS manual dir "
        f"(default: ~/tensorflow_datasets/downloads/manual/; or pass --manual_dir) so that it reads:\n{layout}"
    )
    return text + (f"\n{note}" if note else "")
