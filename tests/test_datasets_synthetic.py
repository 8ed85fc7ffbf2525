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
    assert len(index["tasks"]) == 6  # from draws of 2 to 4 labels each
    for position in range(6):
        subjects = {s for t, s in zip(index["example_task"], index["example_subject"]) if t == position}
        assert len(subjects) >= 3


def test_different_tasks_mark_different_pixels(tmp_path):
    _, examples = build(tmp_path, "a")
    first_mask = {}
    for e in examples:
        first_mask.setdefault(e["task"], e["label"][..., 0].astype(float))
    tasks = sorted(first_mask)
    for i, first in enumerate(tasks):
        for second in tasks[i + 1 :]:
            # A task's first example and another task's differ (0 = same mask, 1 = disjoint), whether they are
            # labels of one draw or of different draws, large regions or a few small objects.
            a, b = first_mask[first], first_mask[second]
            assert np.abs(a - b).sum() / (a + b).sum() > 0.3, (first, second)


def test_draws_mix_large_regions_and_small_objects():
    """Label areas within a draw range from a few per cent (scattered objects) to large regions."""
    areas = []
    for draw in range(6):
        model = DrawModel.sample(seed=0, draw=draw, max_labels=8, size=64)
        _, label_map = model.render(0)
        areas.extend(np.bincount(label_map.ravel(), minlength=model.labels) / label_map.size)
    assert min(areas) < 0.05 and max(areas) > 0.3


def draw_with_layout(independent: bool) -> DrawModel:
    return next(m for m in (DrawModel.sample(seed=0, draw=d, max_labels=4, size=64) for d in range(40))
                if m.independent == independent)


def kappa(first: np.ndarray, second: np.ndarray) -> float:
    """Cohen's kappa of two label maps: 0 for unrelated layouts, 1 for identical ones."""
    chance = sum(np.mean(first == k) * np.mean(second == k) for k in np.union1d(first, second))
    return float((np.mean(first == second) - chance) / (1.0 - chance))


def test_templated_draws_deform_one_layout():
    model = draw_with_layout(independent=False)
    (_, first), (_, second) = model.render(0), model.render(1)
    assert 0.3 < kappa(first, second) and np.mean(first == second) < 0.99  # deformed, not copies nor unrelated


def test_independent_draws_change_the_layout_and_keep_the_appearance():
    model = draw_with_layout(independent=True)
    subjects = [model.render(s) for s in range(6)]
    assert abs(kappa(subjects[0][1], subjects[1][1])) < 0.2  # layouts are unrelated
    for label in range(model.labels):  # ... but a label keeps its level in every subject (objects vary around it)
        means = [image[label_map == label].mean() for image, label_map in subjects if (label_map == label).any()]
        assert np.abs(np.array(means) - model.means[label]).max() < 0.3 / model.labels + 0.1, (label, means)


def test_render_is_deterministic():
    model = DrawModel.sample(seed=1, draw=2, max_labels=3, size=32)
    again = DrawModel.sample(seed=1, draw=2, max_labels=3, size=32)
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


def test_label_intensities_sit_on_distinct_levels():
    """Appearance can tell a draw's labels apart: mean intensities at least 0.4 / labels apart."""
    for draw in range(20):
        model = DrawModel.sample(seed=3, draw=draw, max_labels=8, size=32)
        assert np.diff(np.sort(model.means)).min() >= 0.4 / model.labels - 1e-9, model.means


def test_objects_of_one_label_get_their_own_brightness():
    from scipy import ndimage

    from universeg_datasets.synthetic_tasks import object_offsets

    label_map = np.zeros((16, 16), np.int32)
    label_map[2:5, 2:5] = label_map[10:14, 8:12] = 1  # two objects of label 1 on background 0
    offsets = object_offsets(np.random.default_rng(0), label_map, np.array([0.0, 0.2]))
    objects, count = ndimage.label(label_map == 1)
    assert count == 2
    values = [np.unique(offsets[objects == k]) for k in (1, 2)]
    assert all(len(v) == 1 and abs(v[0]) <= 0.2 for v in values) and values[0] != values[1]
    assert not offsets[label_map == 0].any()  # spread 0: the background keeps its level
