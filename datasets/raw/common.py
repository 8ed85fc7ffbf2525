"""What every raw-dataset builder shares: find the files, read and check them, standardise.

A subclass says where its files are (``RAW_FOLDER`` inside the TFDS manual dir) and lists its
image/label ``Pair``s; everything else (reading, size checks, slicing, binary tasks) happens here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from universeg_datasets import base, readers, standardize
from universeg_jax import preprocess


@dataclasses.dataclass(frozen=True)
class Pair:
    """One image file (2D, 3D, or 3D with channels) with its label file(s) (several are merged)."""

    subject: str
    image: Path
    labels: tuple[Path, ...]
    modalities: tuple[str, ...]  # one name per image channel (2D colour images count as one)
    label_values: Mapping[str, int | None]  # label name -> value in the label map (None: any non-zero)
    source: str = ""  # unique id when a subject has several images; defaults to the subject


class RawTaskBuilder(base.TaskBuilder, skip_registration=True):
    """Base of the raw MegaMedical builders. Subclasses set ``RAW_FOLDER``, ``VOLUMETRIC``,
    ``MANUAL_DOWNLOAD_INSTRUCTIONS`` and implement ``_pairs(root)``."""

    RAW_FOLDER = ""
    VOLUMETRIC = False

    def _pairs(self, root: Path) -> list[Pair]:
        raise NotImplementedError

    def _generate_examples(self, dl_manager):
        root = Path(dl_manager.manual_dir) / self.RAW_FOLDER
        if not root.is_dir():
            raise FileNotFoundError(
                f"{self.name}: raw data folder {root} not found.\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
            )
        pairs = self._pairs(root)
        if not pairs:
            raise FileNotFoundError(
                f"{self.name}: no images found under {root}.\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
            )
        for pair in pairs:
            yield from self._pair_examples(pair)

    def _pair_examples(self, pair: Pair) -> Iterator[tuple[str, dict]]:
        image, label = self._read_pair(pair)
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
            if self.VOLUMETRIC:
                views = standardize.volume_views(channel, label, self.builder_config.slices)
            else:
                views = [standardize.View(channel, label)]
            for view in views:
                yield from standardize.view_examples(
                    view,
                    pair.label_values,
                    dataset=self.name,
                    modality=modality,
                    subject=pair.subject,
                    source=pair.source or pair.subject,
                    size=self.builder_config.size,
                )

    def _read_pair(self, pair: Pair) -> tuple[np.ndarray, np.ndarray]:
        """The image and its label map (several label files merged by maximum), checked to match."""
        read = readers.read_volume if self.VOLUMETRIC else readers.read_image
        spatial = 3 if self.VOLUMETRIC else 2
        image = read(pair.image)
        label = None
        for path in pair.labels:
            one = read(path)
            if not self.VOLUMETRIC:
                one = preprocess.label_to_2d(one, name=f"label file {path}")
            standardize.check_same_size(image, one, str(pair.image), str(path), ndim=spatial)
            label = one if label is None else np.maximum(label, one)
        return image, np.rint(label).astype(np.int32)


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

