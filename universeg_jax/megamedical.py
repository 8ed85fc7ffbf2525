"""Real MegaMedical tasks for evaluation, built from the raw files of their releases.

Two of the paper's six held-out datasets, WBC and STARE, and other MegaMedical datasets that no preset here trains
on, evaluated beside the held-out suite (``configs/evaluate.py:megamedical``, docs/evaluation.md). Their licences
do not allow redistribution: the files stay wherever the user downloaded them, named by ``config.manual_dir`` or
``$UNIVERSEG_JAX_MEGAMEDICAL``, and are built into the TFDS data dir on first use (seconds each).

The folder is either a TFDS manual dir (each dataset's release folder, e.g. ``segmentation_WBC/``, directly inside)
or one folder per dataset named after its builder with the release folder inside (``wbc/segmentation_WBC/``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

ENV = "UNIVERSEG_JAX_MEGAMEDICAL"
# WBC and STARE are held out in the paper; the others are datasets no preset here trains on.
DATASETS = (
    "wbc",
    "stare",
    "kvasir_seg",
    "msd_hippocampus",
    "bbbc038",
    "isbi_em",
    "drive",
    "lgg_flair",
    "chexplanation",
)


def release_root(name: str, root) -> Path | None:
    """The manual dir that holds ``name``'s release folder under ``root`` (``root`` or ``root/name``), or None."""
    from universeg_datasets import registry

    folder = registry.builder_class(name).RAW_FOLDER
    root = Path(root).expanduser()
    return next((candidate for candidate in (root, root / name) if (candidate / folder).is_dir()), None)


def build(names: Sequence[str], root, data_dir, size: int) -> tuple[list[str], dict[str, str]]:
    """Builds (once) each raw dataset of ``names`` found under ``root`` into ``data_dir`` at ``size``.

    Returns (the names built or already built, name -> why not for the others: absent, or the builder's error).
    """
    from universeg_datasets import registry

    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"config.manual_dir={str(root)!r} is not a directory: name the folder that holds "
            f"the raw MegaMedical downloads (or set ${ENV})"
        )
    built, failed = [], {}
    for name in names:
        manual_dir = release_root(name, root)
        if manual_dir is None:
            failed[name] = f"no {registry.builder_class(name).RAW_FOLDER}/ in {root} or {root / name}"
            continue
        try:
            registry.build(name, config=f"size{size}", data_dir=data_dir, manual_dir=manual_dir)
        except Exception as error:  # a release that does not build must not stop the others' evaluation
            failed[name] = f"{type(error).__name__}: {str(error).strip().splitlines()[-1][:300]}"
            continue
        built.append(name)
    for name, reason in failed.items():
        logging.warning("MegaMedical dataset %s is left out of the evaluation: %s", name, reason)
    return built, failed


def prepare(datasets: Sequence[str], manual_dir, data_dir, size: int) -> list[str]:
    """``datasets`` less the raw ones that could not be built from ``manual_dir`` (built into ``data_dir`` at
    ``size`` first); an error when none is left."""
    from universeg_datasets import registry

    _, failed = build([d for d in datasets if d in registry.RAW], manual_dir, data_dir, size)
    kept = [d for d in datasets if d not in failed]
    if not kept:
        raise ValueError(
            f"none of config.datasets could be built from config.manual_dir={str(manual_dir)!r}: "
            + "; ".join(f"{name}: {why}" for name, why in failed.items())
        )
    return kept
