"""The classical baselines on tiny synthetic tasks where the right answer is known."""

import numpy as np
import pytest

from universeg_jax import baselines, metrics

SIZE = 32


def disc_task(n, *, rng, disc_level, other_level=None, background=0.1):
    """Images with a disc (the label) of brightness ``disc_level`` at a random place, optionally a square of
    ``other_level`` elsewhere, plus noise."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    images, labels = [], []
    for _ in range(n):
        image = background + 0.03 * rng.standard_normal((SIZE, SIZE))
        if other_level is not None:
            y, x = rng.integers(0, SIZE - 8, 2)
            image[y : y + 8, x : x + 8] = other_level
        cy, cx = rng.uniform(8, SIZE - 8, 2)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= rng.uniform(3, 6) ** 2
        image[disc] = disc_level + 0.03 * rng.standard_normal(disc.sum())
        images.append(np.clip(image, 0, 1))
        labels.append(disc)
    return np.stack(images)[..., None].astype(np.float32), np.stack(labels)[..., None].astype(np.float32)


def mean_dice(probabilities, labels):
    return float(metrics.dice(metrics.binarize(probabilities), labels[..., 0] > 0.5).mean())


@pytest.fixture(scope="module")
def bright_task():
    rng = np.random.default_rng(0)
    return disc_task(8, rng=rng, disc_level=0.9), disc_task(6, rng=rng, disc_level=0.9)


def test_every_baseline_returns_probabilities_of_the_query_shape(bright_task):
    (images, labels), (queries, _) = bright_task
    for name in baselines.BASELINES:
        predictor = baselines.make_baseline(name)
        out = predictor(images, labels, queries)
        assert predictor.name == name
        assert out.shape == (len(queries), SIZE, SIZE) and out.dtype == np.float32
        assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


def test_spatial_prior_is_the_mean_support_label(bright_task):
    (images, labels), (queries, _) = bright_task
    out = baselines.SpatialPrior()(images, labels, queries)
    for q in range(len(queries)):
        np.testing.assert_allclose(out[q], labels[..., 0].mean(axis=0), atol=1e-6)


def test_intensity_model_beats_the_spatial_prior_when_foreground_is_bright(bright_task):
    (images, labels), (queries, truth) = bright_task
    intensity = mean_dice(baselines.IntensityModel()(images, labels, queries), truth)
    prior = mean_dice(baselines.SpatialPrior()(images, labels, queries), truth)
    assert intensity > 0.9
    assert intensity > prior + 0.3


def test_intensity_model_can_select_an_intensity_band():
    # Foreground at mid intensity, a brighter distractor: a threshold on raw intensity cannot separate them.
    rng = np.random.default_rng(1)
    (images, labels), (queries, truth) = (disc_task(8, rng=rng, disc_level=0.5, other_level=0.95) for _ in range(2))
    assert mean_dice(baselines.IntensityModel()(images, labels, queries), truth) > 0.85


def test_intensity_model_with_an_all_background_support_predicts_background(bright_task):
    (images, labels), (queries, _) = bright_task
    out = baselines.IntensityModel()(images, np.zeros_like(labels), queries)
    assert out.max() == 0.0


def test_nearest_neighbour_copies_the_label_of_the_most_similar_support_image(bright_task):
    (images, labels), _ = bright_task
    queries = images[[5, 2]] * 0.8 + 0.05  # brightness/contrast changes do not change the correlation
    out = baselines.make_baseline("nearest_neighbour")(images, labels, queries)
    np.testing.assert_array_equal(out, labels[[5, 2], ..., 0])


def test_label_fusion_weights_more_similar_images_more():
    images = np.zeros((3, 4, 4, 1), np.float32)
    images[0, :2] = 1.0  # identical to the query
    images[1, :, :2] = 1.0  # uncorrelated with it
    images[2, 2:] = 1.0  # anti-correlated: weight ~0
    labels = np.stack([np.full((4, 4, 1), v, np.float32) for v in (1.0, 0.0, 0.0)])
    out = baselines.LabelFusion(k=3)(images, labels, images[:1])
    assert out[0, 0, 0] > 0.99


@pytest.mark.parametrize(
    "args, message",
    [
        ((np.zeros((2, 8, 8)), np.zeros((2, 8, 8)), np.zeros((1, 8, 8))), r"\(N, H, W, 1\)"),
        ((np.zeros((0, 8, 8, 1)), np.zeros((0, 8, 8, 1)), np.zeros((1, 8, 8, 1))), "empty"),
        ((np.zeros((2, 8, 8, 1)), np.zeros((3, 8, 8, 1)), np.zeros((1, 8, 8, 1))), "shape of support_images"),
        ((np.zeros((2, 8, 8, 1)), np.zeros((2, 8, 8, 1)), np.zeros((1, 4, 4, 1))), "sizes must match"),
        ((np.full((2, 8, 8, 1), 2.0), np.zeros((2, 8, 8, 1)), np.zeros((1, 8, 8, 1))), r"\[0, 1\]"),
        ((np.full((2, 8, 8, 1), np.nan), np.zeros((2, 8, 8, 1)), np.zeros((1, 8, 8, 1))), "NaN"),
    ],
)
def test_bad_episodes_are_rejected_with_the_argument_named(args, message):
    with pytest.raises(ValueError, match=message):
        baselines.SpatialPrior()(*args)


def test_unknown_baseline_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown baseline 'atlas'.*spatial_prior"):
        baselines.make_baseline("atlas")
