"""Evaluation harness: Dice on held-out tasks for UniverSeg and the classical baselines, on the same draws.

    report = evaluate(model, held_out_store, config)   # Python
    run(config, workdir)                                # main's ``evaluate`` mode: JSON + CSV + PNG in workdir

Its files, tables and figures are ``universeg_jax.report``.

How a task is evaluated (``config`` is ``configs/evaluate.py``):

* Draw ``d`` of a task (``d < config.draws``) splits its examples by subject, seeded by
  ``(config.seed, task id, d)``: whole subjects become queries (at most ``config.max_queries`` query examples,
  fewer when the task is small so that the largest support size still fits) and the remaining subjects form the
  support pool. So a query is never in its own support set and no support example shares a subject with a query.
  A task with a single subject id falls back to splitting by example.
* Support sets are prefixes of seeded permutations of the pool: the support of size N in draw d is the first N of
  permutation 0 (so the size sweep is nested: the support of size 2 contains that of size 1), and ensemble member
  j uses permutation j. Size N is evaluated on a task only if its pool holds N examples.
* Ensembling with K members averages the probabilities of K support sets of ``config.ensemble_support_size``.
* Every method (model and baselines) sees exactly the same queries and support sets; the prediction is
  ``probability >= config.threshold`` and Dice (``universeg_jax.metrics``; both empty -> 1.0) is averaged over the
  draw's queries. Spread is reported over draws, over tasks and over datasets.
* The headline number is the mean over datasets (summary scope ``datasets``): each dataset's mean over its tasks,
  then the mean of those with every dataset weighted equally, so a dataset with many tasks (e.g. one per label
  and axis) does not outweigh one with a single task.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
import zlib
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from universeg_jax import baselines, metrics
from universeg_jax.model import UniverSeg
from universeg_jax.preprocess import DEFAULT_SIZE
from universeg_jax.report import HEADLINE, Report, headline_table, write_report

MODEL_NAME = "universeg"
QUALITATIVE_SUPPORT = 3  # support pairs shown per task in the qualitative grid


# ---------------------------------------------------------------------------------------------------------------
# The model as a predictor.


class ModelPredictor:
    """A UniverSeg model behind the predictor interface of ``universeg_jax.baselines``.

    All queries of a call share one support set (support batch 1). Queries go through in chunks of at most
    ``batch_size`` and at most ``max_pairs // S`` (memory grows with queries x support size), padded to a power of
    two, so each support size compiles a handful of shapes at most.
    """

    def __init__(self, model: UniverSeg, *, batch_size: int = 8, max_pairs: int = 64, name: str = MODEL_NAME):
        if not isinstance(model, UniverSeg):
            raise TypeError(f"model must be a UniverSeg, got {type(model).__name__}")
        for arg, value in (("batch_size", batch_size), ("max_pairs", max_pairs)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{arg} must be a positive integer, got {value!r}")
        self.name, self.batch_size, self.max_pairs, self.levels = name, int(batch_size), int(max_pairs), model.levels
        graphdef, self._params = nnx.split(model)

        def probabilities(params, queries, support_images, support_labels):
            logits = nnx.merge(graphdef, params)(queries, support_images, support_labels)
            return jax.nn.sigmoid(logits[..., 0])

        self._forward = jax.jit(probabilities)

    def __call__(self, support_images, support_labels, queries) -> np.ndarray:
        images, labels, queries = baselines.check_inputs(support_images, support_labels, queries)
        factor = 2 ** (self.levels - 1)
        if images.shape[1] % factor or images.shape[2] % factor:
            raise ValueError(f"image size {images.shape[1:3]} must be a multiple of {factor} for this model")
        step = max(1, min(self.batch_size, self.max_pairs // len(images)))
        images, labels = jnp.asarray(images[None]), jnp.asarray(labels[None])
        out = []
        for start in range(0, len(queries), step):
            chunk = queries[start : start + step]
            padded = min(step, 1 << (len(chunk) - 1).bit_length())
            chunk = np.concatenate([chunk, np.zeros((padded - len(chunk),) + chunk.shape[1:], chunk.dtype)])
            out.append(np.asarray(self._forward(self._params, jnp.asarray(chunk), images, labels)))
        return np.concatenate(out)[: len(queries)]


# ---------------------------------------------------------------------------------------------------------------
# Draws: which examples are queries and which are support, per task and draw.


@dataclasses.dataclass(frozen=True)
class Draw:
    """One random split of a task. Indices are store indices (as in ``Task.examples``)."""

    task: str
    draw: int
    queries: tuple[int, ...]
    pool: tuple[int, ...]  # support candidates: examples of subjects with no query
    orders: tuple[tuple[int, ...], ...]  # permutations of the pool; support j of size N is orders[j][:N]

    def support(self, size: int, member: int = 0) -> tuple[int, ...]:
        if size > len(self.pool):
            raise ValueError(f"task {self.task}: support size {size} exceeds the pool of {len(self.pool)} examples")
        return self.orders[member][:size]


def subject_groups(task) -> list[list[int]]:
    """The task's examples grouped by subject (order of first appearance); one group per example when the task
    has a single subject id (nothing to separate then)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for example, subject in zip(task.examples, task.subjects):
        groups[subject].append(int(example))
    if len(groups) < 2:
        return [[int(e)] for e in task.examples]
    return list(groups.values())


def make_draw(task, draw: int, *, seed: int, max_queries: int, support_sizes: Sequence[int], members: int) -> Draw:
    """Split ``task`` into queries and a support pool by subject, reproducibly from ``(seed, task.id, draw)``.

    Query subjects are taken until there are ``min(max_queries, examples - largest)`` queries (at least one),
    where ``largest`` is the largest of ``support_sizes`` smaller than the task; never the last subject. A subject
    that overshoots ``max_queries`` gives a seeded subset of its examples (its other examples are then used
    nowhere, since they share its subject). ``members``: how many support orders (ensemble members) to draw.
    """
    if len(task.examples) < 2:
        raise ValueError(f"task {task.id} has {len(task.examples)} example(s); evaluation needs at least 2")
    rng = np.random.default_rng([seed, zlib.crc32(task.id.encode()), draw])
    groups = subject_groups(task)
    order = rng.permutation(len(groups))
    largest = max([n for n in support_sizes if n < len(task.examples)], default=1)
    wanted = max(1, min(max_queries, len(task.examples) - largest))
    queries, taken = [], 0
    while len(queries) < wanted and taken < len(groups) - 1:
        queries.extend(groups[order[taken]])
        taken += 1
    if len(queries) > max_queries:
        queries = rng.choice(queries, max_queries, replace=False).tolist()
    pool = [e for g in order[taken:] for e in groups[g]]
    orders = tuple(tuple(int(e) for e in rng.permutation(pool)) for _ in range(members))
    return Draw(task.id, draw, tuple(sorted(int(q) for q in queries)), tuple(pool), orders)


# ---------------------------------------------------------------------------------------------------------------
# Running the methods.


def config_dict(config) -> dict:
    """Plain JSON-able copy of a ConfigDict (or mapping)."""
    items = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in items.items()}


def _ints(config, field: str) -> list[int]:
    values = getattr(config, field)
    if isinstance(values, (int, np.integer)):
        values = [values]
    values = list(values)
    if not values or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        raise ValueError(f"config.{field} must be a non-empty list of integers, got {values!r}")
    if min(values) < 1:
        raise ValueError(f"config.{field} must be >= 1, got {values!r}")
    return sorted(set(int(v) for v in values))


def _positive_int(config, field: str) -> int:
    value = getattr(config, field)
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"config.{field} must be a positive integer, got {value!r}")
    return int(value)


def check_config(config) -> None:
    """Fail fast, before any data is read or model run, on every config value a user can get wrong."""
    for field in ("support_sizes", "ensemble_sizes"):
        _ints(config, field)
    for field in ("draws", "ensemble_support_size", "max_queries", "batch_size"):
        _positive_int(config, field)
    if not isinstance(config.size, (int, np.integer)) or isinstance(config.size, bool) or config.size < 0:
        raise ValueError(
            f"config.size must be a positive integer, or 0 for the size the weights were trained at, "
            f"got {config.size!r}"
        )
    if not isinstance(config.seed, (int, np.integer)) or config.seed < 0:
        raise ValueError(f"config.seed must be a non-negative integer, got {config.seed!r}")
    if not isinstance(config.qualitative_tasks, (int, np.integer)) or config.qualitative_tasks < 0:
        raise ValueError(f"config.qualitative_tasks must be a non-negative integer, got {config.qualitative_tasks!r}")
    if not 0 < config.threshold < 1:
        raise ValueError(f"config.threshold must be strictly between 0 and 1, got {config.threshold!r}")
    unknown = [b for b in config.baselines if b not in baselines.BASELINES]
    if isinstance(config.baselines, str) or unknown:
        raise ValueError(
            f"config.baselines: unknown baseline(s) {unknown or config.baselines!r}; "
            f"known baselines: {', '.join(baselines.BASELINES)}"
        )
    if isinstance(config.datasets, str) or not config.datasets or not all(isinstance(d, str) for d in config.datasets):
        raise ValueError(f"config.datasets must be a non-empty list of dataset names, got {config.datasets!r}")
    if not isinstance(config.weights, str) or not config.weights:
        raise ValueError(f"config.weights must be 'default', 'v1', 'none' or a path, got {config.weights!r}")
    if not isinstance(config.get("manual_dir", ""), str):
        raise ValueError(f"config.manual_dir must be a folder path or '', got {config.manual_dir!r}")
    if not isinstance(config.output, str) or not config.output:
        raise ValueError(f"config.output must be a directory name or path, got {config.output!r}")


def _load_task(store, task) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for index in task.examples:
        example = store[int(index)]
        out[int(index)] = (np.asarray(example["image"], np.float32), np.asarray(example["label"], np.float32))
    shapes = {image.shape for image, _ in out.values()}
    if len(shapes) != 1:
        raise ValueError(f"task {task.id}: examples have different shapes {sorted(shapes)}; standardise the store")
    return out


def evaluate(predictor_or_model, store, config) -> Report:
    """Evaluate a model (or any predictor, or ``None`` for baselines only) and ``config.baselines`` on every task
    of ``store`` (already the held-out tasks). See the module docstring for the protocol."""
    check_config(config)
    if isinstance(predictor_or_model, UniverSeg):
        predictor_or_model = ModelPredictor(predictor_or_model, batch_size=config.batch_size)
    methods = [predictor_or_model] if predictor_or_model is not None else []
    methods += [baselines.make_baseline(b) for b in config.baselines]
    if not methods:
        raise ValueError("nothing to evaluate: no model and config.baselines is empty")
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"predictor names must be unique, got {names}")
    if not store.tasks:
        raise ValueError("the store has no tasks to evaluate")

    sizes, ks = _ints(config, "support_sizes"), _ints(config, "ensemble_sizes")
    ensemble_size = int(config.ensemble_support_size)
    rows, task_info, qualitative = [], [], []
    seconds = defaultdict(float)
    start = time.perf_counter()
    for t, task in enumerate(store.tasks):
        data = _load_task(store, task)
        info = {
            "id": task.id,
            "dataset": task.dataset,
            "examples": len(task.examples),
            "subjects": len(set(task.subjects)),
            "support_sizes": set(),
            "ensemble": False,
            "queries": [],
        }
        for d in range(config.draws):
            draw = make_draw(
                task,
                d,
                seed=int(config.seed),
                max_queries=int(config.max_queries),
                support_sizes=sizes + [ensemble_size],
                members=max(ks),
            )
            info["queries"].append(len(draw.queries))
            episode = _Episode(data, draw)
            evaluated = [n for n in sizes if n <= len(draw.pool)]
            ensemble = ensemble_size if ensemble_size <= len(draw.pool) else None
            info["support_sizes"].update(evaluated)
            info["ensemble"] = info["ensemble"] or ensemble is not None
            for method in methods:
                tic = time.perf_counter()
                predictions = _Predictions(method, episode)
                common = {
                    "method": method.name,
                    "task": task.id,
                    "dataset": task.dataset,
                    "draw": d,
                    "queries": len(draw.queries),
                }
                scores = _score(predictions, episode, evaluated, ensemble, ks, config.threshold)
                rows += [{**common, **score} for score in scores]
                if d == 0 and evaluated and t < config.qualitative_tasks:
                    _add_qualitative(
                        qualitative,
                        task,
                        episode,
                        method.name,
                        predictions(evaluated[-1], 0),
                        evaluated[-1],
                        config.threshold,
                    )
                seconds[method.name] += time.perf_counter() - tic
        info["support_sizes"] = sorted(info["support_sizes"])
        task_info.append(info)
        logging.info("evaluated task %s (%d/%d)", task.id, t + 1, len(store.tasks))
    if not rows:
        raise ValueError(
            f"no task has enough examples for support sizes {sizes}: a support of size N needs N "
            "examples from subjects other than the queries'"
        )
    timing = {"total_seconds": time.perf_counter() - start, "method_seconds": dict(seconds)}
    return Report(config_dict(config), names, task_info, rows, summarize(rows), timing, qualitative)


def _score(predictions, episode, sizes: list[int], ensemble_size: int | None, ks: list[int], threshold) -> list:
    """Mean Dice of one method on one draw: at each support size, then for each ensemble size K (if any)."""
    scores = [
        {
            "experiment": "support_size",
            "support_size": n,
            "ensemble": 1,
            "dice": episode.mean_dice(predictions(n, 0), threshold),
        }
        for n in sizes
    ]
    if ensemble_size is not None:
        total = 0.0
        for k in range(1, max(ks) + 1):
            total = total + predictions(ensemble_size, k - 1)
            if k in ks:
                scores.append(
                    {
                        "experiment": "ensemble",
                        "support_size": ensemble_size,
                        "ensemble": k,
                        "dice": episode.mean_dice(total / k, threshold),
                    }
                )
    return scores


class _Episode:
    """Arrays of one draw: its queries and truths, and support sets on demand."""

    def __init__(self, data: dict, draw: Draw):
        self.data, self.draw = data, draw
        self.queries = np.stack([data[q][0] for q in draw.queries])
        self.truth = np.stack([data[q][1][..., 0] > 0.5 for q in draw.queries])

    def support(self, size: int, member: int) -> tuple[np.ndarray, np.ndarray]:
        indices = self.draw.support(size, member)
        return (np.stack([self.data[i][0] for i in indices]), np.stack([self.data[i][1] for i in indices]))

    def mean_dice(self, probabilities: np.ndarray, threshold: float) -> float:
        """Dice of the thresholded prediction, averaged over the draw's queries."""
        return float(metrics.dice(metrics.binarize(probabilities, threshold), self.truth).mean())


class _Predictions:
    """One method's probabilities for the queries of an episode, per (support size, ensemble member), computed once."""

    def __init__(self, method, episode: _Episode):
        self.method, self.episode, self.cache = method, episode, {}

    def __call__(self, size: int, member: int) -> np.ndarray:
        if (size, member) not in self.cache:
            self.cache[size, member] = self.method(*self.episode.support(size, member), self.episode.queries)
        return self.cache[size, member]


def _add_qualitative(qualitative: list, task, episode: _Episode, method: str, probabilities, size, threshold):
    """First query of draw 0 at the task's largest evaluated support size: one figure row per task."""
    if not qualitative or qualitative[-1]["task"] != task.id:
        images, labels = episode.support(size, 0)
        qualitative.append(
            {
                "task": task.id,
                "support_size": size,
                "support_images": images[:QUALITATIVE_SUPPORT, ..., 0],
                "support_labels": labels[:QUALITATIVE_SUPPORT, ..., 0],
                "query": episode.queries[0, ..., 0],
                "truth": episode.truth[0],
                "predictions": {},
            }
        )
    mask = metrics.binarize(probabilities[0], threshold)
    qualitative[-1]["predictions"][method] = (mask, float(metrics.dice(mask, episode.truth[0])))


# ---------------------------------------------------------------------------------------------------------------
# Aggregation.

SETTING = ("experiment", "method", "support_size", "ensemble")


def _mean_by_draw(units: Sequence[dict]) -> tuple[float, dict]:
    """(mean of the units' means, draw -> mean over the units that have that draw) for units ``draw -> dice``."""
    draws = sorted(set().union(*units))
    return (
        float(np.mean([np.mean(list(u.values())) for u in units])),
        {d: float(np.mean([u[d] for u in units if d in u])) for d in draws},
    )


def summarize(rows: Sequence[dict]) -> list[dict]:
    """Mean Dice with spread per task, per dataset, over all tasks and over datasets, for each (experiment,
    method, N, K).

    Scopes: ``task`` and ``dataset`` (``name`` is the task or dataset); ``all`` averages all tasks with equal
    weight; ``datasets`` (the headline, ``HEADLINE``) averages the per-dataset means with equal weight, so that a
    dataset's number of tasks does not set its weight. ``dice_std_draws``: for a task, the std of its per-draw
    Dice; for a group, the std over draws of the group's per-draw mean (computed the group's way).
    ``dice_std_tasks``: the std of the per-task means; ``dice_std_datasets``: the std of the per-dataset means
    (0 for a single task or dataset). At large support sizes only the tasks big enough take part (``tasks`` and
    ``datasets`` count them).
    """
    per_task = defaultdict(lambda: defaultdict(list))  # (setting, task, dataset) -> draw -> dice
    for row in rows:
        per_task[tuple(row[k] for k in SETTING), row["task"], row["dataset"]][row["draw"]].append(row["dice"])
    groups = defaultdict(list)  # (setting, scope, name) -> [(dataset, draw -> dice of one task)]
    for (setting, task, dataset), draws in per_task.items():
        by_draw = {d: float(np.mean(v)) for d, v in draws.items()}
        for scope, name in (("task", task), ("dataset", dataset), ("all", "all"), (HEADLINE, "all")):
            groups[setting, scope, name].append((dataset, by_draw))
    summary = []
    for (setting, scope, name), tasks in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
        by_dataset = defaultdict(list)
        for dataset, by_draw in tasks:
            by_dataset[dataset].append(by_draw)
        datasets = {dataset: _mean_by_draw(units) for dataset, units in by_dataset.items()}
        if scope == HEADLINE:  # datasets first, then the mean over them
            mean = float(np.mean([dataset_mean for dataset_mean, _ in datasets.values()]))
            _, draw_means = _mean_by_draw([draw_means for _, draw_means in datasets.values()])
        else:
            mean, draw_means = _mean_by_draw([by_draw for _, by_draw in tasks])
        summary.append(
            {
                "scope": scope,
                "name": name,
                **dict(zip(SETTING, setting)),
                "dice_mean": mean,
                "dice_std_draws": metrics.mean_std(list(draw_means.values()))[1],
                "dice_std_tasks": metrics.mean_std([np.mean(list(t.values())) for _, t in tasks])[1],
                "dice_std_datasets": metrics.mean_std([m for m, _ in datasets.values()])[1],
                "tasks": len(tasks),
                "datasets": len(datasets),
                "draws": len(draw_means),
            }
        )
    return summary


# ---------------------------------------------------------------------------------------------------------------
# main's ``evaluate`` mode.


def select_datasets(store, datasets: Sequence[str]):
    """The store restricted to ``datasets``; an unknown name is an error listing the available ones."""
    names = [d.partition("/")[0] for d in datasets]  # 'name/config' (as open_tasks accepts) -> 'name'
    available = sorted({t.dataset for t in store.tasks})
    unknown = [d for d in names if d not in available]
    if unknown:
        raise ValueError(f"config.datasets: unknown dataset(s) {unknown}; available: {', '.join(available)}")
    return store.select(datasets=names)


def evaluable(store, support_size: int):
    """The store without the tasks too small for ``support_size`` support examples and a query (a raw release's
    sample may have tasks of one or two images); a dataset left with none is dropped, with a warning."""
    view = copy.copy(store)
    view.tasks = [task for task in store.tasks if len(task.examples) > support_size]
    for dataset in sorted({t.dataset for t in store.tasks} - {t.dataset for t in view.tasks}):
        logging.warning(
            "dataset %s is left out of the evaluation: no task has %d examples (support %d and a query)",
            dataset,
            support_size + 1,
            support_size,
        )
    if not view.tasks:
        raise ValueError(
            f"no task of config.datasets has {support_size + 1} examples (the smallest support size and a query)"
        )
    return view


def load_weights(name: str) -> tuple[UniverSeg | None, int | None]:
    """(model, the image side it was trained at) for ``name``: ``'none'`` -> (None, None), baselines only;
    ``'default'`` -> the shipped model; else ``'v1'`` or a path (see ``universeg_jax.trained``)."""
    if name == "none":
        return None, None
    from universeg_jax import trained

    if name == "default" and not trained.DEFAULT_WEIGHTS.is_file():  # main's flags, not the commands' --weights
        raise FileNotFoundError(
            f"config.weights=default, but no default model is shipped with this installation "
            f"({trained.DEFAULT_WEIGHTS} is missing); pass --config.weights=v1 (the official weights, downloaded "
            "once), --config.weights=RUN_DIR or FILE (your training run or a .safetensors/.pt file), or "
            "--config.weights=none (the baselines only)"
        )
    model, how = trained.load(None if name == "default" else name)
    return model, how.size[0]


def evaluation_size(config_size: int, trained_size: int | None) -> int:
    """The image side to evaluate at: ``config.size``, or when it is 0 the size the weights were trained at
    (``DEFAULT_SIZE`` without weights)."""
    return config_size or trained_size or DEFAULT_SIZE[0]


def run(config, workdir, *, store=None) -> Report:
    """Evaluate ``config.weights`` and the baselines on ``config.datasets``; write the files into
    ``workdir / config.output`` (an absolute ``output`` is used as is). ``config.size`` 0 means the size the
    weights were trained at (128 for baselines only). ``store``: an already opened TaskStore
    (default: ``open_tasks(config.datasets, config.data_dir, size=config.size)``)."""
    check_config(config)
    output = Path(workdir) / config.output
    model, trained_size = load_weights(config.weights)
    config = ml_collections.ConfigDict(config_dict(config))
    config.size = evaluation_size(config.size, trained_size)
    if store is None:
        from universeg_jax.data.tasks import default_data_dir, open_tasks

        if config.get("manual_dir"):  # raw MegaMedical downloads: built first; those that do not build left out
            from universeg_jax import megamedical

            config.datasets = megamedical.prepare(
                config.datasets, config.manual_dir, config.data_dir or default_data_dir(), config.size
            )
        store = open_tasks(list(config.datasets), config.data_dir or None, build=True, size=config.size)
    store = evaluable(select_datasets(store, config.datasets), min(_ints(config, "support_sizes")))
    shape = np.shape(store[store.tasks[0].examples[0]]["image"])
    if shape != (config.size, config.size, 1):
        raise ValueError(
            f"the store holds {shape} images but config.size is {config.size}: open the tasks at "
            "that size or change config.size"
        )
    report = evaluate(model, store, config)
    logging.info("mean Dice over datasets (each weighted equally), per support size:\n%s", headline_table(report))
    paths = write_report(report, output)
    logging.info("evaluation written to %s", ", ".join(str(p) for p in paths.values()))
    return report
