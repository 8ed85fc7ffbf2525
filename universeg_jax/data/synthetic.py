"""Synthetic segmentation tasks generated inside the train step: an unbounded number of distinct tasks at no storage.

A task is "segment label t" of a random label-map distribution (SynthMorph-like): every example's label map is the
argmax of up to ``MAX_LABELS`` smooth random fields (coarse and fine noise mixed by a per-task weight, so tasks
range from a few large regions to many small ones); every label has one intensity and texture strength for the
whole task, so the target is defined by its appearance, never by its position; each example gets its own
multiplicative bias field and pixel noise. The episode augmentation (``augment.EpisodeAugmenter``) then deforms,
blurs and flips these like any stored episode.

Images are float32 on the uint8 scale (0-255) and labels 0/1, the layout of the stored episodes they replace.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

MAX_LABELS = 8
COARSE, FINE, BIAS = 4, 16, 4  # sides of the low-resolution noise grids, upsampled to the image size


def _smooth_noise(key: jax.Array, shape: tuple[int, ...], grid: int, h: int, w: int) -> jax.Array:
    """Gaussian noise on a ``grid x grid`` lattice, upsampled bilinearly to ``(..., h, w)``."""
    noise = jax.random.normal(key, (*shape, grid, grid), jnp.float32)
    return jax.image.resize(noise, (*shape, h, w), "linear")


def synthesize_task(key: jax.Array, n: int, h: int, w: int) -> tuple[jax.Array, jax.Array]:
    """``n`` examples ``(n, h, w)`` of one random task: images in [0, 255], binary labels of the target label."""
    keys = jax.random.split(key, 9)
    labels_in_task = jax.random.randint(keys[0], (), 2, MAX_LABELS + 1)
    target = jax.random.randint(keys[1], (), 0, labels_in_task)
    fineness = jax.random.uniform(keys[2], ())  # 0: a few large regions, 1: many small ones
    means = jax.random.uniform(keys[3], (MAX_LABELS,))
    textures = jax.random.uniform(keys[4], (MAX_LABELS,), maxval=0.15)

    fields = (1 - fineness) * _smooth_noise(keys[5], (n, MAX_LABELS), COARSE, h, w) + fineness * _smooth_noise(
        keys[6], (n, MAX_LABELS), FINE, h, w
    )
    present = jnp.arange(MAX_LABELS)[None, :, None, None] < labels_in_task
    label_map = jnp.argmax(jnp.where(present, fields, -jnp.inf), axis=1)  # (n, h, w)

    image = means[label_map] + textures[label_map] * jax.random.normal(keys[7], (n, h, w))
    image = image * jnp.exp(0.3 * _smooth_noise(keys[8], (n,), BIAS, h, w))
    low = image.min(axis=(1, 2), keepdims=True)
    high = image.max(axis=(1, 2), keepdims=True)
    image = (image - low) / jnp.maximum(high - low, 1e-6)
    return 255.0 * image, (label_map == target).astype(jnp.float32)


def replace_with_synthetic(key: jax.Array, share: float, images: jax.Array, labels: jax.Array):
    """With probability ``share`` (one coin per episode), the episode's ``(N, H, W)`` images and labels become a
    synthetic task's."""
    if share <= 0:
        return images, labels
    coin, task = jax.random.split(jax.random.fold_in(key, 0x5E7))
    synthetic_images, synthetic_labels = synthesize_task(task, *images.shape)
    use = jax.random.uniform(coin) < share
    return jnp.where(use, synthetic_images, images), jnp.where(use, synthetic_labels, labels)
