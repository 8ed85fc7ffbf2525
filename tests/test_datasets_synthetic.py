"""Synthetic tasks: reproducible from the seed, and different tasks are really different."""

import json

import numpy as np
import pytest
import tensorflow_datasets as tfds

from universeg_datasets import synthetic_tasks
from universeg_datasets.synthetic_tasks import DrawModel, SyntheticConfig, SyntheticTasks
from universeg_datasets.validate import validate_built


def build(tmp_path, folder, **fields):
    config = SyntheticConfig(name="test_size32", size=32, num_tasks=6, subjects=5, labels_per_draw=4, **fields)
    builder = SyntheticTasks(config=config, data_dir=str(tmp_path / folder))
    builder.download_and_prepare()
    source = tfds.builder_from_directory(str(builder.data_path)).as_data_source(split="train")
    return builder.data_path, [source[i] for i in range(len(source))]


def test_same_seed_same_data_different_seed_different_data(tmp_path):
    path_a, a = build(tmp_path, "a", seed=3)
    path_b, b = build(tmp_path, "b", seed=3)
    _, c = build(tmp_path, "c", seed=4)
    assert validate_built(path_a)["tasks"] == 6
    assert (path_a / "task_index.json").read_text() == (path_b / "task_index.json").read_text()
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["label"], y["label"])
    assert not np.array_equal(a[0]["image"], c[0]["image"])


def test_every_task_has_examples_of_several_subjects(tmp_path):
    path, _ = build(tmp_path, "a")
    index = json.loads((path / "task_index.json").read_text())
    assert len(index["tasks"]) == 6  # 4 labels of draw 0 and 2 of draw 1
    for position in range(6):
        subjects = {s for t, s in zip(index["example_task"], index["example_subject"]) if t == position}
        assert len(subjects) >= 3


def test_different_tasks_differ_in_label_statistics(tmp_path):
    _, examples = build(tmp_path, "a")
    by_task = {}
    for e in examples:
        by_task.setdefault(e["task"], []).append(e["label"][..., 0].astype(float))
    mean_masks = {task: np.mean(masks, axis=0) for task, masks in by_task.items()}
    tasks = sorted(mean_masks)
    for i, first in enumerate(tasks):
        for second in tasks[i + 1 :]:
            # Different tasks put their foreground in different places: mean masks are far apart.
            assert np.abs(mean_masks[first] - mean_masks[second]).mean() > 0.1, (first, second)


def test_subjects_of_a_task_vary_but_stay_related():
    model = DrawModel.sample(seed=0, draw=0, labels=4, size=64)
    (_, first), (_, second) = model.render(0), model.render(1)
    overlap = np.mean(first == second)
    assert 0.3 < overlap < 0.99  # deformed versions of one label map, not copies and not unrelated


def test_render_is_deterministic():
    model = DrawModel.sample(seed=1, draw=2, labels=3, size=32)
    again = DrawModel.sample(seed=1, draw=2, labels=3, size=32)
    np.testing.assert_array_equal(model.render(5)[0], again.render(5)[0])


def test_bad_config_is_rejected(tmp_path):
    config = SyntheticConfig(name="bad_size32", size=32, num_tasks=4, subjects=2, labels_per_draw=1)
    with pytest.raises(ValueError, match="labels_per_draw"):
        SyntheticTasks(config=config, data_dir=str(tmp_path)).download_and_prepare()
    assert not list(tmp_path.glob("synthetic_tasks/*/*/dataset_info.json"))


def test_default_configs():
    configs = {c.name: c for c in SyntheticTasks.BUILDER_CONFIGS}
    assert configs["size128"].num_tasks < 100 and configs["tasks1000_size128"].num_tasks == 1000
    assert synthetic_tasks.SyntheticTasks.default_builder_config.name == "size128"
