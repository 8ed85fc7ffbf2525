"""real_synthetic_labels: scikit-image's bundled samples (from the wheel, no download) with rule-made labels;
subjects are disjoint windows, rules are reproducible and readable from the image, a failed build leaves nothing."""

import importlib.metadata
import json
from itertools import combinations

import numpy as np
import pytest
import tensorflow_datasets as tfds

from universeg_datasets import registry, synthetic_real, tiling
from universeg_datasets.synthetic_real import RealConfig, RealSyntheticLabels, Rule
from universeg_datasets.validate import validate_built
from universeg_jax.data import tasks as task_store

SMALL = {"size": 32, "sources": ("coins", "brick"), "rules": 2, "min_subjects": 8}


def build(tmp_path, folder, name="test_size32", **fields):
    config = RealConfig(name=name, **{**SMALL, **fields})
    builder = RealSyntheticLabels(config=config, data_dir=str(tmp_path / folder))
    builder.download_and_prepare()
    source = tfds.builder_from_directory(str(builder.data_path)).as_data_source(split="train")
    return builder.data_path, [source[i] for i in range(len(source))]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build(tmp_path_factory.mktemp("real"), "a")


def test_sources_ship_in_the_scikit_image_wheel():
    """Every source is a file listed in scikit-image's installed wheel (RECORD), so nothing is downloaded."""
    shipped = {str(f) for f in importlib.metadata.files("scikit-image")}
    for name, source in synthetic_real.SOURCES.items():
        assert f"skimage/data/{source.file}" in shipped, name
        gray = synthetic_real.read_source(source)
        assert gray.ndim == 2 and gray.dtype == np.float64 and 0.0 <= gray.min() and gray.max() <= 1.0
        assert min(gray.shape) >= 256, name


def test_built_dataset_has_the_documented_layout(built):
    path, examples = built
    summary = validate_built(path)  # uint8 (32, 32, 1) images and labels, labels {0, 1} and never empty
    assert summary == {"examples": len(examples), "tasks": 4, "size": 32}
    assert max(e["label"].mean() for e in examples) <= synthetic_real.MAX_WINDOW_FRACTION + 0.05  # after resizing
    names = {e["task"].decode() for e in examples}
    assert all(n.startswith("real_synthetic_labels/") and n.endswith("/0") for n in names)
    assert {n.split("/")[1] for n in names} == {"photograph", "texture"}  # coins, brick


def test_subjects_are_disjoint_windows(built):
    """The stated rule: a subject is one window, seen once per task; any two windows of a task are at least
    ``gap`` pixels apart (no shared pixels, no near-copies) and each task has at least ``min_subjects``."""
    path, _ = built
    index = json.loads((path / "task_index.json").read_text())
    tile, gap = RealConfig.tile, RealConfig.gap
    for position, task in enumerate(index["tasks"]):
        subjects = [s for t, s in zip(index["example_task"], index["example_subject"]) if t == position]
        assert len(subjects) == len(set(subjects)) >= SMALL["min_subjects"], task
        source = {s.split("@")[0] for s in subjects}
        assert len(source) == 1 and source.pop() in task
        windows = [tiling.Window(*tiling.subject_origin(s), tile, tile) for s in subjects]
        assert min(tiling.separation(a, b) for a, b in combinations(windows, 2)) >= gap, task


def test_examples_are_a_pure_function_of_the_seed(built):
    _, examples = built
    config = RealConfig(name="again_size32", **SMALL)
    again = [e for name in config.sources for _, e in synthetic_real.source_examples(name, config)]
    assert len(again) == len(examples)
    for a, b in zip(examples, again):
        assert a["task"].decode() == b["task"] and a["subject"].decode() == b["subject"]
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
    other = RealConfig(name="seed_size32", seed=1, **SMALL)
    first_other = next(synthetic_real.source_examples("coins", other))[1]
    assert first_other["task"] != examples[0]["task"].decode() or not np.array_equal(
        first_other["label"], examples[0]["label"]
    )


def test_rules_meet_their_conditions():
    """Kept rules mark 2-80 % of the source, label enough windows, differ from each other, and survive a shift
    of the image plus noise (they depend on the image, not on the noise or on a grid of the whole image)."""
    for index, name in enumerate(("ihc", "gravel")):
        source = synthetic_real.SOURCES[name]
        gray = synthetic_real.read_source(source)
        windows = synthetic_real.source_windows(gray, source, 64, 8)
        chosen = synthetic_real.choose_rules(np.random.default_rng((0, index)), gray, windows, 4, 12)
        assert len(chosen) == 4
        masks = [mask for _, mask in chosen]
        for rule, mask in chosen:
            assert synthetic_real.MIN_FRACTION <= mask.mean() <= synthetic_real.MAX_FRACTION
            assert sum(0 < w.crop(mask).mean() <= synthetic_real.MAX_WINDOW_FRACTION for w in windows) >= 12
            dy, dx = synthetic_real.STABILITY_SHIFT
            assert synthetic_real.dice(mask[dy:, dx:], rule.apply(gray[dy:, dx:])) >= synthetic_real.MIN_STABILITY
        for a, b in combinations(masks, 2):
            assert synthetic_real.dice(a, b) <= synthetic_real.MAX_OVERLAP


def test_every_rule_kind_and_feature_is_drawn():
    rules = [synthetic_real.sample_rule(np.random.default_rng(k)) for k in range(300)]
    assert {r.kind for r in rules} == set(synthetic_real.KINDS)
    assert {r.feature for r in rules if r.kind == "threshold"} == set(synthetic_real.FEATURES)
    assert any(r.border for r in rules) and any(not r.border for r in rules)


def test_threshold_rule_marks_the_quantile():
    gray = np.tile(np.linspace(0.0, 1.0, 100), (100, 1))  # brightness grows left to right
    above = Rule("threshold", "intensity", 0.7, 0.75, True).apply(gray)
    assert abs(above.mean() - 0.25) < 0.02 and above[:, -1].all() and not above[:, 0].any()
    where = np.zeros(gray.shape, bool)
    where[:, :50] = True  # the quantile of the left half only
    below = Rule("threshold", "intensity", 0.7, 0.5, False).apply(gray, where)
    assert abs(below.mean() - 0.25) < 0.02
    border = Rule("threshold", "intensity", 0.7, 0.5, True, border=2).apply(gray)
    assert border.any() and border.sum() < 0.2 * (gray > 0.5).sum()


def test_watershed_rule_follows_image_edges():
    """Two flat halves: basins never straddle the edge, so the label is exactly one half."""
    gray = np.zeros((80, 80))
    gray[:, 40:] = 0.8
    gray += np.random.default_rng(0).normal(0, 0.01, gray.shape)
    mask = Rule("watershed", "intensity", 1.5, 0.5, True, region_area=200).apply(gray)
    assert mask[:, 42:].all() and not mask[:, :38].any()


def test_fundus_windows_stay_inside_the_field_of_view():
    source = synthetic_real.SOURCES["retina"]
    gray = synthetic_real.read_source(source)
    windows = synthetic_real.source_windows(gray, source, 64, 8)
    everything = tiling.grid(gray.shape, 64, 8)
    assert 20 <= len(windows) < len(everything)
    assert all(np.percentile(w.crop(gray), 1) > 0.05 for w in windows)  # no black surround in a window


def test_missing_source_fails_and_leaves_no_dataset(tmp_path, monkeypatch):
    sources = dict(synthetic_real.SOURCES)
    sources["brick"] = synthetic_real.Source("no_such_image.png", "texture")
    monkeypatch.setattr(synthetic_real, "SOURCES", sources)
    with pytest.raises(FileNotFoundError, match="no_such_image.png"):
        build(tmp_path, "a")  # coins is written first, then brick fails
    assert not list((tmp_path / "a").rglob("dataset_info.json"))
    assert not list((tmp_path / "a").rglob(str(RealSyntheticLabels.VERSION)))


def test_bad_config_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown sources"):
        build(tmp_path, "a", name="bad_size32", sources=("coins", "nope"))
    assert not list(tmp_path.rglob("dataset_info.json"))


def test_registered_as_embedded():
    assert registry.EMBEDDED["real_synthetic_labels"] == "universeg_datasets.synthetic_real"
    assert "real_synthetic_labels" in task_store.EMBEDDED_DATASETS
    assert registry.builder_class("real_synthetic_labels") is RealSyntheticLabels
    configs = {c.name for c in RealSyntheticLabels.BUILDER_CONFIGS}
    assert {"size64", "size128", "size256"} <= configs
