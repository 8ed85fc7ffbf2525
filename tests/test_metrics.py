"""Dice on hand-made masks, the empty-mask convention, and input checks."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from universeg_jax import metrics


def mask(shape, *pixels):
    m = np.zeros(shape, bool)
    for p in pixels:
        m[p] = True
    return m


def test_identical_masks_score_one():
    m = mask((4, 4), (0, 0), (1, 2), (3, 3))
    assert metrics.dice(m, m) == 1.0


def test_disjoint_masks_score_zero():
    assert metrics.dice(mask((4, 4), (0, 0), (0, 1)), mask((4, 4), (3, 3))) == 0.0


def test_both_empty_is_one_by_convention():
    empty = np.zeros((5, 5), bool)
    assert metrics.dice(empty, empty) == 1.0


def test_empty_truth_with_a_prediction_scores_zero_and_vice_versa():
    empty, some = np.zeros((5, 5), bool), mask((5, 5), (2, 2))
    assert metrics.dice(some, empty) == 0.0
    assert metrics.dice(empty, some) == 0.0


def test_half_overlap_exact_value():
    # prediction: left half of a 4x4 image (8 px); truth: top half (8 px); overlap: top-left quarter (4 px).
    prediction, truth = np.zeros((4, 4), bool), np.zeros((4, 4), bool)
    prediction[:, :2] = True
    truth[:2, :] = True
    assert metrics.dice(prediction, truth) == pytest.approx(2 * 4 / (8 + 8))  # 0.5


def test_prediction_inside_truth():
    # 2 predicted pixels inside a 4-pixel truth: 2*2 / (2+4) = 2/3.
    truth = mask((3, 3), (0, 0), (0, 1), (1, 0), (1, 1))
    assert metrics.dice(mask((3, 3), (0, 0), (1, 1)), truth) == pytest.approx(2 / 3)


def test_batched_dice_is_per_example_and_accepts_0_1_floats():
    truth = np.stack([mask((4, 4), (0, 0)), np.zeros((4, 4), bool), mask((4, 4), (1, 1), (2, 2))])
    prediction = np.stack([mask((4, 4), (0, 0)), np.zeros((4, 4), bool), mask((4, 4), (1, 1))]).astype(np.float32)
    np.testing.assert_allclose(metrics.dice(prediction, truth), [1.0, 1.0, 2 * 1 / 3])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=36))
def test_dice_matches_set_definition_and_is_symmetric(pairs):
    a = np.array([p for p, _ in pairs])[None]
    b = np.array([t for _, t in pairs])[None]
    pred_set = {i for i, (p, _) in enumerate(pairs) if p}
    true_set = {i for i, (_, t) in enumerate(pairs) if t}
    expected = 1.0 if not pred_set and not true_set else 2 * len(pred_set & true_set) / (len(pred_set) + len(true_set))
    assert metrics.dice(a, b) == pytest.approx(expected)
    assert metrics.dice(a, b) == metrics.dice(b, a)


def test_binarize_thresholds_inclusive():
    np.testing.assert_array_equal(metrics.binarize(np.array([0.2, 0.5, 0.9])), [False, True, True])
    np.testing.assert_array_equal(metrics.binarize(np.array([0.2, 0.5, 0.9]), 0.8), [False, False, True])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: metrics.dice(np.zeros((2, 2)), np.zeros((3, 3))), "same shape"),
        (lambda: metrics.dice(np.full((2, 2), 0.7), np.zeros((2, 2))), "binary mask"),
        (lambda: metrics.dice(np.zeros(3, bool), np.zeros(3, bool)), "spatial axes"),
        (lambda: metrics.binarize(np.array([np.nan])), "NaN"),
        (lambda: metrics.binarize(np.array([1.5])), r"\[0, 1\]"),
        (lambda: metrics.binarize(np.array([0.5]), threshold=1.0), "threshold"),
        (lambda: metrics.mean_std([]), "at least one"),
    ],
)
def test_bad_inputs_are_rejected(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_mean_std_is_population_std():
    assert metrics.mean_std([0.2, 0.4]) == pytest.approx((0.3, 0.1))
    assert metrics.mean_std([0.7]) == (0.7, 0.0)


def test_training_step_dice_is_the_evaluation_dice():
    """train.hard_dice (jitted, on logits) and metrics.dice (evaluation, on masks) are one formula, empty cases
    included."""
    import jax
    import jax.numpy as jnp

    from universeg_jax import train

    rng = np.random.default_rng(0)
    labels = rng.random((5, 8, 8, 1)) < 0.3
    labels[1] = False  # empty truth, non-empty prediction -> 0
    logits = rng.normal(size=(5, 8, 8, 1)).astype(np.float32)
    logits[2], labels[2] = -1.0, False  # both empty -> 1
    expected = metrics.dice(logits[..., 0] > 0, labels[..., 0])
    got = jax.jit(train.hard_dice)(jnp.asarray(logits), jnp.asarray(labels, jnp.float32))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-6)
    assert expected[1] == 0.0 and expected[2] == 1.0
