"""The campaign: one model trained in legs on whatever machine has time, each leg continuing the last.

  python -m universeg_jax.campaign --budget=45m            # a leg: resume campaign/state, train, evaluate, record

The current CPU recipe at the probe size (configs/default_model.py:probe: width 32, 4 levels, 64x64, support 8,
4 episodes per step, soft Dice + cross-entropy, the recipe's data and task augmentation) with a constant learning
rate after its warmup and a moving average of the weights, which is what the leg evaluates and what an export
takes. A cosine schedule ends at a step fixed in advance; a constant rate with a moving average has no end, so
legs of any length add up to one run (docs/training.md#campaign).

The fields that fix the data stream and the shapes (checkpoint.RESUME_FIELDS) must not change once the campaign
has a state: a leg with other values is refused. Everything else (learning rate, decay, augmentation
probabilities, logging, checkpoint interval) may change between legs.
"""

from configs import default_model


def get_config(preset: str | None = None):
    if preset:
        raise ValueError(f"configs/campaign.py has no presets, got {preset!r}")
    config = default_model.get_config("probe")
    config.optim.schedule = "constant"
    config.optim.warmup_steps = 200  # only the first leg warms up: the step count carries on
    config.optim.ema_decay = 0.999  # averages over about the last 1,000 steps (6 minutes on 2 CPU cores)
    config.train.steps = 1_000_000_000  # a leg stops at its wall-clock budget (train.max_seconds), not here
    config.train.eval_every = 0  # the leg evaluates the average afterwards with configs/evaluate.py:check
    config.train.log_every = 100
    config.checkpoint.every = 1_000  # and at the end of the leg, or on SIGTERM
    config.checkpoint.keep_last = 1  # the campaign state keeps one
    config.checkpoint.keep_every = 0
    return config
