"""Preemption: SIGKILL at an arbitrary step then restart ends bitwise where an uninterrupted run ends; SIGTERM
(to the process, or to its whole process group as ``scancel`` sends it) saves the current step and exits 0; a
restart with a config that changes the data stream is refused.

The tests run training in subprocesses: this file doubles as the worker (``python tests/test_train_resume.py
WORKDIR STEPS [OVERRIDES_JSON]``), which trains a tiny model on the in-memory fake tasks with augmentation and a
worker process for the data, so the data position and the augmentation draws are part of what must match.
"""

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests.conftest import FakeTaskStore, start_script, tiny_config
from universeg_jax import train

STEPS = 10
CHECKPOINT_EVERY = 3


def worker_config(steps, **overrides):
    return tiny_config(
        **{
            "data.num_workers": 1,
            "data.prefetch": 2,
            "train.steps": steps,
            "train.batch_size": 2,
            "train.log_every": 1,
            "optim.warmup_steps": 2,
            "checkpoint.every": CHECKPOINT_EVERY,
            "checkpoint.keep_last": 10,
            "augment.in_task.noise.p": 1.0,
            **overrides,
        }
    )


def run_worker(workdir, steps, overrides):
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s", force=True)
    logging.getLogger("absl").setLevel(logging.WARNING)
    train.train(worker_config(steps, **overrides), workdir, train_store=FakeTaskStore())


def start(workdir, steps=STEPS, **overrides):
    """The worker in its own process group (as a job under a scheduler)."""
    return start_script(__file__, workdir, steps, json.dumps(overrides))


def wait_for_step(process, step, condition=lambda: True):
    """Reads the worker's log until it reports a training step >= ``step`` with ``condition()`` true;
    returns that step."""
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("[train] step ") and int(line.split()[2].rstrip(":")) >= step and condition():
            return int(line.split()[2].rstrip(":"))
    raise AssertionError(f"worker ended before step {step}:\n{''.join(lines)}")


def finish(process):
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    return output


def saved_steps(workdir):
    return sorted(int(p.name) for p in (Path(workdir) / "checkpoints").iterdir() if p.name.isdigit())


def restore(workdir, step):
    """The raw saved state of ``step`` as numpy arrays (fails on a corrupt or partial checkpoint)."""
    with ocp.CheckpointManager(
        Path(workdir) / "checkpoints", item_names=("state",), options=ocp.CheckpointManagerOptions(read_only=True)
    ) as manager:
        return manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore()))["state"]


def test_sigkill_then_restart_ends_bitwise_equal_to_an_uninterrupted_run(tmp_path):
    uninterrupted, interrupted = tmp_path / "uninterrupted", tmp_path / "interrupted"
    reference = start(uninterrupted)
    killed = start(interrupted)
    # Kill once checkpoint 3 is complete (saves are asynchronous) at step 5 or later: the steps after the
    # last complete checkpoint are lost and must be redone, and a save may be in flight.
    killed_at = wait_for_step(killed, 5, lambda: (interrupted / "checkpoints" / "3").exists())
    assert killed_at < STEPS
    data_workers = subprocess.run(["pgrep", "-P", str(killed.pid)], capture_output=True, text=True).stdout.split()
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    finish(reference)
    time.sleep(2)
    assert not [pid for pid in data_workers if Path(f"/proc/{pid}").exists()], "data workers outlived SIGKILL"
    steps_before_restart = saved_steps(interrupted)
    assert steps_before_restart and max(steps_before_restart) < STEPS
    for step in steps_before_restart:  # every checkpoint left behind is complete and readable
        assert int(restore(interrupted, step)["step"]) == step
    output = finish(start(interrupted))
    assert f"restored checkpoint of step {max(steps_before_restart)}" in output
    assert saved_steps(interrupted)[-1] == saved_steps(uninterrupted)[-1] == STEPS
    assert not [p for p in (interrupted / "checkpoints").iterdir() if "tmp" in p.name]  # leftovers cleaned
    expected, resumed = restore(uninterrupted, STEPS), restore(interrupted, STEPS)
    for path, a, b in zip(*zip(*jax.tree_util.tree_flatten_with_path(expected)[0]), jax.tree.leaves(resumed)):
        np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))
    assert len(jax.tree.leaves(expected)) == len(jax.tree.leaves(resumed))


@pytest.mark.parametrize("to_group", [False, True], ids=["process", "process_group"])
def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path, to_group):
    process = start(tmp_path, steps=1000)
    signalled_at = wait_for_step(process, 4)
    data_workers = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
    assert data_workers  # the data worker is in the group and receives the signal too
    if to_group:
        os.killpg(process.pid, signal.SIGTERM)
    else:
        process.send_signal(signal.SIGTERM)
    output = finish(process)
    stopped = [line for line in output.splitlines() if line.startswith("stopped at step")]
    assert stopped, output
    step = int(stopped[0].split()[3])
    assert signalled_at <= step < 1000
    assert saved_steps(tmp_path)[-1] == step
    assert int(restore(tmp_path, step)["step"]) == step


def test_restart_with_a_config_that_changes_the_data_is_refused_and_a_finished_run_says_so(tmp_path):
    finish(start(tmp_path, steps=3))
    config_before = (tmp_path / "config.json").read_text()
    changed = start(tmp_path, steps=6, **{"train.batch_size": 4, "data.support_size": 2})
    output, _ = changed.communicate(timeout=300)
    assert changed.returncode != 0
    assert "train.batch_size: 2 -> 4" in output and "data.support_size: 3 -> 2" in output, output[-3000:]
    assert (tmp_path / "config.json").read_text() == config_before  # nothing overwritten
    assert saved_steps(tmp_path)[-1] == 3
    # Fields that do not touch the data stream may change: a longer run with another learning rate resumes.
    output = finish(start(tmp_path, steps=4, **{"optim.lr": 5e-4}))
    assert "restored checkpoint of step 3" in output and saved_steps(tmp_path)[-1] == 4
    output = finish(start(tmp_path, steps=4))
    assert "nothing to do: the run in" in output and "is at step 4 and train.steps=4" in output


if __name__ == "__main__":
    run_worker(sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]) if len(sys.argv) > 3 else {})
