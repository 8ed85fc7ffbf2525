"""Superpixel labels generated inside the train step (universeg_jax/data/superpixels.py)."""

import jax
import numpy as np
import pytest

from tests.conftest import random_episodes
from universeg_jax.data import augment, superpixels
from universeg_jax.train import validate_config


def two_region_images(n=4, size=32, seed=0):
    """Dark left halves, bright right halves, the border shifted a little per image, with noise."""
    rng = np.random.default_rng(seed)
    images = np.empty((n, size, size), np.float32)
    for i in range(n):
        border = size // 2 + rng.integers(-3, 4)
        images[i, :, :border], images[i, :, border:] = 40, 210
    return np.clip(images + rng.normal(0, 8, images.shape), 0, 255).astype(np.float32)


def test_a_label_is_one_compact_region_of_one_brightness_in_every_image():
    images = two_region_images()
    labelled = jax.jit(superpixels.superpixel_labels)
    for seed in range(6):
        labels = np.asarray(labelled(jax.random.key(seed), images))
        assert labels.shape == images.shape and set(np.unique(labels)) <= {0.0, 1.0}
        assert labels.any()
        inside = images[labels > 0]
        assert inside.std() < 20  # one brightness: never across the dark/bright border
        assert labels.mean() < 0.4  # a part of one region (12 clusters share the two), not a whole half
        np.testing.assert_array_equal(labels, labelled(jax.random.key(seed), images))  # a pure function of the key
    assert len({np.asarray(labelled(jax.random.key(s), images)).tobytes() for s in range(6)}) > 1


def test_share_one_relabels_every_episode_and_keeps_its_images():
    batch = random_episodes()
    plain = jax.jit(augment.EpisodeAugmenter(None, None, 0))(batch)
    relabelled = jax.jit(augment.EpisodeAugmenter(None, None, 0, superpixel_share=1.0))(batch)
    for key in ("query", "support_images"):
        np.testing.assert_array_equal(plain[key], relabelled[key])
    for key in ("query_label", "support_labels"):
        assert not np.array_equal(plain[key], relabelled[key])


def test_share_is_a_coin_per_episode():
    batch = random_episodes(b=64, s=1, size=16)
    relabelled = jax.jit(augment.EpisodeAugmenter(None, None, 0, superpixel_share=0.5))(batch)
    changed = (np.asarray(relabelled["query_label"]) != batch["query_label"]).any(axis=(1, 2, 3))
    assert 16 < changed.sum() < 48


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_bad_share_is_named(share):
    with pytest.raises(ValueError, match="data.superpixel_share"):
        augment.EpisodeAugmenter(None, None, 0, superpixel_share=share)
    from configs.base import get_config

    config = get_config("cpu")
    config.data.superpixel_share = share
    with pytest.raises(ValueError, match="data.superpixel_share"):
        validate_config(config)
