"""universeg-jax: UniverSeg universal medical image segmentation in JAX/Flax NNX."""
