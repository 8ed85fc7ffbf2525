"""Synthetic tasks: reproducible from the seed, every family drawn and shaped as it says, different tasks really
different, and a failed build leaves nothing."""

import json

import numpy as np
import pytest
import tensorflow_datasets as tfds
from scipy import ndimage

from universeg_datasets import synthetic_tasks
from universeg_datasets.synthetic_tasks import DrawModel, SyntheticConfig, SyntheticTasks
from universeg_datasets.validate import validate_built


def build(tmp_path, folder, **fields):
    config = SyntheticConfig(name="test_size32", size=32, num_tasks=6, subjects=5, labels_per_draw=4, **fields)
    builder = SyntheticTasks(config=config, data_dir=str(tmp_path / folder))
    builder.download_and_prepare()
    source = tfds.builder_from_directory(str(builder.data_path)).as_data_source(split="train")
    return builder.data_path, [source[i] for i in range(len(source))]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build(tmp_path_factory.mktemp("synthetic"), "a", seed=3)


def draws(count=80, size=32, seed=0, max_labels=8):
    return [DrawModel.sample(seed, draw, max_labels, size) for draw in range(count)]


@pytest.fixture(scope="module")
def models():
    return draws()


def first(models, predicate):
    return next(m for m in models if predicate(m))


def find(predicate, size=64, seed=0, limit=400):
    """The first draw (of at most ``limit``) that satisfies ``predicate``."""
    return first((DrawModel.sample(seed, draw, 8, size) for draw in range(limit)), predicate)


# --------------------------------------------------------------------------------------------- the built dataset


def test_same_seed_same_data_different_seed_different_data(tmp_path, built):
    path_a, a = built
    path_b, b = build(tmp_path, "b", seed=3)
    _, c = build(tmp_path, "c", seed=4)
    summary = validate_built(path_a)  # uint8 (32, 32, 1) images and labels, labels in {0, 1} and never empty
    assert summary == {"examples": len(a), "tasks": 6, "size": 32}
    assert (path_a / "task_index.json").read_text() == (path_b / "task_index.json").read_text()
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["label"], y["label"])
    assert not np.array_equal(a[0]["image"], c[0]["image"])


def test_every_task_has_examples_of_several_subjects(built):
    path, _ = built
    index = json.loads((path / "task_index.json").read_text())
    assert len(index["tasks"]) == 6
    for position in range(6):
        subjects = [s for t, s in zip(index["example_task"], index["example_subject"]) if t == position]
        assert len(subjects) == len(set(subjects)) >= 3  # one example per subject


def test_built_examples_are_the_rendered_draws(built):
    """An example is exactly (seed, draw, subject) rendered and standardised: nothing depends on build order."""
    from universeg_datasets import standardize

    _, examples = built
    example = examples[-1]
    draw, label = (int(part[1:]) for part in example["label_name"].decode().split("_"))
    subject = int(example["subject"].decode()[1:])
    image, label_map = DrawModel.sample(3, draw, 4, 32).render(subject)
    np.testing.assert_array_equal(example["image"], standardize.encode_image(image, 32))
    np.testing.assert_array_equal(example["label"], standardize.encode_mask(label_map == label, 32))


def test_different_tasks_mark_different_pixels(built):
    _, examples = built
    first_mask = {}
    for e in examples:
        first_mask.setdefault(e["task"], e["label"][..., 0].astype(float))
    tasks = sorted(first_mask)
    for i, one in enumerate(tasks):
        for other in tasks[i + 1 :]:
            # A task's first example and another task's differ (0 = same mask, 1 = disjoint), whether they are
            # labels of one draw or of different draws.
            a, b = first_mask[one], first_mask[other]
            assert np.abs(a - b).sum() / (a + b).sum() > 0.3, (one, other)


def test_failed_build_leaves_no_dataset(tmp_path, monkeypatch):
    render = DrawModel.render
    calls = []

    def fail_later(self, subject):
        calls.append(subject)
        if len(calls) > 7:  # after some examples were written
            raise RuntimeError("render failed")
        return render(self, subject)

    monkeypatch.setattr(DrawModel, "render", fail_later)
    with pytest.raises(RuntimeError, match="render failed"):
        build(tmp_path, "a")
    assert len(calls) == 8
    assert not list((tmp_path / "a").rglob("dataset_info.json"))
    assert not list((tmp_path / "a").rglob(f"{SyntheticTasks.VERSION}"))


def test_bad_config_is_rejected(tmp_path):
    config = SyntheticConfig(name="bad_size32", size=32, num_tasks=4, subjects=2, labels_per_draw=1)
    with pytest.raises(ValueError, match="labels_per_draw"):
        SyntheticTasks(config=config, data_dir=str(tmp_path)).download_and_prepare()
    assert not list(tmp_path.rglob("dataset_info.json"))


def test_default_configs():
    configs = {c.name: c for c in SyntheticTasks.BUILDER_CONFIGS}
    assert configs["size128"].num_tasks < 100 and configs["tasks1000_size128"].num_tasks == 1000
    assert synthetic_tasks.SyntheticTasks.default_builder_config.name == "size128"
    assert str(SyntheticTasks.VERSION) in SyntheticTasks.RELEASE_NOTES


# --------------------------------------------------------------------------------------------- draws and subjects


def test_render_is_a_pure_function_of_seed_draw_subject():
    model = DrawModel.sample(seed=1, draw=2, max_labels=3, size=32)
    fresh = DrawModel.sample(seed=1, draw=2, max_labels=3, size=32)
    late = [model.render(s) for s in range(6)][5]  # other subjects rendered first
    for a, b in zip(late, fresh.render(5)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(model.render(4)[0], model.render(5)[0])


def test_every_family_appears_and_renders(models):
    """Each layout, appearance, both kinds of subject variation and clutter appear in 80 draws; every draw
    renders float32 images and int32 label maps of its labels, at several sizes."""
    assert {m.layout.family for m in models} == set(synthetic_tasks.LAYOUTS)
    assert {m.appearance.family for m in models} == set(synthetic_tasks.APPEARANCES)
    assert {m.independent for m in models} == {True, False}
    assert any(m.appearance.clutter for m in models) and any(not m.appearance.clutter for m in models)
    assert any("mimic" in (m.appearance.clutter or {}) for m in models)
    for family in synthetic_tasks.LAYOUTS:
        for size in (32, 64):
            model = find(lambda m: m.layout.family == family, size=size)
            image, label_map = model.render(0)
            assert image.shape == label_map.shape == (size, size)
            assert image.dtype == np.float32 and label_map.dtype == np.int32 and np.isfinite(image).all()
            assert 0 <= label_map.min() and label_map.max() < model.labels
    assert all(2 <= m.labels <= 8 for m in models)
    assert all(m.labels <= 3 for m in draws(40, max_labels=3))


def test_templates_hold_every_label(models):
    for model in models:
        if not model.independent:
            assert len(np.unique(model.template)) == model.labels, model.family


def kappa(first: np.ndarray, second: np.ndarray) -> float:
    """Cohen's kappa of two label maps: 0 for unrelated layouts, 1 for identical ones."""
    chance = sum(np.mean(first == k) * np.mean(second == k) for k in np.union1d(first, second))
    return float((np.mean(first == second) - chance) / (1.0 - chance))


def test_templated_draws_deform_one_layout():
    for family in ("noise", "voronoi", "nested"):
        model = find(lambda m: m.layout.family == family and not m.independent)
        maps = [model.render(s)[1] for s in range(4)]
        for other in maps[1:]:  # deformed (not copies), but the same layout (not unrelated)
            assert 0.3 < kappa(maps[0], other) and np.mean(maps[0] == other) < 0.995, family


def test_independent_draws_change_the_layout_and_keep_the_appearance():
    for family in ("noise", "voronoi", "blobs"):
        model = find(lambda m: m.layout.family == family and m.independent and m.appearance.family == "intensity")
        subjects = [model.render(s) for s in range(6)]
        assert abs(kappa(subjects[0][1], subjects[1][1])) < 0.2, family  # unrelated layouts
        # ... but each label keeps its brightness relative to the others (per-subject gamma, bias and jitter
        # move the levels, not their order)
        levels = np.array(
            [
                [image[label_map == k].mean() if (label_map == k).any() else np.nan for k in range(model.labels)]
                for image, label_map in subjects
            ]
        )
        reference = np.argsort(model.means)
        for row in levels:
            present = [k for k in reference if not np.isnan(row[k])]
            if len(set(np.round(model.means[present], 6))) == len(present):
                assert np.corrcoef(row[present], model.means[present])[0, 1] > 0.8, (family, row, model.means)


# --------------------------------------------------------------------------------------------- layout shapes


def test_draws_mix_large_regions_and_small_objects():
    """Label areas range from below 1 % (scattered objects, lines) to large regions."""
    areas = []
    for model in draws(30, size=64):
        _, label_map = model.render(0)
        areas.extend(np.bincount(label_map.ravel(), minlength=model.labels) / label_map.size)
    assert min(areas) < 0.01 and max(areas) > 0.5


def test_blobs_come_in_many_sizes_and_counts():
    models = [m for m in draws(120, size=64) if m.layout.family == "blobs"]
    counts, radii = [], []
    for model in models:
        _, label_map = model.render(0)
        for label in model.layout.objects:
            objects, count = ndimage.label(label_map == label)
            counts.append(count)
            if count:
                radii.append(np.sqrt(np.bincount(objects.ravel())[1:].mean() / np.pi))
    assert max(counts) >= 30 and min(counts) <= 3  # many small objects and a few big ones
    assert min(radii) < 2.0 and max(radii) > 6.0


def test_lines_are_thin():
    """Vessels, membranes and Voronoi cell borders: eroding by 2 px removes nearly all of them."""
    checked = set()
    for model in draws(120, size=64):
        if not model.layout.fine or model.layout.family not in ("curvilinear", "voronoi"):
            continue
        _, label_map = model.render(0)
        for label in model.layout.fine:
            mask = label_map == label
            if mask.sum() > 20:
                assert ndimage.binary_erosion(mask, iterations=2).sum() < 0.1 * mask.sum(), model.family
                assert mask.mean() < 0.35
                checked.add(f"{model.layout.family}/{model.layout.params.get('kind', 'cells')}")
    assert checked == {"curvilinear/vessels", "curvilinear/membranes", "voronoi/cells"}


def test_nested_cores_sit_inside_rings():
    for model in [m for m in draws(60, size=64) if m.layout.family == "nested"][:4]:
        _, label_map = model.render(1)
        for layer in range(2, model.labels):
            core = label_map == layer
            if core.any():
                rim = ndimage.binary_dilation(core) & ~core
                assert np.mean(label_map[rim] == 0) < 0.05, model.family  # a core hardly ever touches background
                assert np.isin(label_map[rim], [layer - 1, layer + 1]).mean() > 0.9


def test_voronoi_cells_are_polygons_of_several_labels():
    model = find(lambda m: m.layout.family == "voronoi" and not m.layout.fine)
    _, label_map = model.render(0)
    regions = sum(ndimage.label(label_map == k)[1] for k in range(model.labels))
    assert regions >= model.labels and len(np.unique(label_map)) >= 2


# --------------------------------------------------------------------------------------------- appearances


def test_intensity_levels_are_distinct():
    """Intensity draws: label levels at least 0.4 / labels apart (except blob classes that share a level on
    purpose, told apart by size and shape)."""
    for model in draws(60, seed=3):
        if model.appearance.family != "intensity":
            continue
        means = model.appearance.means
        distinct = np.unique(np.round(means, 9))
        assert np.diff(distinct).min() >= 0.4 / model.labels - 1e-9 if len(distinct) > 1 else True
        if len(distinct) < model.labels:
            assert model.layout.family == "blobs"
            assert len(set(means[list(model.layout.objects)])) == 1


def test_texture_labels_share_a_level_and_differ_in_texture(models):
    model = first(models, lambda m: m.appearance.family == "texture" and len(m.layout.wide()) >= 3)
    wide = model.layout.wide()
    textures = [model.appearance.textures[k] for k in wide]
    assert np.ptp(model.appearance.means[wide]) <= 0.06
    assert len({(kind, round(scale, 1)) for kind, scale, *_ in textures}) == len(wide)


def test_texture_tells_labels_apart_when_brightness_does_not():
    """In the rendered image, texture labels have nearly the same mean brightness but different local
    variation (fine grain or stripes against smooth or coarse)."""
    model = find(
        lambda m: (
            m.appearance.family == "texture"
            and m.layout.family == "noise"
            and {"smooth", "grain"} <= {t[0] for t in m.appearance.textures}
        )
    )
    image, label_map = model.render(0)
    detail = np.abs(image - ndimage.gaussian_filter(image, 1.5))
    wide = [k for k in model.layout.wide() if (label_map == k).sum() > 100]
    means = [image[label_map == k].mean() for k in wide]
    details = [detail[label_map == k].mean() for k in wide]
    assert max(details) > 1.5 * min(details)
    assert np.ptp(means) < 0.25


def test_outline_draws_show_only_the_border():
    """The outlined label's border differs in brightness from its inside."""
    checked = 0
    for model in draws(150, size=64):
        if model.appearance.family != "outline" or model.appearance.clutter:
            continue
        image, label_map = model.render(0)
        inside = label_map == model.appearance.outline
        border = inside & ~ndimage.binary_erosion(inside, iterations=1)
        interior = ndimage.binary_erosion(inside, iterations=4)
        if interior.sum() < 20:
            continue  # objects too small to have an inside away from their border
        assert abs(image[border].mean() - image[interior].mean()) > 0.1, model.family
        checked += 1
    assert checked >= 3


def test_clutter_stays_in_its_host_label():
    rng = np.random.default_rng(0)
    image = np.zeros((48, 48))
    host = np.zeros((48, 48), bool)
    host[:, :24] = True
    clutter = {"host": 0, "count": 60, "radius": 2.0, "level": 1.0, "strokes": False}
    changed = synthetic_tasks.add_clutter(rng, image, host, clutter, 1.0) != image
    assert changed.any() and not changed[~host].any()


def test_objects_of_one_label_get_their_own_brightness():
    from universeg_datasets.synthetic_tasks import object_offsets

    label_map = np.zeros((16, 16), np.int32)
    label_map[2:5, 2:5] = label_map[10:14, 8:12] = 1  # two objects of label 1 on background 0
    offsets = object_offsets(np.random.default_rng(0), label_map, np.array([0.0, 0.2]))
    objects, count = ndimage.label(label_map == 1)
    assert count == 2
    values = [np.unique(offsets[objects == k]) for k in (1, 2)]
    assert all(len(v) == 1 and abs(v[0]) <= 0.2 for v in values) and values[0] != values[1]
    assert not offsets[label_map == 0].any()  # spread 0: the background keeps its level
