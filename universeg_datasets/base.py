"""The base TFDS builder every task dataset shares: features, configs, array_record, the task index.

Every builder writes one ``train`` split of standardised examples (see ``standardize``) plus a
``task_index.json`` next to the TFDS files, so that readers can group examples by task without decoding
the images (``universeg_jax.data.tasks`` reads it). Both are written inside TFDS's temporary build
directory, which TFDS renames only when the whole build succeeded: a failed build leaves nothing to read.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
import threadpoolctl

from universeg_jax import preprocess
from universeg_jax.data.contract import INDEX_FILE, SIZES

DEFAULT_SIZE = 128
BYTES = tfds.features.Encoding.BYTES


@dataclasses.dataclass(eq=False)
class TaskConfig(tfds.core.BuilderConfig):
    """``size``: output side in pixels; ``slices``: slices per axis cut from each volume (1 = middle)."""

    size: int = DEFAULT_SIZE
    slices: int = 1


def config_name(size: int, variant: str = "") -> str:
    """Config names are ``size128`` or ``<variant>_size128``: the reader picks ``size<N>`` by default."""
    return f"{variant}_size{size}" if variant else f"size{size}"


def size_configs(config_class=TaskConfig, variant: str = "", sizes=SIZES, **fields) -> list:
    """One config per output size, with the same other ``fields``."""
    description = fields.pop("description", "")
    return [
        config_class(name=config_name(size, variant), size=size, description=description, **fields) for size in sizes
    ]


def task_features(size: int) -> tfds.features.FeaturesDict:
    """The documented example layout (see docs/datasets.md)."""
    return tfds.features.FeaturesDict(
        {
            # Raw bytes: TFDS's default stores every pixel as an int64 in a proto (slow to write and read).
            "image": tfds.features.Tensor(shape=(size, size, 1), dtype=np.uint8, encoding=BYTES),
            "label": tfds.features.Tensor(shape=(size, size, 1), dtype=np.uint8, encoding=BYTES),
            "task": tfds.features.Text(),
            "subject": tfds.features.Text(),
            "modality": tfds.features.Text(),
            "label_name": tfds.features.Text(),
            "axis": tfds.features.Scalar(dtype=np.int32),
            "slice": tfds.features.Scalar(dtype=np.int32),
        }
    )


class TaskBuilder(tfds.core.ShardBasedBuilder, skip_registration=True):
    """Base builder: subclasses set ``BUILDER_CONFIGS`` if needed and implement ``_generate_examples``.

    A ``ShardBasedBuilder`` streams examples straight into the file in generation order. (The
    ``GeneratorBasedBuilder`` shuffler spills to disk through TensorFlow beyond 1 GB, which fails
    without TensorFlow installed.)
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = size_configs()
    DEFAULT_BUILDER_CONFIG_NAME = config_name(DEFAULT_SIZE)
    HOMEPAGE = ""

    def __init__(self, *, file_format: str = "array_record", **kwargs: Any):
        super().__init__(file_format=file_format, **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=(self.__doc__ or "").strip(),
            features=task_features(self.builder_config.size),
            homepage=self.HOMEPAGE or None,
            disable_shuffling=True,  # examples stay in generation order: reproducible builds
            metadata=tfds.core.MetadataDict(self._metadata()),  # metadata.json next to the data
        )

    def _metadata(self) -> dict:
        """How the examples were made, beyond the version; a build may add to it (e.g. STARE's annotator)."""
        return {"resize": preprocess.RESIZE_MODE}

    def _generate_examples(self, dl_manager) -> Iterator[tuple[str, dict]]:
        raise NotImplementedError

    def _shard_iterators_per_split(self, dl_manager):
        return {"train": [functools.partial(self._checked_examples, dl_manager)]}

    def _checked_examples(self, dl_manager) -> Iterator[tuple[str, dict]]:
        """The subclass's examples; an empty dataset is an error (it would silently train on nothing)."""
        count = 0
        for key, example in self._generate_examples(dl_manager):
            count += 1
            yield key, example
        if count == 0:
            raise ValueError(f"{self.name}/{self.builder_config.name}: no examples were generated")

    def _download_and_prepare(self, dl_manager, download_config) -> None:
        # Builders do many small matrix products (resizing): one BLAS thread is ~5x faster on a busy machine.
        with threadpoolctl.threadpool_limits(1, "blas"):
            super()._download_and_prepare(dl_manager, download_config)
        # self.data_path is still TFDS's temporary directory here.
        write_task_index(self.data_path, self.as_data_source(split="train"))


def write_task_index(directory, source) -> None:
    """Write ``task_index.json``: the task and subject of every example, read back from the written data."""
    tasks: dict[str, int] = {}
    example_task, example_subject = [], []
    for index in range(len(source)):
        example = source[index]
        task = _text(example["task"])
        example_task.append(tasks.setdefault(task, len(tasks)))
        example_subject.append(_text(example["subject"]))
    index = {"tasks": list(tasks), "example_task": example_task, "example_subject": example_subject}
    (directory / INDEX_FILE).write_text(json.dumps(index))  # inside TFDS's temporary build directory


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
