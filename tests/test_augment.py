"""Augmentations: task augmentation is one transform per episode, in-task differs per example, labels stay binary."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from universeg_jax.data import augment

ALL_ON = {name: {"p": 1.0} for name in augment.AUGMENTATIONS}
SIZE = 24


def example(seed, n=1):
    """``n`` copies of one random image (smooth blob intensities) and its binary disc label."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    cy, cx, r = rng.uniform(8, 16), rng.uniform(8, 16), rng.uniform(3, 7)
    label = (((yy - cy) ** 2 + (xx - cx) ** 2) <= r**2).astype(np.float32)[..., None]
    image = np.clip(0.2 + 0.6 * label + 0.1 * rng.random((SIZE, SIZE, 1)), 0, 1).astype(np.float32)
    return np.repeat(image[None], n, 0), np.repeat(label[None], n, 0)


def check_valid(images, labels, n):
    assert images.shape == labels.shape == (n, SIZE, SIZE, 1)
    assert images.dtype == labels.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert set(np.unique(labels)) <= {0.0, 1.0}


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), p=st.sampled_from([0.5, 1.0]))
def test_task_augmentation_applies_one_transform_to_the_whole_episode(seed, p):
    images, labels = example(seed, n=5)
    config = {name: {"p": p} for name in augment.AUGMENTATIONS}
    out_images, out_labels = augment.Augmenter(config, shared=True)(np.random.default_rng(seed), images, labels)
    check_valid(out_images, out_labels, 5)
    for i in range(1, 5):
        np.testing.assert_array_equal(out_images[i], out_images[0])
        np.testing.assert_array_equal(out_labels[i], out_labels[0])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_in_task_augmentation_differs_per_example(seed):
    images, labels = example(seed, n=4)
    config = {"affine": {"p": 1.0}, "noise": {"p": 1.0, "std": (0.02, 0.05)}, "elastic": {"p": 0.5}}
    out_images, out_labels = augment.Augmenter(config, shared=False)(np.random.default_rng(seed), images, labels)
    check_valid(out_images, out_labels, 4)
    for i in range(1, 4):
        assert not np.array_equal(out_images[i], out_images[0])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), name=st.sampled_from(sorted(augment.AUGMENTATIONS)))
def test_every_augmentation_keeps_ranges_and_binary_labels(seed, name):
    images, labels = example(seed, n=2)
    out_images, out_labels = augment.Augmenter({name: {"p": 1.0}}, shared=False)(
        np.random.default_rng(seed), images, labels
    )
    check_valid(out_images, out_labels, 2)


def test_same_seed_same_result_and_inputs_untouched():
    images, labels = example(0, n=3)
    before = images.copy(), labels.copy()
    augmenter = augment.Augmenter(ALL_ON, shared=False)
    first = augmenter(np.random.default_rng(7), images, labels)
    second = augmenter(np.random.default_rng(7), images, labels)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    np.testing.assert_array_equal(images, before[0])
    np.testing.assert_array_equal(labels, before[1])


def test_label_and_flip_transforms_do_what_they_say():
    images, labels = example(3)
    image, label = images[0], labels[0]
    rng = np.random.default_rng(0)
    _, flipped = augment.flip_labels(rng, image.shape)(image, label)
    np.testing.assert_array_equal(flipped, 1 - label)
    inverted, _ = augment.flip_intensities(rng, image.shape)(image, label)
    np.testing.assert_allclose(inverted, 1 - image)
    mirrored, mirrored_label = augment.hflip(rng, image.shape)(image, label)
    np.testing.assert_array_equal(mirrored, image[:, ::-1])
    np.testing.assert_array_equal(mirrored_label, label[:, ::-1])
    _, edges = augment.sobel_edges(rng, image.shape)(image, label)
    assert 0 < edges.sum() < label.sum() + (1 - label).sum()
    _, band = augment.morph_gradient(rng, image.shape, radius=1)(image, label)
    assert band[label == 0].sum() > 0 and band[label == 1].sum() > 0  # straddles the boundary
    # An identity affine leaves image and label as they are.
    same, same_label = augment.affine(rng, image.shape, degrees=0, scale=(1, 1), translate=0, shear=0)(image, label)
    np.testing.assert_allclose(same, image, atol=1e-6)
    np.testing.assert_array_equal(same_label, label)


def test_probability_zero_is_identity():
    images, labels = example(1, n=3)
    config = {name: {"p": 0.0} for name in augment.AUGMENTATIONS}
    out_images, out_labels = augment.Augmenter(config, shared=False)(np.random.default_rng(0), images, labels)
    np.testing.assert_array_equal(out_images, images)
    np.testing.assert_array_equal(out_labels, labels)


@pytest.mark.parametrize(
    "config, message",
    [
        ({"rotate": {"p": 0.5}}, "unknown in-task augmentation"),
        ({"blur": {"p": 1.5}}, "probability p=1.5"),
        ({"blur": {"p": 0.5, "radius": 3}}, "blur: bad parameters"),
        ({"blur": {"p": 0.5, "sigma": (2.0, 1.0)}}, "low must not exceed high"),
    ],
)
def test_bad_augmentation_config_is_rejected(config, message):
    with pytest.raises(ValueError, match=message):
        augment.Augmenter(config, shared=False)
