"""The evaluation harness: draws, leakage, reproducibility, aggregation, the model predictor and run()'s files."""

import csv
import json

import numpy as np
import pytest
from flax import nnx

from configs.evaluate import get_config
from tests.conftest import FakeTask, FakeTaskStore
from universeg_jax import evaluate as E
from universeg_jax import weights
from universeg_jax.model import UniverSeg
from universeg_jax.report import write_atomic

SIZE = 32


class IdentityStore:
    """Each image is constant at a value that identifies its example, so a predictor can tell which examples
    it was given. Subject ``s`` of task ``t`` has ``per_subject`` examples."""

    def __init__(self, tasks=2, subjects=9, per_subject=2):
        self.tasks, self.subject_of = [], []
        for t in range(tasks):
            examples, subject_ids = [], []
            for s in range(subjects):
                for _ in range(per_subject):
                    examples.append(len(self.subject_of))
                    subject_ids.append(f"s{s}")
                    self.subject_of.append(f"t{t}/s{s}")
            self.tasks.append(FakeTask(f"ds/task{t}", "ds", tuple(examples), tuple(subject_ids)))

    def value(self, index):
        return (index + 1) / (len(self.subject_of) + 1)

    def index(self, value):
        return int(round(value * (len(self.subject_of) + 1))) - 1

    def __len__(self):
        return len(self.subject_of)

    def __getitem__(self, index):
        label = np.zeros((SIZE, SIZE, 1), np.float32)
        label[: 4 + index % 8] = 1.0
        return {
            "image": np.full((SIZE, SIZE, 1), self.value(index), np.float32),
            "label": label,
            "task": self.subject_of[index].split("/")[0],
            "subject": self.subject_of[index],
        }

    def select(self, datasets=None, exclude=()):
        return self


class Spy:
    """A predictor that records which store examples it got as support and as queries."""

    def __init__(self, store, name="spy"):
        self.store, self.name, self.calls = store, name, []

    def __call__(self, support_images, support_labels, queries):
        ids = lambda x: tuple(self.store.index(float(v)) for v in x[:, 0, 0, 0])  # noqa: E731
        self.calls.append((ids(support_images), ids(queries)))
        return np.full(queries.shape[:3], 0.5, np.float32)


def small_config(**overrides):
    config = get_config("quick")
    config.size, config.datasets, config.weights = SIZE, ("fake_a", "fake_b"), "none"
    config.support_sizes, config.draws, config.max_queries = (1, 2, 4), 2, 3
    config.ensemble_sizes, config.ensemble_support_size = (1, 2), 2
    config.qualitative_tasks = 2
    config.update_from_flattened_dict(overrides)
    return config


# -- draws --------------------------------------------------------------------------------------------------------


def test_queries_never_enter_their_own_support_nor_share_its_subjects():
    store = IdentityStore(subjects=9, per_subject=2)
    spy = Spy(store)
    config = small_config(baselines=(), support_sizes=(1, 2, 4, 8), ensemble_sizes=(1, 3), draws=3)
    E.evaluate(spy, store, config)
    assert spy.calls
    for support, queries in spy.calls:
        assert not set(support) & set(queries)
        assert not {store.subject_of[i] for i in support} & {store.subject_of[i] for i in queries}
        assert len(set(support)) == len(support)  # no example twice in one support set
        assert len(queries) <= config.max_queries


def test_every_method_sees_the_same_draws():
    store = IdentityStore()
    first, second = Spy(store, "first"), Spy(store, "second")
    config = small_config(baselines=())
    E.evaluate(first, store, config)
    E.evaluate(second, store, config)
    assert first.calls == second.calls


@pytest.mark.parametrize("per_subject", [1, 3])
def test_draws_are_reproducible_by_seed_and_respect_subjects(per_subject):
    task = IdentityStore(tasks=1, subjects=10, per_subject=per_subject).tasks[0]
    kwargs = dict(max_queries=4, support_sizes=(1, 8), members=3)
    same = [E.make_draw(task, 1, seed=7, **kwargs) for _ in range(2)]
    assert same[0] == same[1]
    other_seed, other_draw = E.make_draw(task, 1, seed=8, **kwargs), E.make_draw(task, 2, seed=7, **kwargs)
    assert other_seed.queries != same[0].queries or other_seed.orders != same[0].orders
    assert other_draw.queries != same[0].queries or other_draw.orders != same[0].orders
    draw = same[0]
    subject = dict(zip(task.examples, task.subjects))
    assert not {subject[q] for q in draw.queries} & {subject[p] for p in draw.pool}
    assert 1 <= len(draw.queries) <= 4
    for order in draw.orders:
        assert sorted(order) == sorted(draw.pool)
    assert draw.support(2) == draw.support(4)[:2]  # nested support sizes


def test_small_task_keeps_room_for_the_largest_support_that_fits():
    task = IdentityStore(tasks=1, subjects=10, per_subject=1).tasks[0]
    draw = E.make_draw(task, 0, seed=0, max_queries=16, support_sizes=(1, 8, 16), members=1)
    assert len(draw.queries) == 2 and len(draw.pool) == 8  # 16 cannot fit with a query; 8 can
    with pytest.raises(ValueError, match="exceeds the pool"):
        draw.support(9)


def test_single_subject_task_falls_back_to_splitting_examples():
    task = FakeTask("one/t", "one", tuple(range(6)), ("same",) * 6)
    draw = E.make_draw(task, 0, seed=0, max_queries=2, support_sizes=(4,), members=1)
    assert len(draw.queries) == 2 and len(draw.pool) == 4
    assert not set(draw.queries) & set(draw.pool)


def test_large_sizes_are_skipped_only_on_tasks_too_small_for_them():
    store = FakeTaskStore({"fake_a": 1}, subjects=6, size=SIZE)
    report = E.evaluate(None, store, small_config(support_sizes=(1, 4, 8), baselines=("spatial_prior",)))
    assert report.tasks[0]["support_sizes"] == [1, 4]
    assert {r["support_size"] for r in report.rows if r["experiment"] == "support_size"} == {1, 4}


# -- evaluation and aggregation -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model():
    return UniverSeg((8, 8), rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def fake_store():
    return FakeTaskStore({"fake_a": 2, "fake_b": 1}, subjects=10, size=SIZE)


def test_evaluate_is_reproducible_and_complete(tiny_model, fake_store):
    config = small_config()
    predictor = E.ModelPredictor(tiny_model)  # compiled once, used by both runs
    first, second = E.evaluate(predictor, fake_store, config), E.evaluate(predictor, fake_store, config)
    assert first.rows == second.rows
    assert first.methods == ["universeg", "spatial_prior", "intensity", "nearest_neighbour", "label_fusion"]
    # every method x task x draw x support size, and x K for the ensemble
    n_tasks = len(fake_store.tasks)
    sweep = [r for r in first.rows if r["experiment"] == "support_size"]
    ensemble = [r for r in first.rows if r["experiment"] == "ensemble"]
    assert len(sweep) == 5 * n_tasks * config.draws * 3
    assert len(ensemble) == 5 * n_tasks * config.draws * 2
    assert all(0 <= r["dice"] <= 1 for r in first.rows)
    # K = 1 at the ensemble's support size is the sweep's support set 0 of that size
    key = lambda r: (r["method"], r["task"], r["draw"])  # noqa: E731
    k1 = {key(r): r["dice"] for r in ensemble if r["ensemble"] == 1}
    assert k1 == {key(r): r["dice"] for r in sweep if r["support_size"] == config.ensemble_support_size}
    assert [q["task"] for q in first.qualitative] == [t.id for t in fake_store.tasks[:2]]
    # summary lookup: the mean over all tasks is the mean of the per-task means; the headline (default) is the mean
    # over datasets of the per-dataset means (fake_a has 2 tasks, fake_b 1: they weigh the same)
    task_means = {
        t.id: first.summary_row("intensity", 4, scope="task", name=t.id)["dice_mean"] for t in fake_store.tasks
    }
    assert first.summary_row("intensity", 4, scope="all")["dice_mean"] == pytest.approx(
        np.mean(list(task_means.values()))
    )
    dataset_means = [
        np.mean([m for task, m in task_means.items() if task.startswith(d + "/")]) for d in ("fake_a", "fake_b")
    ]
    assert first.summary_row("intensity", 4, scope="dataset", name="fake_a")["dice_mean"] == pytest.approx(
        dataset_means[0]
    )
    headline = first.summary_row("intensity", 4)
    assert (headline["scope"], headline["datasets"], headline["tasks"]) == ("datasets", 2, 3)
    assert headline["dice_mean"] == pytest.approx(np.mean(dataset_means))
    assert first.summary_row("universeg", 2, ensemble=2)["experiment"] == "ensemble"
    table = E.headline_table(first).splitlines()  # what run() logs
    assert table[0].split() == ["method", "N=1", "N=2", "N=4"] and [t.split()[0] for t in table[1:]] == first.methods
    assert float(table[3].split()[3]) == pytest.approx(headline["dice_mean"], abs=5e-4)  # intensity at N=4
    with pytest.raises(KeyError, match="support_size=64"):
        first.summary_row("intensity", 64)


def test_summary_aggregates_tasks_and_draws_exactly():
    rows = [
        {
            "experiment": "support_size",
            "method": "m",
            "support_size": 1,
            "ensemble": 1,
            "task": task,
            "dataset": "d",
            "draw": draw,
            "dice": dice,
        }
        for task, draw, dice in [("a", 0, 0.2), ("a", 1, 0.4), ("b", 0, 0.6), ("b", 1, 1.0)]
    ]
    summary = {(s["scope"], s["name"]): s for s in E.summarize(rows)}
    assert summary["task", "a"]["dice_mean"] == pytest.approx(0.3)
    assert summary["task", "a"]["dice_std_draws"] == pytest.approx(0.1)
    overall = summary["all", "all"]
    assert overall["dice_mean"] == pytest.approx(0.55)  # mean of task means 0.3 and 0.8
    assert overall["dice_std_tasks"] == pytest.approx(0.25)
    assert overall["dice_std_draws"] == pytest.approx(0.15)  # draw means 0.4 and 0.7
    assert (overall["tasks"], overall["draws"]) == (2, 2)
    assert summary["dataset", "d"]["dice_mean"] == pytest.approx(0.55)
    assert summary["datasets", "all"]["dice_mean"] == pytest.approx(0.55)  # one dataset: the same


def test_the_headline_weighs_datasets_equally_whatever_their_number_of_tasks():
    """Dataset d1 has three tasks at mean Dice 0.8, 0.9 and 1.0, d2 one task at 0.1; each draw moves every task by
    -0.05 or +0.05. Over all tasks 0.7, over datasets 0.5."""
    rows = [
        {
            "experiment": "support_size",
            "method": "m",
            "support_size": 1,
            "ensemble": 1,
            "task": task,
            "dataset": dataset,
            "draw": draw,
            "dice": mean + shift,
        }
        for task, dataset, mean in [("a", "d1", 0.8), ("b", "d1", 0.9), ("c", "d1", 1.0), ("z", "d2", 0.1)]
        for draw, shift in ((0, -0.05), (1, 0.05))
    ]
    summary = {(s["scope"], s["name"]): s for s in E.summarize(rows)}
    assert summary["all", "all"]["dice_mean"] == pytest.approx(0.7)
    headline = summary["datasets", "all"]
    assert headline["dice_mean"] == pytest.approx(0.5)  # (0.9 + 0.1) / 2
    assert headline["dice_std_datasets"] == pytest.approx(0.4)
    assert headline["dice_std_draws"] == pytest.approx(0.05)  # draw means 0.45 and 0.55
    assert (headline["tasks"], headline["datasets"], headline["draws"]) == (4, 2, 2)
    assert summary["dataset", "d1"]["dice_std_datasets"] == 0.0
    # a dataset too small for a support size drops out of that size's headline, and the row says so
    rows.append({**rows[0], "support_size": 8, "dice": 0.6})
    large = next(s for s in E.summarize(rows) if s["scope"] == "datasets" and s["support_size"] == 8)
    assert (large["dice_mean"], large["datasets"], large["tasks"], large["draws"]) == (pytest.approx(0.6), 1, 1, 1)


def test_model_predictor_matches_the_model_for_any_number_of_queries(tiny_model, fake_store):
    import jax

    examples = [fake_store[i] for i in range(8)]
    images = np.stack([e["image"] for e in examples])
    labels = np.stack([e["label"] for e in examples])
    expected = jax.nn.sigmoid(tiny_model(images[3:], images[None, :3], labels[None, :3]))[..., 0]
    # 5 queries: one full chunk of 4 and one padded chunk; then chunks of 2 (max_pairs // S = 6 // 3)
    for predictor in (E.ModelPredictor(tiny_model, batch_size=4), E.ModelPredictor(tiny_model, max_pairs=6)):
        np.testing.assert_allclose(predictor(images[:3], labels[:3], images[3:]), expected, atol=1e-5)


# -- run(): files and config checks --------------------------------------------------------------------------------


def test_run_writes_all_files_atomically(tmp_path, tiny_model, fake_store):
    weights_path = weights.save(tiny_model, tmp_path / "tiny.safetensors")
    config = small_config(weights=str(weights_path), output="eval")
    report = E.run(config, tmp_path / "work", store=fake_store)
    out = tmp_path / "work" / "eval"
    names = {p.name for p in out.iterdir()}
    assert names == {
        "report.json",
        "results.csv",
        "summary.csv",
        "dice_vs_support_size.png",
        "dice_vs_ensemble.png",
        "qualitative.png",
    }  # no temporary files left behind
    saved = json.loads((out / "report.json").read_text())
    assert saved["rows"] == report.rows and saved["methods"][0] == "universeg"
    assert saved["config"]["support_sizes"] == [1, 2, 4]
    with open(out / "results.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == len(report.rows)
    with open(out / "summary.csv", newline="") as f:
        assert {r["scope"] for r in csv.DictReader(f)} == {"task", "dataset", "all", "datasets"}
    for name in names - {"report.json", "results.csv", "summary.csv"}:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_size_zero_evaluates_at_the_size_the_weights_were_trained_at(tmp_path, tiny_model, fake_store):
    weights_path = weights.save(tiny_model, tmp_path / "tiny.safetensors", image_size=(SIZE, SIZE))
    report = E.run(small_config(weights=str(weights_path), size=0, support_sizes=(2,)), tmp_path, store=fake_store)
    assert report.config["size"] == SIZE
    with pytest.raises(ValueError, match="config.size is 64"):  # an explicit size still has to match the store
        E.run(small_config(weights=str(weights_path), size=64), tmp_path, store=fake_store)


def test_write_atomic_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "report.json"
    path.write_text("old")

    def broken(f):
        f.write("half of the new")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomic(path, broken)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"support_sizes": (0, 2)}, "support_sizes must be >= 1"),
        ({"support_sizes": ()}, "support_sizes must be a non-empty"),
        ({"ensemble_sizes": (0,)}, "ensemble_sizes must be >= 1"),
        ({"draws": 0}, "draws must be a positive integer"),
        ({"max_queries": 0}, "max_queries must be a positive integer"),
        ({"threshold": 1.5}, "threshold must be strictly between 0 and 1"),
        ({"baselines": ("spatial_prior", "atlas")}, r"unknown baseline\(s\) \['atlas'\].*known baselines"),
        ({"datasets": ("fake_a", "nope")}, r"unknown dataset\(s\) \['nope'\]; available: fake_a, fake_b"),
        ({"size": 64}, "config.size is 64"),
        ({"size": -1}, "config.size must be a positive integer, or 0"),
        ({"weights": str("/nonexistent/w.safetensors")}, "neither a known name"),
    ],
)
def test_run_refuses_bad_config_values_before_writing(tmp_path, fake_store, overrides, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        E.run(small_config(**overrides), tmp_path, store=fake_store)
    assert not (tmp_path / "evaluation").exists()


def test_unknown_preset_is_refused():
    with pytest.raises(ValueError, match="unknown evaluation preset"):
        get_config("fast")


def test_every_training_preset_holds_out_the_evaluated_suite():
    """The held-out suite (configs/evaluate.py) is at least four embedded datasets, and no preset trains on any."""
    from configs import base, default_model
    from universeg_jax.data.contract import DEFAULT_HELD_OUT, EMBEDDED_DATASETS
    from universeg_jax.data.tasks import dataset_names

    suite = set(get_config().datasets)
    assert suite == set(DEFAULT_HELD_OUT) and len(suite) >= 4 and suite <= set(EMBEDDED_DATASETS)
    configs = [base.get_config(p) for p in base.PRESETS] + [default_model.get_config(p) for p in default_model.PRESETS]
    for config in configs:
        held_out = set(dataset_names(config.data.held_out))
        trained = {n.partition("/")[0] for n in dataset_names(config.data.datasets)} - held_out
        assert held_out == suite and trained and not trained & suite


def test_default_weights_are_v1_while_no_default_model_ships(tmp_path, monkeypatch):
    from universeg_jax import trained

    monkeypatch.setattr(trained, "DEFAULT_WEIGHTS", tmp_path / "absent.safetensors")
    assert get_config().weights == "v1"
    (tmp_path / "default.safetensors").write_bytes(b"")
    monkeypatch.setattr(trained, "DEFAULT_WEIGHTS", tmp_path / "default.safetensors")
    assert get_config().weights == "default"
