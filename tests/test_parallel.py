"""Data parallelism: 8 devices and 1 device train alike; two jax.distributed processes agree with one process.

Device counts are fixed when JAX starts, so the comparisons run in subprocesses: this file doubles as the
worker (``python tests/test_parallel.py mesh DEVICES OUT`` or ``... distributed PORT PROCESS_ID PROCESSES
DEVICES WORKDIR``).
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from tests.conftest import FakeTaskStore, tiny_config
from universeg_jax import checkpoint, parallel, train

REPO = Path(__file__).resolve().parents[1]
STEPS = 4


def config_for(batch_size):
    return tiny_config(
        **{
            "train.steps": STEPS,
            "train.batch_size": batch_size,
            "train.log_every": 1,
            "optim.warmup_steps": 0,
            "checkpoint.every": STEPS,
        }
    )


def mesh_worker(devices, out):
    """Trains STEPS steps of a batch of 8 episodes on ``devices`` devices; saves losses and parameters."""
    jax.config.update("jax_num_cpu_devices", devices)
    config = config_for(batch_size=8)
    mesh = parallel.make_mesh()
    assert mesh.devices.size == devices
    data = train.episode_dataset(FakeTaskStore(), config, seed=0, training=True)
    graphdef, params = nnx.split(train.create_model(config))
    schedule = train.learning_rate_schedule(config)
    tx = train.make_optimizer(config, schedule)
    train_step, _ = train.make_steps(graphdef, tx, schedule, config, mesh)
    state = train.init_state((graphdef, params), tx, mesh)
    losses = []
    for i in range(STEPS):
        batch = parallel.global_batch(data[i], mesh)
        if i == 0:
            assert len(batch["query"].sharding.device_set) == devices
        state, metrics = train_step(state, batch)
        losses.append(float(metrics["loss"]))
    leaves = jax.tree.leaves(jax.device_get(state["params"]))
    np.savez(out, losses=np.array(losses), **{f"p{i}": leaf for i, leaf in enumerate(leaves)})


def distributed_worker(port, process_id, processes, devices, workdir):
    """Full training run as one of ``processes`` jax.distributed processes (or alone if processes == 1)."""
    jax.config.update("jax_num_cpu_devices", devices)
    if processes > 1:
        parallel.initialize("auto", f"127.0.0.1:{port}", processes, process_id)
    assert jax.process_count() == processes and jax.device_count() == processes * devices
    metrics = train.train(config_for(batch_size=4), workdir, train_store=FakeTaskStore())
    if process_id == 0:
        Path(workdir, "metrics.json").write_text(json.dumps(metrics))


def run(*args):
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    return subprocess.Popen(
        [sys.executable, __file__, *map(str, args)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process, timeout=400):
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-5000:]


def test_8_devices_and_1_device_give_the_same_loss_trajectory(tmp_path):
    processes = {n: run("mesh", n, tmp_path / f"{n}.npz") for n in (1, 8)}
    for process in processes.values():
        finish(process)
    one, eight = np.load(tmp_path / "1.npz"), np.load(tmp_path / "8.npz")
    # Not vacuous: the steps see different (augmented, on the devices) episodes and move the parameters.
    assert np.isfinite(one["losses"]).all() and len(set(one["losses"].round(6))) == STEPS
    # Same global batch; only the order of the cross-device sum differs (float32 rounding).
    np.testing.assert_allclose(eight["losses"], one["losses"], rtol=1e-5)
    for key in one.files:
        np.testing.assert_allclose(eight[key], one[key], rtol=1e-4, atol=1e-5, err_msg=key)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_like_one_process(tmp_path, monkeypatch):
    port = free_port()
    pair = [run("distributed", port, i, 2, 2, tmp_path / "two") for i in range(2)]
    single = run("distributed", 0, 0, 1, 1, tmp_path / "one")
    for process in pair + [single]:
        finish(process)
    two_metrics = json.loads((tmp_path / "two" / "metrics.json").read_text())
    one_metrics = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert two_metrics["loss"] == pytest.approx(one_metrics["loss"], rel=1e-5)
    # The data position is the step: a checkpoint holds the model state only.
    assert sorted(p.name for p in (tmp_path / "two" / "checkpoints" / str(STEPS)).iterdir() if p.is_dir()) == ["state"]
    monkeypatch.chdir(tmp_path)  # a run named relative to the current directory loads too
    two, one = checkpoint.load_model("two"), checkpoint.load_model(tmp_path / "one")
    for a, b in zip(jax.tree.leaves(nnx.state(two)), jax.tree.leaves(nnx.state(one))):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_initialize_is_a_no_op_without_a_cluster(monkeypatch):
    for name in ("JAX_COORDINATOR_ADDRESS", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "TPU_WORKER_HOSTNAMES"):
        monkeypatch.delenv(name, raising=False)
    parallel.initialize("auto")
    parallel.initialize("off", "127.0.0.1:1234", 2, 0)
    assert not jax.distributed.is_initialized()


@pytest.mark.parametrize(
    "kwargs, env, message",
    [
        ({"mode": "sometimes"}, {}, "distributed mode must be one of"),
        (
            {"mode": "on", "coordinator_address": "127.0.0.1:1", "num_processes": 2, "process_id": 2},
            {},
            r"process_id=2 must lie in \[0, num_processes=2\)",
        ),
        ({"mode": "on"}, {"JAX_NUM_PROCESSES": "two"}, "JAX_NUM_PROCESSES must be an integer"),
    ],
)
def test_initialize_rejects_bad_settings(monkeypatch, kwargs, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        parallel.initialize(**kwargs)


def test_layout_mesh_and_batch_placement():
    mesh = parallel.make_mesh()
    assert mesh.axis_names == (parallel.DATA_AXIS,) and mesh.devices.size == jax.device_count()
    assert "process 0/1" in parallel.describe_layout()
    local = {"query": np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4, 1)}
    batch = parallel.global_batch(local, mesh)
    np.testing.assert_array_equal(np.asarray(batch["query"]), local["query"])
    with pytest.raises(ValueError, match="positive multiple of the number of devices"):
        parallel.check_batch_size(0, mesh)


if __name__ == "__main__":
    if sys.argv[1] == "mesh":
        mesh_worker(int(sys.argv[2]), sys.argv[3])
    else:
        distributed_worker(*map(int, sys.argv[2:6]), sys.argv[6])
