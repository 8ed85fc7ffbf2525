"""Episodes for UniverSeg training: a grain pipeline over a ``TaskStore``.

An episode is one task, ``support_size`` support pairs and one query pair, all from different subjects. The
host only samples and gathers: a task by weight, its subjects, one example of each, copied as the store's uint8
arrays (4x smaller than float32). Augmentation and the conversion to float happen on the training devices
(``universeg_jax.data.augment.EpisodeAugmenter``, keyed by the episode index that each episode carries).

The pipeline is a ``grain.MapDataset`` indexed by episode number, so episode ``i`` is a pure function of
``(seed, i)``. Batches are built from consecutive episodes and then dealt out to processes: global batch ``t`` is
episodes ``[t * B, (t + 1) * B)`` whatever the number of processes, and process ``p`` holds its contiguous slice.
The data position of a run is therefore its step: a resumed run starts at batch ``step`` and sees exactly the
episodes an uninterrupted run would, on any number of hosts.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence

import grain
import numpy as np
from absl import flags

# Episode indices travel as int32 (JAX's default integer) and key the augmentation.
MAX_EPISODES = 2**31


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
    for name, table in (
        ("data.dataset_weights", set(dataset_weights) - datasets),
        ("data.task_weights", set(task_weights) - {t.id for t in tasks}),
    ):
        if table:
            raise ValueError(f"{name} names {sorted(table)}, which are not among the training tasks")
    per_task = np.array([task_weights.get(t.id, 1.0) for t in tasks], np.float64)
    mass = defaultdict(float)
    for task, weight in zip(tasks, per_task):
        mass[task.dataset] += weight
    probs = np.array(
        [
            dataset_weights.get(t.dataset, 1.0) * w / mass[t.dataset] if mass[t.dataset] > 0 else 0.0
            for t, w in zip(tasks, per_task)
        ]
    )
    if probs.sum() <= 0:
        raise ValueError("data.dataset_weights / data.task_weights give every training task weight 0")
    return probs / probs.sum()


def usable_tasks(tasks: Sequence, support_size: int, repeat_subjects: bool = False) -> list:
    """Tasks with enough subjects for an episode (others are dropped with a warning).

    Fails if a whole dataset has no such task. Without ``repeat_subjects`` subjects are not repeated within an
    episode, so a task needs one subject per support pair plus one for the query; with it, a task needs two
    subjects (the query's and at least one other).
    """
    need = 2 if repeat_subjects else support_size + 1
    keep = [t for t in tasks if len(set(t.subjects)) >= need]
    if len(keep) < len(tasks):
        logging.warning(
            "%d of %d tasks have fewer than %d subjects and are not sampled", len(tasks) - len(keep), len(tasks), need
        )
    for dataset in sorted({t.dataset for t in tasks} - {t.dataset for t in keep}):
        largest = max(len(set(t.subjects)) for t in tasks if t.dataset == dataset)
        raise ValueError(
            f"data.support_size={support_size} is larger than every task of dataset {dataset!r}: an episode needs "
            f"support_size + 1 = {need} different subjects, its largest task has {largest}. "
            "Lower data.support_size, leave the dataset out, or set data.repeat_subjects=True."
        )
    return keep


class EpisodeSampler:
    """``(episode_index, rng) -> episode``: the grain ``random_map`` that builds one episode (picklable).

    Returns a dict of the store's uint8 arrays, ``query`` and ``query_label`` ``(H, W, 1)``, ``support_images``
    and ``support_labels`` ``(S, H, W, 1)`` (images 0-255, labels 0/1), and ``episode``, the episode index.
    With ``repeat_subjects``, a task with fewer than ``S + 1`` subjects fills its support with every other
    subject, then repeats (each copy gets its own in-task augmentation); the query's subject is never in its
    support.
    """

    def __init__(
        self, store, tasks: Sequence, support_size: int, probabilities: np.ndarray, repeat_subjects: bool = False
    ):
        self.store = store
        self.tasks = list(tasks)
        self.support_size = support_size
        self.repeat_subjects = repeat_subjects
        self.probabilities = np.asarray(probabilities, np.float64)
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
        if len(groups) > self.support_size:
            chosen = rng.choice(len(groups), size=self.support_size + 1, replace=False)
        else:  # repeat_subjects: every other subject once, then repeats; the query last
            order = rng.permutation(len(groups))
            others = order[1:]
            chosen = np.concatenate([others, rng.choice(others, self.support_size - len(others)), order[:1]])
        return task, [int(rng.choice(groups[g])) for g in chosen]

    def __call__(self, index: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        _, indices = self.choose(rng)
        images, labels = self.store.gather(indices)
        return {
            "query": images[-1],
            "query_label": labels[-1],
            "support_images": images[:-1],
            "support_labels": labels[:-1],
            "episode": np.int32(index),
        }


def episode_batches(
    store,
    *,
    support_size: int,
    batch_size: int,
    seed: int,
    dataset_weights=None,
    task_weights=None,
    repeat_subjects: bool = False,
    process_index: int = 0,
    process_count: int = 1,
) -> grain.MapDataset:
    """Endless ``MapDataset`` of this process's share of each global batch of ``batch_size`` episodes.

    Item ``t`` is this process's slice of global batch ``t``.
    """
    if batch_size % process_count:
        raise ValueError(f"batch size {batch_size} must be divisible by the number of processes {process_count}")
    tasks = usable_tasks(store.tasks, support_size, repeat_subjects)
    sampler = EpisodeSampler(
        store, tasks, support_size, task_probabilities(tasks, dataset_weights, task_weights), repeat_subjects
    )
    local = batch_size // process_count
    return (
        grain.MapDataset.range(MAX_EPISODES)
        .random_map(sampler, seed=seed)
        .batch(local, drop_remainder=True)[process_index::process_count]
    )


def iterate(dataset: grain.MapDataset, *, start: int = 0, num_workers: int, prefetch: int) -> Iterator:
    """Iterator over ``dataset`` from item ``start``; ``num_workers > 0`` builds batches in that many worker
    processes."""
    iter_ds = dataset[start:].to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=prefetch))
    if num_workers > 0:
        # grain's worker processes read absl flags; outside an absl app (tests, notebooks) use the defaults.
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        options = grain.MultiprocessingOptions(num_workers=num_workers, per_worker_buffer_size=prefetch)
        iter_ds = iter_ds.mp_prefetch(options, worker_init_fn=_worker_init)
    return iter(iter_ds)


def _worker_init(worker_index: int, worker_count: int) -> None:
    """Data workers ignore SIGTERM and SIGINT and exit when the training process is gone.

    A preemption notice (``scancel``, a VM shutdown, Ctrl-C in a terminal) reaches the whole process group: the
    training process must be able to finish its step and save, so its workers must not die under it. A worker
    whose parent died without cleaning up (SIGKILL, OOM kill) exits on its own.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


class DevicePrefetcher:
    """Places the next ``size`` batches on the devices ahead of use, from a background thread.

    ``place(host_batch) -> device batch`` (e.g. ``parallel.global_batch``) starts the host-to-device copy, so the
    transfer of batch t+1 overlaps step t. ``wait_seconds`` accumulates the time ``next()`` spent blocked, i.e.
    the time the training loop waited for input.
    """

    def __init__(self, iterator: Iterator, place: Callable, size: int = 2):
        if size < 1:
            raise ValueError(f"device prefetch size must be >= 1, got {size}")
        self._iterator, self._place = iterator, place
        self._queue: queue.Queue = queue.Queue(maxsize=size)
        self._stop = threading.Event()
        self.wait_seconds = 0.0
        self._thread = threading.Thread(target=self._fill, name="device-prefetch", daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        try:
            while not self._stop.is_set():
                item = (self._place(next(self._iterator)), None)
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as error:  # handed to the consumer, which re-raises it
            self._queue.put((None, error))

    def __iter__(self):
        return self

    def __next__(self):
        started = time.perf_counter()
        batch, error = self._queue.get()
        self.wait_seconds += time.perf_counter() - started
        if error is not None:
            raise error
        return batch

    def close(self) -> None:
        self._stop.set()
        while True:  # unblock a producer waiting on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=10)
        close = getattr(self._iterator, "close", None)
        if close is not None:
            close()
