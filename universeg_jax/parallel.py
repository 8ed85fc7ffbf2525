"""Devices for training: ``jax.distributed`` start-up, the data-parallel mesh and batch placement.

One mesh axis, ``data``: every episode batch is split over all devices of all processes and the parameters are
replicated (the v1 model has 1.2M parameters, so sharding them would not pay). Each process feeds only its own
slice of the global batch (``global_batch``).
"""

from __future__ import annotations

import logging
import os
import socket

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"
DISTRIBUTED_MODES = ("auto", "on", "off")


def _cluster_detected() -> bool:
    """True inside a multi-process job that ``jax.distributed.initialize()`` can configure by itself."""
    env = os.environ
    return (
        int(env.get("SLURM_NTASKS", "1")) > 1
        or int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1
        or "," in env.get("TPU_WORKER_HOSTNAMES", "")
    )


def initialize(
    mode: str = "auto",
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Starts ``jax.distributed`` when the job has several processes; call before any other JAX work.

    ``mode``: ``"off"`` never starts it; ``"on"`` always does (JAX detects TPU pods, SLURM and Open MPI and
    fills in what is not given); ``"auto"`` starts it when a coordinator address is given (argument or
    ``JAX_COORDINATOR_ADDRESS``) or a multi-process TPU/SLURM/MPI job is detected. ``num_processes`` and
    ``process_id`` default to ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``.
    CPU processes exchange data with gloo collectives (needed for multi-process CPU runs, ignored elsewhere).
    """
    if mode not in DISTRIBUTED_MODES:
        raise ValueError(f"distributed mode must be one of {DISTRIBUTED_MODES}, got {mode!r}")
    coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS") or None
    num_processes = _int_or_none(num_processes, "JAX_NUM_PROCESSES")
    process_id = _int_or_none(process_id, "JAX_PROCESS_ID")
    if mode == "off" or (mode == "auto" and coordinator_address is None and not _cluster_detected()):
        return
    if num_processes is not None and process_id is not None and not 0 <= process_id < num_processes:
        raise ValueError(f"process_id={process_id} must lie in [0, num_processes={num_processes})")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
    )


def _int_or_none(value, env_name: str) -> int | None:
    if value is None:
        value = os.environ.get(env_name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{env_name} must be an integer, got {value!r}") from None


def describe_layout() -> str:
    """One line on where this process runs: process, host, local and global devices."""
    local = jax.local_devices()
    return (
        f"process {jax.process_index()}/{jax.process_count()} on host {socket.gethostname()}: "
        f"{len(local)} local of {jax.device_count()} {local[0].platform} devices "
        f"(local ids {[d.id for d in local]})"
    )


def log_layout() -> None:
    logging.info("%s", describe_layout())


def make_mesh() -> Mesh:
    """A 1-D mesh over every device of every process, ordered so each process's devices are contiguous."""
    devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
    return Mesh(np.array(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over the ``data`` axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    devices = mesh.devices.size
    if batch_size < 1 or batch_size % devices:
        raise ValueError(
            f"train.batch_size={batch_size} must be a positive multiple of the number of devices ({devices}); "
            f"{jax.process_count()} process(es) x {jax.local_device_count()} local device(s)"
        )


def global_batch(local: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Assemble the global batch from this process's contiguous slice of it."""
    sharding = batch_sharding(mesh)
    return {
        name: jax.make_array_from_process_local_data(
            sharding, value, (value.shape[0] * jax.process_count(),) + value.shape[1:]
        )
        for name, value in local.items()
    }
