"""Random access to the examples of many built task datasets, grouped into tasks.

Reads prepared TFDS directories (``array_record``) with ``tfds.builder_from_directory``: training needs
no builder code, and no TensorFlow. Each dataset directory carries a ``task_index.json`` (written by the
builders in ``universeg_datasets``) listing the task and subject of every example, so opening a store
does not decode any image. Only ``open_tasks(..., build=True)`` imports the builders, to build the
embedded datasets (no download) on first use.

Examples are read from a *packed copy* of each dataset: two uint8 ``.npy`` arrays (images 0-255 and labels 0/1,
``(N, H, W, 1)``) written once from the TFDS files and memory-mapped, so that gathering the 65 examples of an
episode is a few memory copies instead of 65 record reads (and no remote reads when the data dir is on
``gs://``). The copy lives in ``<version dir>/packed`` for a local data dir and in the local cache
(``$UNIVERSEG_JAX_CACHE/packed``) for a remote one. Once packed, TFDS is not even imported.

List the tasks of built datasets with their sizes:

    python -m universeg_jax.data.tasks stardist_nuclei synthetic_tasks [--data_dir DIR] [--size 128]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from etils import epath

from universeg_jax.data.contract import DEFAULT_HELD_OUT, EMBEDDED_DATASETS, INDEX_FILE, SIZES
from universeg_jax.files import cache_dir

PACKED_ARRAYS = {"images": "image", "labels": "label"}  # packed array -> TFDS feature
BUILD_COMMAND = "python -m universeg_datasets.build {name} --config {config} --data_dir {data_dir}"


@dataclasses.dataclass(frozen=True)
class Task:
    """One binary segmentation task: which examples of the store belong to it, and their subjects."""

    id: str  # dataset/modality/label/axis
    dataset: str
    examples: tuple[int, ...]  # global example indices into the TaskStore
    subjects: tuple[str, ...]  # subject id of each example (aligned with examples)


@dataclasses.dataclass(frozen=True)
class PreparedDataset:
    """A built dataset directory and its task index."""

    name: str
    path: str  # .../<name>/<config>/<version>
    task_names: tuple[str, ...]
    example_task: np.ndarray  # int32, task position of every example
    example_subject: tuple[str, ...]

    @classmethod
    def load(cls, name: str, path: epath.Path) -> "PreparedDataset":
        index_path = path / INDEX_FILE
        try:
            index = json.loads(index_path.read_text())
            task_names = tuple(index["tasks"])
            example_task = np.asarray(index["example_task"], np.int32)
            example_subject = tuple(index["example_subject"])
        except (OSError, ValueError, KeyError) as err:
            raise ValueError(f"cannot read task index {index_path} ({err}); rebuild dataset {name!r}") from err
        if len(example_task) != len(example_subject) or (len(example_task) and example_task.max() >= len(task_names)):
            raise ValueError(f"task index {index_path} is inconsistent; rebuild dataset {name!r}")
        return cls(name, str(path), task_names, example_task, example_subject)

    def __len__(self) -> int:
        return len(self.example_task)

    @property
    def packed_dir(self) -> Path:
        """Where the packed copy lives: next to the TFDS files when they are local, else in the local cache."""
        path = epath.Path(self.path)
        if "://" not in self.path:
            return Path(self.path) / "packed"
        fingerprint = hashlib.sha1((self.path + (path / "dataset_info.json").read_text()).encode()).hexdigest()[:12]
        return cache_dir() / "packed" / self.name / path.parent.name / f"{path.name}-{fingerprint}"

    def pack(self) -> Path:
        """Writes the packed copy if it is missing (atomically: a temporary folder renamed when complete)."""
        target = self.packed_dir
        if all((target / f"{name}.npy").is_file() for name in PACKED_ARRAYS):
            return target
        import tensorflow_datasets as tfds  # only to pack: training reads the packed copy

        source = tfds.builder_from_directory(self.path).as_data_source(split="train")
        if len(source) != len(self):
            raise ValueError(
                f"{self.path} holds {len(source)} examples but its {INDEX_FILE} lists {len(self)}; "
                f"rebuild dataset {self.name!r}"
            )
        logging.info("packing %d examples of %s into %s", len(self), self.name, target)
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".packing-", dir=target.parent))
        try:
            first = source[0]
            arrays = {
                name: np.lib.format.open_memmap(
                    scratch / f"{name}.npy", "w+", np.uint8, (len(self),) + np.shape(first[feature])
                )
                for name, feature in PACKED_ARRAYS.items()
            }
            for index in range(len(self)):
                example = source[index]
                for name, feature in PACKED_ARRAYS.items():
                    arrays[name][index] = example[feature]
            for array in arrays.values():
                array.flush()
            del arrays
            try:
                scratch.rename(target)
            except OSError:  # another process packed it first
                if not all((target / f"{name}.npy").is_file() for name in PACKED_ARRAYS):
                    raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return target


class TaskStore:
    """Random access over the examples of several built datasets, with their tasks.

    ``store[i]`` is ``{"image": float32 (H,W,1) in [0,1], "label": float32 (H,W,1) in {0,1},
    "task": str, "subject": str}``; ``store.gather(indices)`` gives the raw uint8 images and labels of examples
    of one dataset, as the training pipeline wants them. Opening a store packs its datasets where needed.
    Picklable: the memory maps are reopened lazily in each process.
    """

    def __init__(self, datasets: Sequence[PreparedDataset]):
        self._datasets = tuple(datasets)
        names = [d.name for d in self._datasets]
        if len(set(names)) != len(names):
            raise ValueError(f"datasets must be distinct, got {names}")
        self._offsets = np.cumsum([0] + [len(d) for d in self._datasets])
        self.tasks: list[Task] = []
        for dataset, offset in zip(self._datasets, self._offsets):
            order = np.argsort(dataset.example_task, kind="stable")
            starts = np.searchsorted(dataset.example_task[order], np.arange(len(dataset.task_names) + 1))
            for position, task_name in enumerate(dataset.task_names):
                local = order[starts[position] : starts[position + 1]]
                self.tasks.append(
                    Task(
                        id=task_name,
                        dataset=dataset.name,
                        examples=tuple(int(offset + i) for i in local),
                        subjects=tuple(dataset.example_subject[i] for i in local),
                    )
                )
        for dataset in self._datasets:
            dataset.pack()
        self._arrays: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def datasets(self) -> tuple[str, ...]:
        return tuple(d.name for d in self._datasets)

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def _locate(self, index: int) -> tuple[int, int]:
        """(dataset position, index within that dataset) of a global example index."""
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"example index {index} out of range for a store of {len(self)} examples")
        position = int(np.searchsorted(self._offsets, index, side="right")) - 1
        return position, index - int(self._offsets[position])

    def __getitem__(self, index: int) -> dict:
        position, local = self._locate(index)
        dataset = self._datasets[position]
        images, labels = self._packed(position)
        return {
            "image": images[local].astype(np.float32) / 255.0,
            "label": labels[local].astype(np.float32),
            "task": dataset.task_names[dataset.example_task[local]],
            "subject": dataset.example_subject[local],
        }

    def gather(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """uint8 images (0-255) and labels (0/1), ``(n, H, W, 1)``, of examples that all belong to one dataset."""
        position, first = self._locate(indices[0])
        local = np.asarray(indices, np.int64) - (int(indices[0]) - first)
        if local.min() < 0 or local.max() >= len(self._datasets[position]):
            raise ValueError(f"examples {list(indices)} do not all belong to dataset {self._datasets[position].name!r}")
        images, labels = self._packed(position)
        return images[local], labels[local]

    def _packed(self, position: int) -> tuple[np.ndarray, np.ndarray]:
        if position not in self._arrays:
            dataset = self._datasets[position]
            folder = dataset.packed_dir
            arrays = tuple(np.load(folder / f"{name}.npy", mmap_mode="r") for name in PACKED_ARRAYS)
            if any(len(a) != len(dataset) for a in arrays):
                raise ValueError(
                    f"the packed copy {folder} does not match {dataset.path}: delete {folder} to repack it"
                )
            self._arrays[position] = arrays
        return self._arrays[position]

    def select(self, datasets: Iterable[str] | None = None, exclude: Iterable[str] = ()) -> "TaskStore":
        """A store with only the tasks of ``datasets`` (default: all), minus those of ``exclude``."""
        wanted = self.datasets if datasets is None else _names(datasets, "datasets")
        excluded = _names(exclude, "exclude")
        unknown = sorted((set(wanted) | set(excluded)) - set(self.datasets))
        if unknown:
            raise ValueError(f"datasets {unknown} are not in this store, which holds {list(self.datasets)}")
        return TaskStore([d for d in self._datasets if d.name in wanted and d.name not in excluded])

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_arrays"] = {}  # memory maps are reopened in worker processes, not copied
        return state

    def __repr__(self) -> str:
        return f"TaskStore(datasets={list(self.datasets)}, tasks={len(self.tasks)}, examples={len(self)})"


def _names(names: Iterable[str] | str, argument: str) -> tuple[str, ...]:
    if isinstance(names, str):
        return (names,)
    names = tuple(names)
    if not all(isinstance(n, str) for n in names):
        raise TypeError(f"{argument} must be dataset names (strings), got {names!r}")
    return names


def default_data_dir() -> epath.Path:
    """``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets`` (TFDS's own default)."""
    return epath.Path(os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")).expanduser()


def open_tasks(datasets, data_dir=None, *, build: bool = True, size: int = 128) -> TaskStore:
    """A TaskStore over built ``datasets`` (names, or ``name/config`` for a config other than ``size<N>``).

    Embedded datasets (``EMBEDDED_DATASETS``) are built on first use when ``build`` is true. A raw
    MegaMedical dataset must have been built from its downloaded files first: the error says how.
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    names = _names(datasets, "datasets")
    if not names:
        raise ValueError("datasets is empty: name at least one dataset, e.g. EMBEDDED_DATASETS")
    data_dir = epath.Path(data_dir).expanduser() if data_dir else default_data_dir()
    prepared = []
    for spec in names:
        name, _, config = spec.partition("/")
        config = config or f"size{size}"
        embedded = build and name in EMBEDDED_DATASETS
        version = None
        if embedded:
            from universeg_datasets import registry  # builder code: its version, and building if needed

            # Rebuilt when the builder is newer than what is on disk (stale data otherwise).
            version = str(registry.builder_class(name).VERSION)
        path = _find_built(data_dir, name, config, version)
        if path is None:
            if not embedded:
                raise FileNotFoundError(_not_built_message(name, config, data_dir, build))
            registry.build(name, config=config, data_dir=data_dir)
            path = _find_built(data_dir, name, config, version)
        prepared.append(PreparedDataset.load(name, path))
    return TaskStore(prepared)


def dataset_names(spec: Iterable[str] | str) -> tuple[str, ...]:
    """The names in a config's ``data.datasets`` / ``data.held_out``: a tuple of names, each of which may list
    several comma-separated (``--config.data.datasets=a,b`` gives ``("a,b",)``); ``"embedded"`` stands for every
    dataset that needs no download (``EMBEDDED_DATASETS``)."""
    names = []
    for name in (n.strip() for item in _names(spec, "datasets") for n in item.split(",")):
        if name:
            names.extend(EMBEDDED_DATASETS if name == "embedded" else [name])
    return tuple(dict.fromkeys(names))


def open_training_stores(datasets, held_out, data_dir: str = "", *, size: int = 128, build: bool = True):
    """(training store, held-out store or None) over the datasets named by a config's ``data.datasets`` and
    ``data.held_out`` (see ``dataset_names``), opened together; held-out datasets never reach training."""
    held_out_names = dataset_names(held_out)
    names = tuple(dict.fromkeys(dataset_names(datasets) + held_out_names))
    if not set(names) - set(held_out_names):
        raise ValueError(
            f"config data.datasets={datasets!r} leaves no dataset to train on after removing data.held_out={held_out!r}"
        )
    root = epath.Path(data_dir) if data_dir else default_data_dir()
    known = set(EMBEDDED_DATASETS) | ({p.name for p in root.iterdir() if p.is_dir()} if root.exists() else set())
    unknown = sorted(n for n in names if n.partition("/")[0] not in known)  # "name/config" names a TFDS config
    if unknown:
        raise ValueError(
            f"unknown datasets {unknown} in data.datasets/data.held_out: not embedded "
            f"({', '.join(EMBEDDED_DATASETS)}) and not built in {root}"
        )
    store = open_tasks(names, data_dir or None, size=size, build=build)
    train_store, held_out_store = split_by_dataset(store, held_out_names)
    return train_store, (held_out_store if held_out_names else None)


def split_by_dataset(store: TaskStore, held_out: Iterable[str] = DEFAULT_HELD_OUT) -> tuple[TaskStore, TaskStore]:
    """(training store, held-out store): held-out datasets' tasks never appear in training."""
    held_out = _names(held_out, "held_out")
    return store.select(exclude=held_out), store.select(datasets=held_out)


def _find_built(data_dir: epath.Path, name: str, config: str, version: str | None = None) -> epath.Path | None:
    """The complete version directory of ``name/config`` (with dataset info and task index): ``version`` if
    given, else the newest."""
    folder = data_dir / name / config
    versions = []
    for path in folder.glob("*.*.*") if folder.is_dir() else ():
        parts = path.name.split(".")
        if version is not None and path.name != version:
            continue
        if all(p.isdigit() for p in parts) and (path / "dataset_info.json").is_file() and (path / INDEX_FILE).is_file():
            versions.append((tuple(int(p) for p in parts), path))
    return max(versions)[1] if versions else None


def _not_built_message(name: str, config: str, data_dir: epath.Path, build: bool) -> str:
    command = BUILD_COMMAND.format(name=name, config=config, data_dir=data_dir)
    if name in EMBEDDED_DATASETS:
        return f"dataset {name}/{config} is not built in {data_dir} (build=False). Build it with: {command}"
    message = (
        f"dataset {name}/{config} is not built in {data_dir}. It is built from raw files you download: "
        f"put them under {data_dir / 'downloads' / 'manual'} (or pass --manual_dir) as described below "
        f"and in docs/datasets.md, then run: {command}"
    )
    try:
        from universeg_datasets import registry

        builder = registry.builder_class(name)
    except (ImportError, ValueError) as err:
        return f"{message}\n({err})"
    return f"{message}\n{builder.MANUAL_DOWNLOAD_INSTRUCTIONS}"


def task_sizes(store: TaskStore) -> list[tuple[str, int, int]]:
    """(task id, number of examples, number of distinct subjects) of every task in the store."""
    return [(t.id, len(t.examples), len(set(t.subjects))) for t in store.tasks]


def built_sizes(datasets, data_dir=None) -> list[int]:
    """The sizes at which every one of ``datasets`` is built (a ``name/config`` entry is built or not at all)."""
    data_dir = epath.Path(data_dir).expanduser() if data_dir else default_data_dir()
    specs = [spec.partition("/") for spec in _names(datasets, "datasets")]
    return [
        size for size in SIZES if all(_find_built(data_dir, name, config or f"size{size}") for name, _, config in specs)
    ]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m universeg_jax.data.tasks", description="List the tasks of built datasets with their sizes."
    )
    parser.add_argument("datasets", nargs="+", help="dataset names, or name/config")
    parser.add_argument("--data_dir", help="TFDS data dir (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        choices=SIZES,
        help="image size of the build to read (default: every size all the datasets are built at)",
    )
    args = parser.parse_args(argv)
    try:
        sizes = [args.size] if args.size else built_sizes(args.datasets, args.data_dir) or [SIZES[1]]
        for size in sizes:
            store = open_tasks(args.datasets, args.data_dir, build=False, size=size)
            print(f"size {size}\ntask\texamples\tsubjects")
            for task, examples, subjects in task_sizes(store):
                print(f"{task}\t{examples}\t{subjects}")
            print(f"{len(store.tasks)} tasks, {len(store)} examples")
    except (ValueError, OSError) as err:  # not built, bad name: a message, not a traceback
        parser.exit(2, f"{parser.prog}: error: {err}\n")


if __name__ == "__main__":
    main()
