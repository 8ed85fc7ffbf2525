"""The recipe for the project's default model (``universeg_jax/assets/default.safetensors``): one GPU run.

Made for one H200 with no network and minutes of time: ``benchmarks/gpu/run.sh`` runs it after the GPU
benchmarks for the time the lease leaves (setting ``train.steps`` from the measured step time), builds its
synthetic tasks on the machine's CPUs meanwhile, and brings the weights home; they are then evaluated on a CPU
with the full protocol on the held-out suite, which no preset trains on (docs/evaluation.md#results):

  bash benchmarks/gpu/prepare.sh                     # here: wheels and the prepared real datasets to carry
  bash benchmarks/gpu/run.sh OUT 470                 # there: benchmarks, then this recipe (docs/training.md#gpu)
  python -m universeg_jax.main --mode=evaluate --config=configs/evaluate.py --workdir=runs/eval_default \
      --config.weights=OUT/default.safetensors

On any GPU machine with the data built, the recipe alone:

  python -m universeg_jax.main --config=configs/default_model.py --workdir=runs/default_model \
      --config.train.steps=6000

The v1 architecture at 128x128 in bfloat16, support 16, 32 episodes per step. Tasks: 2,000 synthetic tasks of
many families (the bulk of the variety), rule-made labels on real microscopy and histology images, the MNI152
tissue maps and two nuclei datasets. Datasets with fewer than 17 subjects per task repeat support subjects
(``data.repeat_subjects``) rather than drop out. Task augmentation at half the paper's probabilities (0.25).
Loss: soft Dice plus cross-entropy (soft Dice alone collapsed a probe to "foreground everywhere").
Preset ``cpu``: the recipe at the probe size for 9,000 steps (about an hour on 2 CPU cores; its record is in
docs/evaluation.md#results). Preset ``tiny``: the same pipeline at a size a CPU runs in a minute
(``benchmarks/gpu/device_run.py --scale tiny``). Preset ``probe``: the same data and schedule at a size a 2-core
CPU trains in minutes, for the side-by-side probes of ``benchmarks/probe_recipe.py`` that chose the settings above
(docs/training.md#probes).
"""

from configs import base
from universeg_jax.data.contract import DEFAULT_HELD_OUT

PRESETS = ("gpu", "tiny", "probe", "cpu")


def get_config(preset: str | None = None):
    preset = preset or "gpu"
    if preset not in PRESETS:
        raise ValueError(f"unknown default-model preset {preset!r}; choose one of {PRESETS}")
    config = base.get_config("gpu_node")
    config.model.encoder_blocks = (64, 64, 64, 64)
    config.model.dtype = "bfloat16"
    config.data.datasets = (
        "synthetic_tasks/tasks2000_size128",
        "real_synthetic_labels",
        "mni152_tissue",
        "bbbc007_nuclei",
        "cells3d_nuclei",
    )
    config.data.dataset_weights = (
        "synthetic_tasks=4,real_synthetic_labels=2,mni152_tissue=1,bbbc007_nuclei=1,cells3d_nuclei=1"
    )
    config.data.held_out = DEFAULT_HELD_OUT
    config.data.size = 128
    config.data.support_size = 16
    config.data.repeat_subjects = True
    config.data.num_workers = 8
    for augmentation in config.augment.task.values():
        augmentation.p = 0.25
    config.train.batch_size = 32
    config.train.steps = 6_000
    config.train.loss = "soft_dice_cross_entropy"  # soft Dice alone collapsed a probe (docs/training.md#probes)
    config.train.log_every = 50
    config.train.eval_every = 0  # evaluated afterwards, on a CPU, with the full protocol
    config.optim.lr = 5e-4
    config.optim.schedule = "cosine"
    config.optim.warmup_steps = 200
    config.optim.final_lr_ratio = 0.05
    config.checkpoint.every = 500
    if preset == "tiny":
        config.model.encoder_blocks = (8, 8)
        config.data.datasets = ("synthetic_tasks/size128", "mni152_tissue", "bbbc007_nuclei", "cells3d_nuclei")
        config.data.dataset_weights = "synthetic_tasks=4,mni152_tissue=1,bbbc007_nuclei=1,cells3d_nuclei=1"
        config.data.support_size = 4
        config.data.num_workers = 1
        config.train.batch_size = 2
        config.train.log_every = 5
        config.checkpoint.every = 50
    elif preset in ("probe", "cpu"):
        config.model.encoder_blocks = (32, 32, 32, 32)
        config.model.dtype = "float32"
        config.data.datasets = tuple(
            name.replace("tasks2000_size128", "tasks2000_size64") for name in config.data.datasets
        )
        config.data.size = 64
        config.data.support_size = 8
        config.data.num_workers = 0
        config.train.batch_size = 4
        hour_long = preset == "cpu"
        config.train.steps = 9_000 if hour_long else 1_000
        config.train.eval_every = config.train.steps  # once, at the end
        config.train.eval_episodes = 128
        config.optim.warmup_steps = 200 if hour_long else 50
        config.checkpoint.every = 500 if hour_long else 1_000
    return config
