"""Training checkpoints: model, optimizer, step and the data iterator's position, saved together by orbax.

Layout under ``WORKDIR``: ``checkpoints/<step>/{state,data}`` plus ``config.json`` (the run's config, so a
trained model can be rebuilt with ``load_model(WORKDIR)``). Saves are asynchronous and atomic (orbax writes to
a temporary directory and renames it when complete), so a killed run never leaves a checkpoint that looks
finished but is not; leftover temporary directories are removed on the next start.
"""

from __future__ import annotations

import json
import logging

import grain
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from flax import nnx
from orbax.checkpoint import checkpoint_managers as policies

from universeg_jax.model import UniverSeg

STATE, DATA = "state", "data"
CONFIG_FILE = "config.json"


def checkpoint_dir(workdir: epath.PathLike) -> epath.Path:
    """``workdir/checkpoints`` as an absolute path (orbax refuses relative ones; gs:// paths are absolute)."""
    workdir = epath.Path(workdir)
    return (workdir if workdir.is_absolute() else epath.Path(workdir.resolve())) / "checkpoints"


def has_checkpoint(workdir: epath.PathLike) -> bool:
    """Whether ``workdir`` holds a finalized checkpoint (orbax's rule: not an interrupted save), i.e. a run to
    resume."""
    directory = checkpoint_dir(workdir)
    return directory.exists() and bool(ocp.utils.checkpoint_steps(directory))


def make_manager(workdir: epath.PathLike, *, save_every: int, keep_last: int, keep_every: int = 0
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
    return ocp.CheckpointManager(checkpoint_dir(workdir), options=options, item_names=(STATE, DATA))


def save(manager: ocp.CheckpointManager, step: int, state, data_iterator, *, force: bool = False) -> bool:
    """Starts an asynchronous save if the policy (or ``force``) asks for one; returns whether it did.

    Device arrays are copied to host before this returns, so the caller may donate them to the next step.
    """
    if manager.latest_step() == step:
        return False
    args = ocp.args.Composite(
        **{STATE: ocp.args.StandardSave(state), DATA: grain.checkpoint.CheckpointSave(data_iterator)}
    )
    return manager.save(step, args=args, force=force)


def restore_latest(manager: ocp.CheckpointManager, state, data_iterator):
    """The latest checkpoint restored onto ``state``'s shapes, dtypes and shardings (``data_iterator`` is moved
    to the saved position in place); ``None`` if there is no checkpoint yet."""
    step = manager.latest_step()
    if step is None:
        return None
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            **{STATE: ocp.args.StandardRestore(abstract), DATA: grain.checkpoint.CheckpointRestore(data_iterator)}
        ),
    )
    logging.info("restored checkpoint of step %d from %s", step, manager.directory)
    return restored[STATE]


def write_config(workdir: epath.PathLike, config_dict: dict) -> None:
    """Writes the run's config as JSON (temporary name, then rename)."""
    path = epath.Path(workdir) / CONFIG_FILE
    tmp = path.parent / f".{path.name}.tmp"
    tmp.write_text(json.dumps(config_dict, indent=2, sort_keys=True, default=list))
    tmp.replace(path)


def load_model(workdir: epath.PathLike, step: int | None = None) -> UniverSeg:
    """The model of a training run (latest checkpoint unless ``step``), for evaluation or export."""
    workdir = epath.Path(workdir)
    config_path = workdir / CONFIG_FILE
    if not config_path.exists():
        raise FileNotFoundError(f"{config_path} not found: {workdir} is not a training workdir")
    model_config = json.loads(config_path.read_text())["model"]
    model = UniverSeg(tuple(model_config["encoder_blocks"]), tuple(model_config["decoder_blocks"]) or None)
    with ocp.CheckpointManager(checkpoint_dir(workdir), item_names=(STATE, DATA),
                               options=ocp.CheckpointManagerOptions(read_only=True)) as manager:
        step = manager.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {checkpoint_dir(workdir)}")
        params = nnx.state(model)
        abstract = {"params": jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)}
        restored = manager.restore(
            step, args=ocp.args.Composite(**{STATE: ocp.args.PyTreeRestore(
                abstract, restore_args=jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), abstract),
                partial_restore=True)})
        )
    nnx.update(model, jax.tree.map(jnp.asarray, restored[STATE]["params"]))
    return model
