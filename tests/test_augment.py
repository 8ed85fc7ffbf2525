"""Augmentations on the device: task augmentation is one transform per episode, in-task differs per example,
identity parameters are the identity, exact transforms are exact, labels stay binary, keys decide everything."""

import functools

import jax
import numpy as np
import pytest
from scipy import ndimage

from universeg_jax.data import augment

SIZE = 24
N = 5  # examples per episode: 4 support + 1 query


def episodes(seed=0, batch=2, identical=False):
    """A uint8 batch of ``batch`` episodes of ``N`` examples: smooth images with a bright disc, its label."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    images, labels = [], []
    for _ in range(batch * N):
        cy, cx, r = rng.uniform(7, 17), rng.uniform(7, 17), rng.uniform(3, 7)
        label = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r**2).astype(np.uint8)
        image = np.clip(40 + 150 * label + 60 * rng.random((SIZE, SIZE)), 0, 255).astype(np.uint8)
        images.append(image)
        labels.append(label)
    images = np.stack(images).reshape(batch, N, SIZE, SIZE, 1)
    labels = np.stack(labels).reshape(batch, N, SIZE, SIZE, 1)
    if identical:
        images, labels = np.repeat(images[:, :1], N, 1), np.repeat(labels[:, :1], N, 1)
    return {
        "support_images": images[:, :-1],
        "support_labels": labels[:, :-1],
        "query": images[:, -1],
        "query_label": labels[:, -1],
        "episode": np.arange(batch, dtype=np.int32) + 100 * seed,
    }


@functools.lru_cache(maxsize=None)
def compiled(in_task, task, seed=0):
    """Jitted EpisodeAugmenter for configs given as hashable ``((name, ((param, value), ...)), ...)``."""
    as_dict = lambda c: {name: dict(params) for name, params in c} if c is not None else None
    return jax.jit(augment.EpisodeAugmenter(as_dict(in_task), as_dict(task), seed))


def frozen(config):
    return tuple(
        (name, tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in params.items()))
        for name, params in config.items()
    )


def run(batch, in_task=None, task=None, seed=0):
    out = compiled(frozen(in_task) if in_task else None, frozen(task) if task else None, seed)(batch)
    out = {k: np.asarray(v) for k, v in out.items()}
    images = np.concatenate([out["support_images"], out["query"][:, None]], 1)[..., 0]
    labels = np.concatenate([out["support_labels"], out["query_label"][:, None]], 1)[..., 0]
    return images, labels


@jax.jit
def _to_float(x):
    return x.astype(np.float32) / 255.0  # as XLA rounds it (a multiplication by 1/255)


def plain(batch):
    """The episode batch as float32 (N-major), without augmentation."""
    images = np.concatenate([batch["support_images"], batch["query"][:, None]], 1)[..., 0]
    labels = np.concatenate([batch["support_labels"], batch["query_label"][:, None]], 1)[..., 0]
    return np.asarray(_to_float(images)), labels.astype(np.float32)


def check_valid(images, labels, binary=True):
    assert images.dtype == labels.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert labels.min() >= 0.0 and labels.max() <= 1.0
    if binary:
        assert set(np.unique(labels)) <= {0.0, 1.0}


ALL_ON = {name: {"p": 1.0} for name in augment.AUGMENTATIONS}


@pytest.mark.parametrize("p", [0.5, 1.0])
def test_task_augmentation_applies_one_transform_to_the_whole_episode(p):
    batch = episodes(1, batch=4, identical=True)  # every example of an episode is the same image
    images, labels = run(batch, task={name: {"p": p} for name in augment.AUGMENTATIONS})
    check_valid(images, labels)
    for i in range(1, N):
        np.testing.assert_array_equal(images[:, i], images[:, 0])
        np.testing.assert_array_equal(labels[:, i], labels[:, 0])
    assert not np.array_equal(images[0, 0], images[1, 0])  # episodes draw their own transforms


def test_in_task_augmentation_differs_per_example():
    batch = episodes(2, identical=True)
    images, labels = run(batch, in_task={"affine": {"p": 1.0}, "noise": {"p": 1.0, "std": (0.02, 0.05)}})
    check_valid(images, labels)
    for i in range(1, N):
        assert not np.array_equal(images[:, i], images[:, 0])


@pytest.mark.parametrize("p", [0.5, 1.0])
def test_every_augmentation_keeps_ranges_and_binary_labels(p):
    config = {name: {"p": p} for name in augment.AUGMENTATIONS}
    for seed in range(3):
        images, labels = run(episodes(3 + 10 * seed), in_task=config, task=config)
        check_valid(images, labels)


def test_same_key_same_output_and_other_episodes_other_output():
    batch = episodes(4)
    first, second = run(batch, in_task=ALL_ON, task=ALL_ON), run(batch, in_task=ALL_ON, task=ALL_ON)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    moved = dict(batch, episode=batch["episode"] + 1)
    assert not np.array_equal(run(moved, in_task=ALL_ON, task=ALL_ON)[0], first[0])
    noise = {"noise": {"p": 1.0}}
    assert not np.array_equal(run(batch, in_task=noise, seed=0)[0], run(batch, in_task=noise, seed=1)[0])


def test_probability_zero_and_no_augmentation_are_only_the_conversion_to_float():
    batch = episodes(5)
    zero = {name: {"p": 0.0} for name in augment.AUGMENTATIONS}
    for images, labels in (run(batch, in_task=zero, task=zero), run(batch)):
        want_images, want_labels = plain(batch)
        np.testing.assert_array_equal(images, want_images)
        np.testing.assert_array_equal(labels, want_labels)


IDENTITY = {
    "affine": {"degrees": 0.0, "scale": (1.0, 1.0), "translate": 0.0, "shear": 0.0},
    "elastic": {"alpha": (0.0, 0.0)},
    "brightness_contrast": {"brightness": 0.0, "contrast": (1.0, 1.0)},
    "blur": {"sigma": (0.0, 0.0)},
    "noise": {"std": (0.0, 0.0)},
    "sharpness": {"amount": (0.0, 0.0)},
    "dilate_erode": {"radius": (0, 0)},
}


@pytest.mark.parametrize("name", sorted(IDENTITY))
def test_identity_parameters_give_the_identity(name):
    batch = episodes(6)
    images, labels = run(batch, in_task={name: {"p": 1.0, **IDENTITY[name]}})
    want_images, want_labels = plain(batch)
    np.testing.assert_allclose(images, want_images, atol=1e-6)
    np.testing.assert_array_equal(labels, want_labels)


@pytest.mark.parametrize(
    "config, transform",
    [
        ({"hflip": {"p": 1.0}}, lambda x: x[..., ::-1]),
        ({"vflip": {"p": 1.0}}, lambda x: x[..., ::-1, :]),
        ({"hflip": {"p": 1.0}, "vflip": {"p": 1.0}}, lambda x: x[..., ::-1, ::-1]),
        (
            {"affine": {"p": 1.0, "degrees": (90, 90), "scale": (1, 1), "translate": 0, "shear": 0}},
            lambda x: np.rot90(x, 1, axes=(-2, -1)),
        ),
        (
            {"affine": {"p": 1.0, "degrees": (-90, -90), "scale": (1, 1), "translate": 0, "shear": 0}},
            lambda x: np.rot90(x, -1, axes=(-2, -1)),
        ),
        (
            {"affine": {"p": 1.0, "degrees": (180, 180), "scale": (1, 1), "translate": 0, "shear": 0}},
            lambda x: x[..., ::-1, ::-1],
        ),
        ({"flip_labels": {"p": 1.0}}, None),
    ],
)
def test_flips_and_right_angle_rotations_are_exact(config, transform):
    batch = episodes(7)
    images, labels = run(batch, task=config)
    want_images, want_labels = plain(batch)
    if transform is None:  # flip_labels
        np.testing.assert_array_equal(images, want_images)
        np.testing.assert_array_equal(labels, 1 - want_labels)
        return
    np.testing.assert_array_equal(images, transform(want_images))
    np.testing.assert_array_equal(labels, transform(want_labels))


def test_intensity_and_label_operations_match_their_definitions():
    batch = episodes(8)
    x, y = plain(batch)
    images, _ = run(batch, task={"flip_intensities": {"p": 1.0}})
    np.testing.assert_allclose(images, 1 - x, atol=1e-6)
    images, _ = run(batch, task={"blur": {"p": 1.0, "sigma": (1.2, 1.2)}})
    blurred = np.stack([ndimage.gaussian_filter(im, 1.2) for im in x.reshape(-1, SIZE, SIZE)]).reshape(x.shape)
    np.testing.assert_allclose(images, blurred, atol=1e-5)
    _, labels = run(batch, task={"sobel_edges": {"p": 1.0}})
    edges = [np.hypot(ndimage.sobel(m, 0), ndimage.sobel(m, 1)) > 0 for m in y.reshape(-1, SIZE, SIZE)]
    np.testing.assert_array_equal(labels, np.stack(edges).reshape(y.shape))
    _, labels = run(batch, task={"morph_gradient": {"p": 1.0, "radius": 1}})
    bands = [ndimage.binary_dilation(m) & ~ndimage.binary_erosion(m) for m in y.reshape(-1, SIZE, SIZE) > 0]
    np.testing.assert_array_equal(labels, np.stack(bands).reshape(y.shape))
    _, labels = run(batch, task={"dilate_erode": {"p": 1.0, "radius": (2, 2)}})
    for episode in range(labels.shape[0]):  # the episode's coin picks dilation or erosion, twice
        masks = y[episode] > 0
        grown = np.stack([ndimage.binary_dilation(m, iterations=2) for m in masks])
        shrunk = np.stack([ndimage.binary_erosion(m, iterations=2) for m in masks])
        assert np.array_equal(labels[episode], grown) or np.array_equal(labels[episode], shrunk)


def test_spatial_transforms_move_image_and_label_together():
    batch = episodes(9)
    images, labels = run(batch, in_task={"affine": {"p": 1.0}, "elastic": {"p": 1.0}}, task={"affine": {"p": 1.0}})
    check_valid(images, labels)
    # The disc is bright and the background dark in every source image: after warping they still are.
    inside, outside = images[labels > 0], images[(labels == 0) & (images > 0)]
    assert inside.mean() > outside.mean() + 0.3


@pytest.mark.parametrize(
    "config, message",
    [
        ({"rotate": {"p": 0.5}}, "unknown in-task augmentation"),
        ({"blur": {"p": 1.5}}, "probability p=1.5"),
        ({"blur": {"p": 0.5, "radius": 3}}, r"blur: bad parameters \['radius'\]"),
        ({"blur": {"p": 0.5, "sigma": (2.0, 1.0)}}, "low must not exceed high"),
        ({"dilate_erode": {"p": 0.5, "radius": (-1, 1)}}, "must be >= 0"),
        ({"morph_gradient": {"p": 0.5, "radius": 0}}, "must be >= 1"),
    ],
)
def test_bad_augmentation_config_is_rejected(config, message):
    with pytest.raises(ValueError, match=message):
        augment.Augmenter(config, shared=False)
