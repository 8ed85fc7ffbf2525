"""Superpixel tasks on the training images, generated inside the train step (labels in the spirit of ScribblePrompt).

With ``data.superpixel_share`` of the episodes, the stored label is replaced by a superpixel label of the episode's
own images. The images of one episode (one task: one modality, one kind of image) are clustered jointly in (row,
column, intensity) by a few k-means steps, and the new label is one cluster, in every image: a compact region of
one brightness at one place. Clustered jointly, it is the same region across the episode's images, so the support
set defines it as a real task's labels do, while the number of such tasks is unbounded and costs no storage.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

CLUSTERS = 12
ITERATIONS = 6
INTENSITY_WEIGHT = 2.0  # intensity (0-1) against position (0-1): above 1 favours regions of one brightness


def superpixel_labels(key: jax.Array, images: jax.Array) -> jax.Array:
    """``(N, H, W)`` labels (0/1): one cluster of the joint k-means of ``images`` ``(N, H, W)`` (0-255)."""
    n, h, w = images.shape
    rows = jnp.broadcast_to(jnp.linspace(0.0, 1.0, h)[None, :, None], (n, h, w))
    columns = jnp.broadcast_to(jnp.linspace(0.0, 1.0, w)[None, None, :], (n, h, w))
    features = jnp.stack([rows, columns, INTENSITY_WEIGHT * images / 255.0], axis=-1).reshape(-1, 3)
    seeds_key, target_key = jax.random.split(key)
    seeds = jax.random.choice(seeds_key, features.shape[0], (CLUSTERS,), replace=False)

    def assign(centroids):
        return jnp.argmin(jnp.sum((features[:, None] - centroids[None]) ** 2, axis=-1), axis=1)

    def update(centroids, _):
        members = jax.nn.one_hot(assign(centroids), CLUSTERS, dtype=jnp.float32)
        counts = members.sum(axis=0)[:, None]
        means = (members.T @ features) / jnp.maximum(counts, 1.0)
        return jnp.where(counts > 0, means, centroids), None

    centroids, _ = jax.lax.scan(update, features[seeds], None, length=ITERATIONS)
    clusters = assign(centroids)
    target = clusters[jax.random.randint(target_key, (), 0, clusters.shape[0])]  # a pixel's: never empty
    return (clusters == target).reshape(n, h, w).astype(jnp.float32)


def replace_with_superpixels(key: jax.Array, share: float, images: jax.Array, labels: jax.Array):
    """With probability ``share`` (one coin per episode), the episode's ``(N, H, W)`` labels become a superpixel
    label of its images; the images stay."""
    if share <= 0:
        return labels
    coin, task = jax.random.split(jax.random.fold_in(key, 0x5B9))
    use = jax.random.uniform(coin) < share
    return jnp.where(use, superpixel_labels(task, images), labels)
