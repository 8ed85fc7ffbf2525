"""Episodes for UniverSeg training: a grain pipeline over a ``TaskStore``.

An episode is one task, ``support_size`` support pairs and one query pair, all from different subjects. The
pipeline is a ``grain.MapDataset`` indexed by episode number, so episode ``i`` is a pure function of
``(seed, i)`` and the iterator state is just a position: it is saved with the model and restored exactly.

Batches are built from consecutive episodes and then dealt out to processes: global batch ``t`` is episodes
``[t * B, (t + 1) * B)`` whatever the number of processes, and process ``p`` holds its contiguous slice. A run on
one host and a run on many hosts therefore see the same global batches.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence

import grain
import numpy as np
from absl import flags

from universeg_jax.data.augment import Augmenter


def parse_weights(spec: str | Mapping[str, float] | None, *, what: str) -> dict[str, float]:
    """``"name=weight,name=weight"`` (or a mapping) -> dict; weights must be finite and >= 0."""
    if not spec:
        return {}
    if isinstance(spec, str):
        items = {}
        for part in spec.split(","):
            name, sep, value = part.strip().rpartition("=")
            if not sep or not name:
                raise ValueError(f"{what} must look like 'name=weight,name=weight', got {spec!r}")
            try:
                items[name] = float(value)
            except ValueError:
                raise ValueError(f"{what}: weight {value!r} of {name!r} is not a number") from None
    else:
        items = {str(k): float(v) for k, v in spec.items()}
    for name, weight in items.items():
        if not np.isfinite(weight) or weight < 0:
            raise ValueError(f"{what}: weight of {name!r} must be finite and >= 0, got {weight}")
    return items


def task_probabilities(tasks: Sequence, dataset_weights=None, task_weights=None) -> np.ndarray:
    """P(task) = P(dataset) * P(task | dataset).

    Datasets get ``dataset_weights`` (default 1 each), tasks within a dataset share their dataset's mass in
    proportion to ``task_weights`` (default 1 each). Weighting by dataset first keeps large datasets with many
    tasks from swamping the rest (the collapse users report when sampling tasks uniformly).
    """
    dataset_weights = parse_weights(dataset_weights, what="data.dataset_weights")
    task_weights = parse_weights(task_weights, what="data.task_weights")
    datasets = {t.dataset for t in tasks}
    for name, table in (("data.dataset_weights", set(dataset_weights) - datasets),
                        ("data.task_weights", set(task_weights) - {t.id for t in tasks})):
        if table:
            raise ValueError(f"{name} names {sorted(table)}, which are not among the training tasks")
    per_task = np.array([task_weights.get(t.id, 1.0) for t in tasks], np.float64)
    mass = defaultdict(float)
    for task, weight in zip(tasks, per_task):
        mass[task.dataset] += weight
    probs = np.array(
        [dataset_weights.get(t.dataset, 1.0) * w / mass[t.dataset] if mass[t.dataset] > 0 else 0.0
         for t, w in zip(tasks, per_task)]
    )
    if probs.sum() <= 0:
        raise ValueError("data.dataset_weights / data.task_weights give every training task weight 0")
    return probs / probs.sum()


def usable_tasks(tasks: Sequence, support_size: int) -> list:
    """Tasks with at least ``support_size + 1`` subjects (others are dropped with a warning).

    Fails if a whole dataset has no such task.

    Subjects are not repeated within an episode, so a task needs one subject per support pair plus one for
    the query.
    """
    need = support_size + 1
    keep = [t for t in tasks if len(set(t.subjects)) >= need]
    if len(keep) < len(tasks):
        logging.warning("%d of %d tasks have fewer than %d subjects and are not sampled",
                        len(tasks) - len(keep), len(tasks), need)
    for dataset in sorted({t.dataset for t in tasks} - {t.dataset for t in keep}):
        largest = max(len(set(t.subjects)) for t in tasks if t.dataset == dataset)
        raise ValueError(
            f"data.support_size={support_size} is larger than every task of dataset {dataset!r}: an episode needs "
            f"support_size + 1 = {need} different subjects, its largest task has {largest}. "
            "Lower data.support_size or leave the dataset out."
        )
    return keep


class EpisodeSampler:
    """``(episode_index, rng) -> episode``: the grain ``random_map`` that builds one episode (picklable).

    Returns a dict of float32 arrays: ``query`` and ``query_label`` ``(H, W, 1)``, ``support_images`` and
    ``support_labels`` ``(S, H, W, 1)``.
    """

    def __init__(self, store, tasks: Sequence, support_size: int, probabilities: np.ndarray,
                 in_task: Augmenter | None, task: Augmenter | None):
        self.store = store
        self.tasks = list(tasks)
        self.support_size = support_size
        self.probabilities = np.asarray(probabilities, np.float64)
        self.in_task, self.task = in_task, task
        # Per task: the example indices of each subject, so that subjects are drawn first, then one example each.
        self.subjects = []
        for t in self.tasks:
            groups = defaultdict(list)
            for example, subject in zip(t.examples, t.subjects):
                groups[subject].append(example)
            self.subjects.append([np.asarray(v) for v in groups.values()])

    def choose(self, rng: np.random.Generator) -> tuple[int, list[int]]:
        """A task (by weight) and ``support_size + 1`` of its examples from different subjects (query last)."""
        task = int(rng.choice(len(self.tasks), p=self.probabilities))
        groups = self.subjects[task]
        chosen = rng.choice(len(groups), size=self.support_size + 1, replace=False)
        return task, [int(rng.choice(groups[g])) for g in chosen]

    def __call__(self, index: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        _, indices = self.choose(rng)
        examples = [self.store[i] for i in indices]
        images = np.stack([np.asarray(e["image"], np.float32) for e in examples])
        labels = np.stack([np.asarray(e["label"], np.float32) for e in examples])
        if self.in_task is not None:
            images, labels = self.in_task(rng, images, labels)
        if self.task is not None:
            images, labels = self.task(rng, images, labels)
        return {
            "query": images[-1],
            "query_label": labels[-1],
            "support_images": images[:-1],
            "support_labels": labels[:-1],
        }


def episode_batches(
    store,
    *,
    support_size: int,
    batch_size: int,
    seed: int,
    dataset_weights=None,
    task_weights=None,
    in_task=None,
    task_augmentation=None,
    process_index: int = 0,
    process_count: int = 1,
) -> grain.MapDataset:
    """Endless ``MapDataset`` of this process's share of each global batch of ``batch_size`` episodes."""
    if batch_size % process_count:
        raise ValueError(f"batch size {batch_size} must be divisible by the number of processes {process_count}")
    tasks = usable_tasks(store.tasks, support_size)
    sampler = EpisodeSampler(
        store,
        tasks,
        support_size,
        task_probabilities(tasks, dataset_weights, task_weights),
        Augmenter(in_task, shared=False) if in_task else None,
        Augmenter(task_augmentation, shared=True) if task_augmentation else None,
    )
    local = batch_size // process_count
    return (
        grain.MapDataset.range(sys.maxsize)
        .random_map(sampler, seed=seed)
        .batch(local, drop_remainder=True)[process_index::process_count]
    )


def iterate(dataset: grain.MapDataset, *, num_workers: int, prefetch: int) -> grain.DatasetIterator:
    """Checkpointable iterator; ``num_workers > 0`` builds episodes in that many worker processes."""
    iter_ds = dataset.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=prefetch))
    if num_workers > 0:
        # grain's worker processes read absl flags; outside an absl app (tests, notebooks) use the defaults.
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        options = grain.MultiprocessingOptions(num_workers=num_workers, per_worker_buffer_size=prefetch)
        iter_ds = iter_ds.mp_prefetch(options, worker_init_fn=_exit_with_parent)
    return iter(iter_ds)


def _exit_with_parent(worker_index: int, worker_count: int) -> None:
    """Makes a data worker exit when the training process dies without cleaning up (SIGKILL, OOM kill)."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
