"""Real MegaMedical tasks for evaluation (universeg_jax/megamedical.py, configs/evaluate.py:megamedical): where a
release folder is found, what is left out and why, and the evaluation of the real sample files (skipped when
the sample folder is absent)."""

from pathlib import Path

import pytest

from configs import evaluate as evaluate_configs
from tests.conftest import FakeTaskStore
from universeg_jax import evaluate, megamedical

SAMPLES = Path(__file__).resolve().parents[1] / ".." / "shared" / "megamedical"


def test_release_folders_are_found_in_a_manual_dir_or_a_folder_per_dataset(tmp_path):
    (tmp_path / "manual" / "segmentation_WBC").mkdir(parents=True)
    (tmp_path / "per_dataset" / "wbc" / "segmentation_WBC").mkdir(parents=True)
    assert megamedical.release_root("wbc", tmp_path / "manual") == tmp_path / "manual"
    assert megamedical.release_root("wbc", tmp_path / "per_dataset") == tmp_path / "per_dataset" / "wbc"
    assert megamedical.release_root("stare", tmp_path / "manual") is None


def test_a_missing_folder_or_nothing_to_build_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config.manual_dir='.*nowhere' is not a directory"):
        megamedical.build(["wbc"], tmp_path / "nowhere", tmp_path / "tfds", 64)
    with pytest.raises(ValueError, match=r"none of config.datasets could be built .* wbc: no segmentation_WBC/"):
        megamedical.prepare(["wbc"], tmp_path, tmp_path / "tfds", 64)


def test_preset_takes_the_folder_from_the_environment(monkeypatch):
    monkeypatch.setenv(megamedical.ENV, "/data/megamedical")
    config = evaluate_configs.get_config("megamedical")
    assert config.manual_dir == "/data/megamedical" and config.datasets[:2] == ("wbc", "stare")
    monkeypatch.delenv(megamedical.ENV)
    assert evaluate_configs.get_config("megamedical").manual_dir == ""
    assert evaluate_configs.get_config("check").manual_dir == ""


def test_tasks_too_small_for_the_support_are_left_out():
    store = FakeTaskStore({"big": 1, "small": 1}, subjects=6)
    store.tasks[1] = type(store.tasks[1])(
        store.tasks[1].id, "small", store.tasks[1].examples[:3], store.tasks[1].subjects[:3]
    )
    kept = evaluate.evaluable(store, 4)
    assert [t.dataset for t in kept.tasks] == ["big"] and len(store.tasks) == 2
    with pytest.raises(ValueError, match="no task of config.datasets has 7 examples"):
        evaluate.evaluable(store, 6)


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="no MegaMedical sample folder at ../shared/megamedical")
def test_the_paper_held_out_samples_are_built_and_every_baseline_sees_the_same_draws(tmp_path):
    config = evaluate_configs.get_config("megamedical")
    config.manual_dir, config.data_dir = str(SAMPLES), str(tmp_path / "tfds")
    config.datasets, config.weights, config.size = ("wbc", "stare"), "none", 64
    report = evaluate.run(config, str(tmp_path))
    assert {t["dataset"] for t in report.tasks} == {"wbc", "stare"}  # STARE from the sample's labels-vk
    assert (tmp_path / "tfds" / "wbc" / "size64").is_dir() and (tmp_path / "tfds" / "stare" / "size64").is_dir()
    for method in evaluate_configs.get_config().baselines:
        for dataset, tasks in (("wbc", 4), ("stare", 1)):
            row = report.summary_row(method, 4, scope="dataset", name=dataset)
            assert 0 <= row["dice_mean"] <= 1 and row["tasks"] == tasks and row["draws"] == 5
    draws = {}
    for row in report.rows:  # the same (task, draw) units for every method
        draws.setdefault(row["method"], set()).add((row["task"], row["draw"]))
    assert len({frozenset(units) for units in draws.values()}) == 1
