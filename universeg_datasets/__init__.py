"""TFDS builders that turn medical image datasets into standardised 2D binary segmentation tasks.

What they write (the embedded dataset names, the task index, the sizes) is ``universeg_jax.data.contract``.
Modules are imported lazily through ``universeg_datasets.registry`` so that importing the package stays cheap.
"""
