"""Segmenter: preprocessing around the model, ensembling, multi-label, batching, volumes, weights selection."""

import jax
import numpy as np
import pytest
from flax import nnx

from universeg_jax import trained, weights
from universeg_jax import preprocess as pp
from universeg_jax.inference import Segmenter, Support, label_map_from
from universeg_jax.model import UniverSeg


SIZE = (32, 32)


@pytest.fixture(scope="module")
def model():
    return UniverSeg((8, 8), rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def segmenter(model):
    return Segmenter(model, size=SIZE, batch_size=4)


def blobs(n, shape=(40, 48), seed=0, value=1):
    """Random images with a bright disc and its mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    images, labels = [], []
    for _ in range(n):
        cy, cx, r = rng.uniform(10, shape[0] - 10), rng.uniform(10, shape[1] - 10), rng.uniform(4, 9)
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
        images.append((rng.normal(100, 10, shape) + 80 * mask).astype(np.float32))
        labels.append(mask.astype(np.uint8) * value)
    return images, labels


def direct_probabilities(model, query, support):
    """The model called by hand on preprocessed inputs (the reference the Segmenter must match)."""
    q = pp.standardize_image(query, SIZE)[None, ..., None]
    logits = model(q, support.images[None, ..., None], support.masks[0][None, ..., None])
    return np.asarray(jax.nn.sigmoid(logits))[0, ..., 0]


def test_plain_forward_and_k1_ensemble_match_the_model(model, segmenter):
    images, labels = blobs(5)
    support = segmenter.prepare_support(images, labels)
    query = np.random.default_rng(9).random(SIZE).astype(np.float32) * 500
    expected = direct_probabilities(model, query, support)
    plain = segmenter.segment([query], support=support)[0]
    k1 = segmenter.segment([query], support=support, ensemble=1, support_size=5, seed=3)[0]
    assert plain.probabilities.shape == (1,) + SIZE
    np.testing.assert_allclose(plain.probabilities[0], expected, atol=1e-5)
    np.testing.assert_allclose(k1.probabilities, plain.probabilities, atol=1e-6)


def test_ensemble_averages_subsets_and_is_reproducible(segmenter):
    images, labels = blobs(2)
    support = segmenter.prepare_support(images, labels)
    query = [blobs(1, seed=5)[0][0]]
    singles = [
        segmenter.segment(query, support=segmenter.prepare_support([images[i]], [labels[i]]))[0].probabilities
        for i in range(2)
    ]
    a = segmenter.segment(query, support=support, ensemble=2, support_size=1, seed=0)[0].probabilities
    # Each of the 2 members uses one of the 2 examples: the result is one of the possible averages.
    candidates = [(singles[i] + singles[j]) / 2 for i in range(2) for j in range(2)]
    assert any(np.allclose(a, c, atol=1e-5) for c in candidates)
    b = segmenter.segment(query, support=support, ensemble=2, support_size=1, seed=0)[0].probabilities
    np.testing.assert_array_equal(a, b)


def test_different_seeds_pick_different_subsets(segmenter):
    images, labels = blobs(8)
    support = segmenter.prepare_support(images, labels)
    query = [blobs(1, seed=5)[0][0]]
    runs = [
        segmenter.segment(query, support=support, ensemble=2, support_size=3, seed=s)[0].probabilities for s in range(3)
    ]
    assert not (np.array_equal(runs[0], runs[1]) and np.array_equal(runs[0], runs[2]))


def test_native_size_and_dtype_of_outputs(segmenter):
    images, labels = blobs(3)
    rng = np.random.default_rng(1)
    queries = [rng.integers(0, 65535, (512, 384), dtype=np.uint16), rng.random((20, 30, 3)), np.ones((17, 5), bool)]
    results = segmenter.segment(queries, images, labels, threshold=0.3)
    for q, r in zip(queries, results):
        assert r.probabilities.shape == (1,) + q.shape[:2] and r.probabilities.dtype == np.float32
        assert r.label_map.shape == q.shape[:2] and r.label_map.dtype == np.uint8
        assert 0 <= r.probabilities.min() and r.probabilities.max() <= 1
        np.testing.assert_array_equal(r.label_map, (r.probabilities[0] >= 0.3).astype(np.uint8))


def test_label_values_are_kept_in_the_label_map(segmenter):
    images, labels = blobs(3, value=255)
    result = segmenter.segment([images[0]], images, labels, threshold=0.0)[0]
    assert result.label_values == (255,)
    assert set(np.unique(result.label_map)) == {255}  # threshold 0: every pixel is foreground


def test_multi_label_map_gives_one_task_per_structure(segmenter):
    images, labels = blobs(4)
    maps = []
    for i, lab in enumerate(labels):
        m = lab.astype(np.int32) * 3
        m[: 8 + i, :10] = 7
        maps.append(m)
    support = segmenter.prepare_support(images, maps)
    assert support.label_values == (3, 7)
    assert support.masks.shape == (2, 4) + SIZE
    result = segmenter.segment([images[0]], support=support)[0]
    assert result.probabilities.shape == (2,) + images[0].shape
    assert set(np.unique(result.label_map)) <= {0, 3, 7}
    only7 = segmenter.prepare_support(images, maps, label_values=[7])
    np.testing.assert_allclose(
        segmenter.segment([images[0]], support=only7)[0].probabilities[0], result.probabilities[1], atol=1e-5
    )


def test_label_map_from_argmax_with_background():
    probs = np.array([[[0.9, 0.2, 0.6]], [[0.3, 0.4, 0.7]]], np.float32)  # (L=2, 1, 3)
    np.testing.assert_array_equal(label_map_from(probs, (3, 7), 0.5), [[3, 0, 7]])
    assert label_map_from(probs, (3, 300), 0.5).dtype == np.uint16


def test_batching_gives_the_same_results_and_few_compilations(model):
    images, labels = blobs(3)
    queries = blobs(5, seed=2)[0]
    one = Segmenter(model, size=SIZE, batch_size=1)
    four = Segmenter(model, size=SIZE, batch_size=4)
    support = one.prepare_support(images, labels)
    a = [r.probabilities for r in one.segment(queries, support=support)]
    b = [r.probabilities for r in four.segment(queries, support=support)]
    np.testing.assert_allclose(np.stack(a), np.stack(b), atol=1e-5)
    assert four._segment_encoded._cache_size() == 2  # chunks of 4 and of 1: two shapes, compiled once each
    four.segment(queries, support=support)
    assert four._segment_encoded._cache_size() == 2
    assert four._encode._cache_size() == 1


def test_iter_segment_reads_queries_lazily(segmenter):
    images, labels = blobs(3)
    support = segmenter.prepare_support(images, labels)
    read = []

    def queries():
        for i in range(10):
            read.append(i)
            yield images[0]

    stream = segmenter.iter_segment(queries(), support)
    next(stream)
    assert len(read) == segmenter.batch_size  # only the first chunk has been read


def test_support_errors(segmenter):
    images, labels = blobs(3)
    with pytest.raises(ValueError, match="3 support images but 2 support labels"):
        segmenter.prepare_support(images, labels[:2])
    with pytest.raises(ValueError, match="empty"):
        segmenter.prepare_support([], [])
    with pytest.raises(ValueError, match=r"support\[1\]: label shape \(48, 40\)"):
        segmenter.prepare_support(images, [labels[0], labels[1].T, labels[2]])
    with pytest.raises(ValueError, match="every support label is empty"):
        segmenter.prepare_support(images, [np.zeros_like(m) for m in labels])
    with pytest.raises(ValueError, match="non-integer"):
        segmenter.prepare_support(images, [m * 0.5 for m in labels])
    with pytest.raises(ValueError, match="label 9 has no foreground"):
        segmenter.prepare_support(images, labels, label_values=[9])
    with pytest.raises(ValueError, match="NaN"):
        segmenter.prepare_support([np.full((8, 8), np.nan)], [np.ones((8, 8))])
    with pytest.raises(ValueError, match="support_images and support_labels, or a prepared support"):
        segmenter.segment([images[0]], images)


def test_empty_support_label_warns(segmenter):
    images, labels = blobs(3)
    labels[1] = np.zeros_like(labels[1])
    with pytest.warns(UserWarning, match=r"no foreground: support\[1\]"):
        segmenter.prepare_support(images, labels)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"ensemble": 3}, "support_size smaller"),
        ({"ensemble": 0}, "ensemble"),
        ({"support_size": 4}, r"support_size must be an integer in \[1, 3\]"),
        ({"support_size": 0}, "support_size"),
        ({"threshold": 1.5}, "threshold"),
    ],
)
def test_option_errors(segmenter, options, match):
    images, labels = blobs(3)
    support = segmenter.prepare_support(images, labels)
    with pytest.raises(ValueError, match=match):
        segmenter.segment([images[0]], support=support, **options)


def test_query_errors(segmenter):
    images, labels = blobs(3)
    support = segmenter.prepare_support(images, labels)
    with pytest.raises(ValueError, match=r"use \[image\]"):
        segmenter.segment(images[0], support=support)
    assert len(segmenter.segment(np.zeros((2, 8, 8, 3)), support=support)) == 2  # a stack of RGB images
    with pytest.raises(ValueError, match=r"queries\[1\]"):
        segmenter.segment([images[0], np.zeros((4, 4, 2))], support=support)


def test_constructor_errors(model):
    with pytest.raises(TypeError, match="UniverSeg"):
        Segmenter("model")
    with pytest.raises(ValueError, match="multiple of 2"):
        Segmenter(model, size=(33, 32))
    with pytest.raises(ValueError, match="batch_size"):
        Segmenter(model, batch_size=0)
    with pytest.raises(ValueError, match="window"):
        Segmenter(model, window=(1, 1))
    other = Segmenter(model, size=(16, 16))
    images, labels = blobs(2)
    with pytest.raises(ValueError, match="prepared at"):
        other.segment([images[0]], support=Segmenter(model, size=SIZE).prepare_support(images, labels))


def volume_and_label(shape=(12, 40, 36), seed=0):
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.mgrid[: shape[0], : shape[1], : shape[2]]
    label = ((zz - 6) ** 2 / 30 + (yy - 20) ** 2 / 150 + (xx - 18) ** 2 / 120 < 1).astype(np.uint8)
    return (rng.normal(50, 5, shape) + 40 * label).astype(np.float32), label


def test_volume_support_slices_pick_labelled_slices(segmenter):
    volume, label = volume_and_label()
    partly = label.copy()
    partly[:, :, :17] = 0  # only slices 17.. along axis 2 are labelled
    images, labels, indices = segmenter.volume_support_slices(volume, partly, axis=2, count=4)
    assert len(images) == len(labels) == len(indices) == 4
    assert all(i >= 17 and labels[k].any() for k, i in enumerate(indices))
    assert images[0].shape == (12, 40) and 0 <= min(map(np.min, images)) and max(map(np.max, images)) <= 1
    _, _, chosen = segmenter.volume_support_slices(volume, label, axis=0, indices=[2, 5])
    assert chosen == [2, 5]
    with pytest.raises(ValueError, match="indices"):
        segmenter.volume_support_slices(volume, label, axis=0, indices=[12])
    with pytest.raises(ValueError, match="no foreground"):
        segmenter.volume_support_slices(volume, np.zeros_like(label))
    with pytest.raises(ValueError, match="does not match"):
        segmenter.volume_support_slices(volume, label[:, :, :5])
    with pytest.raises(ValueError, match="axis"):
        segmenter.volume_support_slices(volume, label, axis=3)


def test_segment_volume_shape_and_axis(segmenter):
    volume, label = volume_and_label()
    images, labels, _ = segmenter.volume_support_slices(volume, label, axis=0)
    support = segmenter.prepare_support(images, labels, normalize=False)
    result = segmenter.segment_volume(volume[..., None], support, axis=0)
    assert result.probabilities.shape == (1,) + volume.shape + (1,)
    assert result.label_map.shape == volume.shape + (1,) and result.label_map.dtype == np.uint8
    moved = segmenter.segment_volume(np.moveaxis(volume, 0, 2), support, axis=2)
    np.testing.assert_allclose(np.moveaxis(moved.probabilities[0], 2, 0), result.probabilities[0, ..., 0], atol=1e-5)
    with pytest.raises(ValueError, match="3D volume"):
        segmenter.segment_volume(volume[0], support)


def test_prepare_support_rejects_unnormalised_images_when_told_they_are(segmenter):
    images, labels = blobs(2)
    with pytest.raises(ValueError, match=r"\[0, 1\] when normalize=False"):
        segmenter.prepare_support(images, labels, normalize=False)


def load_model(spec):
    return trained.load(spec)[0]


def test_load_model_sources(tmp_path, model, monkeypatch):
    monkeypatch.setattr(trained, "DEFAULT_WEIGHTS", tmp_path / "absent.safetensors")
    with pytest.raises(FileNotFoundError, match="--weights v1"):
        load_model(None)
    path = weights.save(model, tmp_path / "run" / "export" / "model.safetensors")
    assert load_model(path).encoder_blocks == model.encoder_blocks
    assert load_model(tmp_path / "run").encoder_blocks == model.encoder_blocks  # a run directory
    monkeypatch.setattr(trained, "DEFAULT_WEIGHTS", path)
    assert isinstance(load_model(None), UniverSeg)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .safetensors export"):
        load_model(tmp_path / "empty")
    weights.save(model, tmp_path / "run" / "other.safetensors")
    with pytest.raises(ValueError, match="several"):
        load_model(tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="neither a known name"):
        load_model(tmp_path / "missing.safetensors")
    (tmp_path / "w.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"\.safetensors, \.pt or \.pth"):
        load_model(tmp_path / "w.bin")
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="bad.safetensors"):
        load_model(tmp_path / "bad.safetensors")


def test_load_model_official_pt(request):
    path = request.config.rootpath / "tests" / "data" / "universeg_v1_torch_seed0.pt"
    loaded = load_model(path)
    assert loaded.encoder_blocks == ((64, 64),) * 4


def test_support_is_a_plain_record(segmenter):
    images, labels = blobs(3)
    support = segmenter.prepare_support(images, labels)
    assert isinstance(support, Support) and len(support) == 3
    assert support.images.dtype == support.masks.dtype == np.float32
    assert set(np.unique(support.masks)) == {0.0, 1.0}


def test_weights_carry_the_size_they_were_trained_at(tmp_path, model):
    path = weights.save(model, tmp_path / "m.safetensors", image_size=(32, 48))
    assert Segmenter.from_weights(path).size == (32, 48)
    assert Segmenter.from_weights(path, size=(64, 64)).size == (64, 64)
    assert Segmenter.from_weights(weights.save(model, tmp_path / "plain.safetensors")).size == (128, 128)


def test_a_training_workdir_gives_its_latest_checkpoint_at_its_size(tmp_path):
    from tests.conftest import FakeTaskStore, tiny_config
    from universeg_jax import checkpoint, train

    config = tiny_config(**{"train.steps": 2, "checkpoint.every": 2})
    train.train(config, str(tmp_path / "run"), train_store=FakeTaskStore())
    model, how = trained.load(tmp_path / "run")
    assert how.size == (32, 32)
    restored = checkpoint.load_model(tmp_path / "run")
    assert jax.tree.all(jax.tree.map(np.array_equal, nnx.state(model, nnx.Param), nnx.state(restored, nnx.Param)))
    assert Segmenter.from_weights(tmp_path / "run").size == (32, 32)
