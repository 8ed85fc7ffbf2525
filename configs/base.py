"""UniverSeg training configs: the paper's setup and presets for this CPU, a TPU pod slice and a GPU node.

Run (any field can be overridden, e.g. ``--config.train.steps=100``):

  python -m universeg_jax.main --config=configs/base.py --workdir=/tmp/universeg          # paper setup
  python -m universeg_jax.main --config=configs/base.py:cpu --workdir=/tmp/universeg_cpu  # minutes on a laptop
  python -m universeg_jax.main --config=configs/base.py:tpu_pod --workdir=gs://BUCKET/run
  python -m universeg_jax.main --config=configs/base.py:gpu_node --workdir=/shared/run

Augmentation entries are ``name: {p: probability, **parameters}`` (see ``universeg_jax/data/augment.py``);
set ``p=0`` to switch one off. Probabilities follow the paper's ranges (0.25-0.5) and are a starting point to tune.
"""

import ml_collections

from universeg_jax.data.contract import DEFAULT_HELD_OUT

PRESETS = ("default", "cpu", "tpu_pod", "gpu_node")


def _augmentations() -> tuple[ml_collections.ConfigDict, ml_collections.ConfigDict]:
    """(in-task, task) augmentation lists of the paper (UniverSeg paper, section 3.3 and appendix)."""
    in_task = ml_collections.ConfigDict(
        {
            "affine": {"p": 0.25, "degrees": 10.0, "scale": (0.9, 1.1), "translate": 0.05, "shear": 5.0},
            "brightness_contrast": {"p": 0.5, "brightness": 0.1, "contrast": (0.8, 1.2)},
            "blur": {"p": 0.25, "sigma": (0.1, 1.0)},
            "noise": {"p": 0.25, "std": (0.0, 0.05)},
            "sharpness": {"p": 0.25, "amount": (0.0, 2.0)},
            "elastic": {"p": 0.25, "alpha": (0.0, 0.05), "sigma": (0.06, 0.12)},
        }
    )
    task = ml_collections.ConfigDict(
        {
            "flip_intensities": {"p": 0.5},
            "flip_labels": {"p": 0.5},
            "sobel_edges": {"p": 0.5},
            "hflip": {"p": 0.5},
            "vflip": {"p": 0.5},
            "affine": {"p": 0.5, "degrees": 180.0, "scale": (0.8, 1.1), "translate": 0.1, "shear": 10.0},
            "brightness_contrast": {"p": 0.5, "brightness": 0.1, "contrast": (0.8, 1.2)},
            "blur": {"p": 0.5, "sigma": (0.1, 1.5)},
            "noise": {"p": 0.5, "std": (0.0, 0.05)},
            "sharpness": {"p": 0.5, "amount": (0.0, 2.0)},
            "elastic": {"p": 0.25, "alpha": (0.0, 0.08), "sigma": (0.06, 0.12)},
            "dilate_erode": {"p": 0.5, "radius": (1, 2)},
            "morph_gradient": {"p": 0.5, "radius": 1},
        }
    )
    return in_task, task


def get_config(preset: str = "default") -> ml_collections.ConfigDict:
    preset = preset or "default"
    if preset not in PRESETS:
        raise ValueError(f"unknown config preset {preset!r}; choose one of {PRESETS}")
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.model = ml_collections.ConfigDict()
    config.model.encoder_blocks = (64, 64, 64, 64)  # v1 (1,182,785 parameters)
    config.model.decoder_blocks = ()  # empty: the encoder's reversed, minus the last
    config.model.dtype = "float32"  # compute dtype; "bfloat16" on TPU/GPU. Parameters stay float32.
    # Recompute elementwise work in the backward pass, keeping conv outputs. Measured on CPU for v1 (B=1, S=64):
    # no memory saving and 8% slower, because this model's large tensors are conv outputs (docs/training.md).
    config.model.remat = False

    config.data = ml_collections.ConfigDict()
    # TFDS dataset names, or name/config ("embedded" = all built-in ones; on the command line a comma-separated
    # list: --config.data.datasets=a,b). Every task needs support_size + 1 subjects; of the built-in datasets,
    # these have tasks that large. Name your MegaMedical datasets here.
    config.data.datasets = ("synthetic_tasks", "mni152_tissue")
    # The held-out suite (universeg_jax.data.contract.DEFAULT_HELD_OUT): kept out of training, evaluated every
    # train.eval_every steps.
    config.data.held_out = DEFAULT_HELD_OUT
    config.data.data_dir = ""  # TFDS data dir (gs:// works); "" = $TFDS_DATA_DIR or ~/tensorflow_datasets
    # Build (or rebuild, if stale) embedded datasets on first use; False: use what data_dir holds as it is (no
    # builder code or data-package imports, e.g. on a machine with prepared data and no network).
    config.data.build = True
    config.data.size = 128
    config.data.support_size = 64
    config.data.dataset_weights = ""  # "name=weight,..." (default 1 each); tasks share their dataset's weight
    config.data.task_weights = ""  # "task_id=weight,..." within a dataset (default 1 each)
    # Let tasks with fewer than support_size + 1 subjects fill their support with repeated subjects (each copy
    # augmented on its own; never the query's subject) instead of leaving them out.
    config.data.repeat_subjects = False
    # Share of the episodes replaced by a task generated on the device inside the train step
    # (universeg_jax/data/synthetic.py: unbounded distinct tasks, no storage); 0 = only stored tasks.
    config.data.synthetic_share = 0.0
    # Share of the stored episodes whose labels become one superpixel (a joint k-means cluster) of their own
    # images, inside the step (universeg_jax/data/superpixels.py); 0 = the stored labels only.
    config.data.superpixel_share = 0.0
    # The host only samples episodes and copies their uint8 examples (augmentation runs on the devices, inside
    # the train step), so one process keeps up with a GPU at support 64 (docs/training.md#measured).
    config.data.num_workers = 0  # episode-building worker processes (0 = a thread of the training process)
    config.data.prefetch = 4  # batches buffered per worker
    config.data.device_prefetch = 2  # batches placed on the devices ahead of the step

    config.augment = ml_collections.ConfigDict()
    config.augment.in_task, config.augment.task = _augmentations()

    config.train = ml_collections.ConfigDict()
    config.train.steps = 100_000
    config.train.batch_size = 1  # global number of episodes (queries) per step; a multiple of the device count
    config.train.loss = "soft_dice"  # or "cross_entropy", "soft_dice_cross_entropy"
    config.train.log_every = 50
    config.train.eval_every = 1_000  # steps between held-out evaluations (0 = never; needs data.held_out)
    config.train.eval_episodes = 64
    # Start from these weights instead of random ones (fine-tuning): "v1", a .safetensors/.pt file or a training
    # run directory; the architecture must match config.model. A run that resumes from its checkpoint ignores it.
    config.train.init_weights = ""
    # Trace train.profile_steps steps from step train.profile_start with jax.profiler (WORKDIR/profile; 0 = off).
    config.train.profile_steps = 0
    config.train.profile_start = 10
    # Stop after this many seconds of training (0 = no limit), saving a checkpoint as on SIGTERM (one process only).
    config.train.max_seconds = 0.0
    # Persistent XLA compilation cache (e.g. a folder on a local disk or gs://): restarts skip recompilation.
    config.train.compilation_cache_dir = ""

    config.optim = ml_collections.ConfigDict()
    config.optim.lr = 1e-4  # Adam, as in the paper
    config.optim.schedule = "constant"  # after warmup; or "cosine" down to lr * final_lr_ratio
    config.optim.warmup_steps = 1_000
    config.optim.final_lr_ratio = 0.1
    config.optim.clip_norm = 1.0  # global gradient norm clip (0 = off)
    # Exponential moving average of the weights (0 = off), kept in the train state and checkpointed; evaluation
    # and export then use it. With a constant learning rate it stands in for the decay a cosine schedule gives,
    # and it does not depend on train.steps, so a run can be extended in legs (docs/training.md#campaign).
    config.optim.ema_decay = 0.0

    config.checkpoint = ml_collections.ConfigDict()
    config.checkpoint.every = 1_000
    config.checkpoint.keep_last = 3
    config.checkpoint.keep_every = 10_000  # also keep every checkpoint at a multiple of this (0 = no)

    if preset == "cpu":
        # A small model on small episodes: trains on a 2-core machine in minutes on the built-in tasks.
        config.model.encoder_blocks = (16, 16, 16)
        config.data.datasets = ("embedded",)
        config.data.size = 64
        config.data.support_size = 7  # brain_atlases tasks have 8 slices (subjects) each
        config.train.steps = 300
        config.train.batch_size = 2
        config.train.log_every = 10
        config.train.eval_every = 100
        config.train.eval_episodes = 16
        config.optim.lr = 1e-3
        config.optim.warmup_steps = 20
        config.checkpoint.every = 50
        config.checkpoint.keep_every = 0
    elif preset in ("tpu_pod", "gpu_node"):
        # Accelerators: bfloat16 compute, cosine decay, two episode-building workers per host.
        config.model.dtype = "bfloat16"
        config.data.num_workers = 2
        config.train.log_every = 100
        config.optim.schedule = "cosine"
        if preset == "tpu_pod":  # a pod slice (e.g. v4-32: 16 chips): 4 episodes of support 64 per chip
            config.train.batch_size = 64
            config.optim.lr = 3e-4
        else:  # one node of 8 GPUs: 2 episodes of support 64 per GPU
            config.train.batch_size = 16
            config.optim.lr = 2e-4
    return config
