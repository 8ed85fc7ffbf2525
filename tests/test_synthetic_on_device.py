"""Tasks generated inside the train step (universeg_jax/data/synthetic.py) and their place in the augmenter."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import random_episodes
from universeg_jax.data import augment, synthetic


@pytest.fixture(scope="module")
def task():
    return jax.jit(synthetic.synthesize_task, static_argnums=(1, 2, 3))


def test_task_shapes_ranges_and_determinism(task):
    images, labels = task(jax.random.key(0), 9, 64, 48)
    assert images.shape == labels.shape == (9, 64, 48)
    images, labels = np.asarray(images), np.asarray(labels)
    assert np.isfinite(images).all() and images.min() >= 0 and images.max() <= 255
    assert set(np.unique(labels)) <= {0.0, 1.0}
    again_images, again_labels = task(jax.random.key(0), 9, 64, 48)
    np.testing.assert_array_equal(images, again_images)
    np.testing.assert_array_equal(labels, again_labels)
    other_images, _ = task(jax.random.key(1), 9, 64, 48)
    assert not np.allclose(images, other_images)


def test_tasks_are_defined_by_appearance_and_are_learnable(task):
    """Across many tasks: targets are neither empty nor everything on average, every example has its own layout,
    and the target's pixels differ in brightness from the rest (what a support set can teach)."""
    fractions, contrasts, layouts_differ = [], [], []
    for seed in range(24):
        images, labels = map(np.asarray, task(jax.random.key(seed), 4, 64, 64))
        fractions.append(labels.mean())
        layouts_differ.append(not np.array_equal(labels[0], labels[1]))
        inside, outside = images[labels > 0], images[labels == 0]
        if inside.size and outside.size:
            contrasts.append(abs(inside.mean() - outside.mean()))
    assert 0.05 < np.mean(fractions) < 0.7
    assert np.mean(layouts_differ) > 0.8
    assert np.median(contrasts) > 10  # grey levels of 255


def test_share_zero_leaves_episodes_and_share_one_replaces_all():
    episodes = random_episodes()
    plain = jax.jit(augment.EpisodeAugmenter(None, None, 0))(episodes)
    off = jax.jit(augment.EpisodeAugmenter(None, None, 0, synthetic_share=0.0))(episodes)
    on = jax.jit(augment.EpisodeAugmenter(None, None, 0, synthetic_share=1.0))(episodes)
    for key in plain:
        np.testing.assert_array_equal(plain[key], off[key])
    np.testing.assert_allclose(plain["query"], episodes["query"] / 255.0, rtol=1e-6)
    for key in plain:
        assert not np.allclose(plain[key], on[key]), key
    assert float(jnp.min(on["support_images"])) >= 0 and float(jnp.max(on["support_images"])) <= 1


def test_share_is_a_coin_per_episode():
    episodes = random_episodes(b=64, s=1, size=16)
    on = jax.jit(augment.EpisodeAugmenter(None, None, 0, synthetic_share=0.5))(episodes)
    replaced = ~np.isclose(np.asarray(on["query"]), episodes["query"] / 255.0).all(axis=(1, 2, 3))
    assert 16 < replaced.sum() < 48


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_bad_share_is_named(share):
    with pytest.raises(ValueError, match="data.synthetic_share"):
        augment.EpisodeAugmenter(None, None, 0, synthetic_share=share)
