"""Training checkpoints: model, optimizer, step (and the weights' moving average, if kept), saved together by orbax.

Layout under ``WORKDIR``: ``checkpoints/<step>/state`` plus ``config.json`` (the run's config, so a trained model
can be rebuilt with ``load_model(WORKDIR)``). The data position needs no saving: it is the step (global batch t
holds episodes [t * B, (t + 1) * B)). Saves are asynchronous and atomic (orbax writes to a temporary directory
and renames it when complete), so a killed run never leaves a checkpoint that looks finished but is not;
leftover temporary directories are removed on the next start.
"""

from __future__ import annotations

import contextlib
import json
import logging

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from flax import nnx
from orbax.checkpoint import checkpoint_managers as policies

from universeg_jax.data.tasks import dataset_names
from universeg_jax.model import UniverSeg

STATE = "state"
CHECKPOINTS = "checkpoints"
CONFIG_FILE = "config.json"
# Config fields that fix the data stream or the shapes of a run: a resumed run must keep them. (The number of
# processes may change: global batches do not depend on it.)
RESUME_FIELDS = (
    "seed",
    "model.encoder_blocks",
    "model.decoder_blocks",
    "data.datasets",
    "data.held_out",
    "data.size",
    "data.support_size",
    "data.dataset_weights",
    "data.task_weights",
    "data.repeat_subjects",
    "train.batch_size",
)
# Fields that name datasets, compared as the names they list (runs before 2026-12 saved them as "a,b" strings).
NAME_FIELDS = ("data.datasets", "data.held_out")
# A run keeps a moving average of its weights (``ema_params`` in the state) when this is > 0; evaluation and
# export then use it. It may change between restarts, but not between 0 and > 0.
EMA_FIELD = "optim.ema_decay"


def checkpoint_dir(workdir: epath.PathLike) -> epath.Path:
    """``workdir/checkpoints`` as an absolute path (orbax refuses relative ones; gs:// paths are absolute)."""
    workdir = epath.Path(workdir)
    return (workdir if workdir.is_absolute() else epath.Path(workdir.resolve())) / CHECKPOINTS


def is_run(path: epath.PathLike) -> bool:
    """Whether ``path`` is a training run directory (its config and a checkpoints folder)."""
    path = epath.Path(path)
    return (path / CHECKPOINTS).is_dir() and (path / CONFIG_FILE).is_file()


def read_config(workdir: epath.PathLike) -> dict:
    """The config a run was trained with, as saved by ``write_config``."""
    path = epath.Path(workdir) / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: {workdir} is not a training workdir")
    return json.loads(path.read_text())


def has_checkpoint(workdir: epath.PathLike) -> bool:
    """Whether ``workdir`` holds a finalized checkpoint (orbax's rule: not an interrupted save), i.e. a run to
    resume."""
    directory = checkpoint_dir(workdir)
    return directory.exists() and bool(ocp.utils.checkpoint_steps(directory))


def make_manager(
    workdir: epath.PathLike, *, save_every: int, keep_last: int, keep_every: int = 0
) -> ocp.CheckpointManager:
    """Saves every ``save_every`` steps and on preemption; keeps the newest ``keep_last`` checkpoints and,
    if ``keep_every > 0``, every checkpoint whose step is a multiple of ``keep_every``."""
    keep = [policies.LatestN(keep_last)]
    if keep_every > 0:
        keep.append(policies.EveryNSteps(keep_every))
    options = ocp.CheckpointManagerOptions(
        save_decision_policy=policies.AnySavePolicy(
            [policies.FixedIntervalPolicy(save_every), policies.PreemptionCheckpointingPolicy()]
        ),
        preservation_policy=policies.AnyPreservationPolicy(keep),
        enable_async_checkpointing=True,
        cleanup_tmp_directories=True,
    )
    return ocp.CheckpointManager(checkpoint_dir(workdir), options=options, item_names=(STATE,))


def save(manager: ocp.CheckpointManager, step: int, state, *, force: bool = False) -> bool:
    """Starts an asynchronous save if the policy (or ``force``) asks for one; returns whether it did.

    Device arrays are copied to host before this returns, so the caller may donate them to the next step.
    """
    if manager.latest_step() == step:
        return False
    return manager.save(step, args=ocp.args.Composite(**{STATE: ocp.args.StandardSave(state)}), force=force)


def restore_latest(manager: ocp.CheckpointManager, state):
    """The latest checkpoint restored onto ``state``'s shapes, dtypes and shardings; ``None`` if there is no
    checkpoint yet."""
    step = manager.latest_step()
    if step is None:
        return None
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
    restored = manager.restore(step, args=ocp.args.Composite(**{STATE: ocp.args.StandardRestore(abstract)}))
    logging.info("restored checkpoint of step %d from %s", step, manager.directory)
    return restored[STATE]


def check_resumable(workdir: epath.PathLike, config_dict: dict) -> None:
    """Fails, naming the fields, when resuming the run in ``workdir`` with ``config_dict`` would change its data
    stream or shapes (``RESUME_FIELDS``): its saved step would then point into other episodes. Other fields
    (``train.steps``, logging, evaluation, checkpointing, the learning rate, augmentation probabilities, the
    compute dtype, the number of processes) may change between restarts."""
    if not (epath.Path(workdir) / CONFIG_FILE).exists():
        return
    saved = read_config(workdir)
    current = json.loads(json.dumps(config_dict, sort_keys=True, default=list))  # tuples compare as lists

    def lookup(tree, dotted):
        for part in dotted.split("."):
            tree = tree.get(part) if isinstance(tree, dict) else None
        return list(dataset_names(tree)) if dotted in NAME_FIELDS and tree is not None else tree

    changed = [
        f"{field}: {lookup(saved, field)!r} -> {lookup(current, field)!r}"
        for field in RESUME_FIELDS
        if lookup(saved, field) != lookup(current, field)
    ]
    if bool(lookup(saved, EMA_FIELD)) != bool(lookup(current, EMA_FIELD)):  # the saved state has it or not
        changed.append(
            f"{EMA_FIELD}: {lookup(saved, EMA_FIELD)!r} -> {lookup(current, EMA_FIELD)!r} (turns the "
            "moving average of the weights on or off)"
        )
    if changed:
        raise ValueError(
            f"{workdir} holds a run with another config; resuming it with this one would change its data or "
            f"shapes ({'; '.join(changed)}). Use a new --workdir (with train.init_weights={str(workdir)!r} to "
            "start from its model), or restore these fields"
        )


def write_config(workdir: epath.PathLike, config_dict: dict) -> None:
    """Writes the run's config as JSON (temporary name, then rename)."""
    path = epath.Path(workdir) / CONFIG_FILE
    tmp = path.parent / f".{path.name}.tmp"
    tmp.write_text(json.dumps(config_dict, indent=2, sort_keys=True, default=list))
    tmp.replace(path)


@contextlib.contextmanager
def _read_only_notices_dropped():
    """Orbax warns, through absl, that a read-only manager is read-only (on every segment, app and export that
    reads a run): nothing a user can act on."""

    def keep(record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "read_only=True" not in message and "directory is read only" not in message

    absl_logger = logging.getLogger("absl")
    absl_logger.addFilter(keep)
    try:
        yield
    finally:
        absl_logger.removeFilter(keep)


def load_model(workdir: epath.PathLike, step: int | None = None) -> UniverSeg:
    """The model of a training run (latest checkpoint unless ``step``), for evaluation or export: the moving
    average of its weights when the run keeps one (``optim.ema_decay > 0``), else its parameters."""
    workdir = epath.Path(workdir)
    config = read_config(workdir)
    model_config = config["model"]
    key = "ema_params" if config.get("optim", {}).get("ema_decay") else "params"
    model = UniverSeg(tuple(model_config["encoder_blocks"]), tuple(model_config["decoder_blocks"]) or None)
    with (
        _read_only_notices_dropped(),
        ocp.CheckpointManager(
            checkpoint_dir(workdir), item_names=(STATE,), options=ocp.CheckpointManagerOptions(read_only=True)
        ) as manager,
    ):
        step = manager.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {checkpoint_dir(workdir)}")
        params = nnx.state(model)
        abstract = {key: jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)}
        restored = manager.restore(
            step,
            args=ocp.args.Composite(
                **{
                    STATE: ocp.args.PyTreeRestore(
                        abstract,
                        restore_args=jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), abstract),
                        partial_restore=True,
                    )
                }
            ),
        )
    nnx.update(model, jax.tree.map(jnp.asarray, restored[STATE][key]))
    return model
