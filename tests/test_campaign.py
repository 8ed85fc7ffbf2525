"""Campaign legs (universeg_jax/campaign.py): the state's round trip, legs that add up exactly to one run, a leg
stopped by SIGTERM and continued by the next, a leg killed outright continued from its workdir, the wall-clock
stop, the history and its table.

This file doubles as the worker of the SIGTERM test (``python tests/test_campaign.py CAMPAIGN WORKDIR STEPS``):
a leg of a tiny model with a moving average on the in-memory fake tasks, without evaluation.
"""

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests.conftest import REPO, FakeTaskStore, start_script, tiny_config
from universeg_jax import campaign, train


def leg_config(**changes):
    return tiny_config(
        **{
            "optim.ema_decay": 0.9,
            "optim.warmup_steps": 2,
            "train.log_every": 1,
            "train.steps": 1000,
            "checkpoint.every": 1000,
            "checkpoint.keep_last": 1,
            "augment.in_task.noise.p": 1.0,
            **changes,
        }
    )


def check_evaluation():
    """configs/evaluate.py:check shrunk to the fake held-out tasks (12 subjects each)."""
    from configs import evaluate as evaluate_configs

    config = evaluate_configs.get_config("check")
    config.datasets, config.support_sizes, config.ensemble_support_size = ("fake_held",), (4,), 4
    config.draws, config.max_queries = 1, 2
    return config


def state(directory, step):
    """The raw saved state of ``step`` in a training workdir or campaign state, as numpy arrays."""
    with ocp.CheckpointManager(
        Path(directory).resolve() / "checkpoints",
        item_names=("state",),
        options=ocp.CheckpointManagerOptions(read_only=True),
    ) as manager:
        return manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore()))["state"]


def assert_states_equal(expected, got):
    assert jax.tree.structure(expected) == jax.tree.structure(got)
    assert "ema_params" in expected
    for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(expected)[0], jax.tree.leaves(got)):
        np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))


def test_parse_duration():
    assert campaign.parse_duration("45m") == 2700
    assert campaign.parse_duration("2h") == 7200
    assert campaign.parse_duration("1h30m") == 5400
    assert campaign.parse_duration("90s") == campaign.parse_duration("90") == 90
    for bad in ("", "soon", "0m", "10x", "m"):
        with pytest.raises(ValueError, match="--budget"):
            campaign.parse_duration(bad)


def test_campaign_config_is_the_probe_recipe_with_a_constant_rate_and_a_moving_average():
    from configs import campaign as campaign_config, default_model
    from universeg_jax.data.contract import DEFAULT_HELD_OUT
    from universeg_jax.data.tasks import dataset_names

    config, probe = campaign_config.get_config(), default_model.get_config("probe")
    train.validate_config(config)
    assert (config.optim.schedule, config.optim.ema_decay) == ("constant", 0.999)
    for field in (
        "model.encoder_blocks",
        "data.datasets",
        "data.size",
        "data.support_size",
        "train.batch_size",
        "train.loss",
        "data.held_out",
    ):
        section, name = field.split(".")
        assert config[section][name] == probe[section][name], field
    assert not {n.partition("/")[0] for n in dataset_names(config.data.datasets)} & set(DEFAULT_HELD_OUT)
    with pytest.raises(ValueError, match="no presets"):
        campaign_config.get_config("gpu")


def test_command_line_errors_are_one_line_naming_the_flag(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        [sys.executable, "-m", "universeg_jax.campaign", "--budget=soon", f"--campaign_dir={tmp_path}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "universeg_jax.campaign: error: --budget: expected a duration" in done.stderr
    assert not any(tmp_path.iterdir())


def test_max_seconds_stops_training_with_a_checkpoint(tmp_path):
    train.train(
        tiny_config(**{"train.steps": 1000, "train.max_seconds": 1e-3}), str(tmp_path), train_store=FakeTaskStore()
    )
    assert campaign.latest_step(tmp_path) == 1  # the first step already passes the deadline
    with pytest.raises(ValueError, match="train.max_seconds must be >= 0"):
        train.validate_config(tiny_config(**{"train.max_seconds": -1.0}))


def test_legs_add_up_to_one_run_and_the_history_records_them(tmp_path):
    campaign_dir, work = tmp_path / "campaign", tmp_path / "work"
    evaluations, stores = {"check": check_evaluation()}, {"check": FakeTaskStore({"fake_held": 1}, seed=1)}

    def leg(max_steps):
        return campaign.run_leg(
            leg_config(),
            campaign_dir,
            budget_s=3600,
            workdir=work,
            max_steps=max_steps,
            evaluations=evaluations,
            train_store=FakeTaskStore(),
            eval_stores=stores,
        )

    first = leg(3)
    assert (first["leg"], first["step_from"], first["step_to"], first["episodes"]) == (1, 0, 3, 6)
    assert first["stopped"] == "steps" and first["episodes_per_second"] > 0 and first["gflops_per_second"] > 0
    # Round trip: the committed state is the workdir's last checkpoint, config included.
    assert sorted(p.name for p in (campaign_dir / "state").iterdir()) == ["checkpoints", "config.json"]
    assert_states_equal(state(work, 3), state(campaign_dir / "state", 3))
    dice = first["dice"]["check"]
    assert set(dice) == {"universeg", "spatial_prior", "intensity", "nearest_neighbour", "label_fusion"}
    assert set(dice["universeg"]) == {"fake_held", "all"} and 0 <= dice["universeg"]["all"] <= 1
    assert "evaluation_errors" not in first

    # The next leg starts from the state alone (its workdir is gone) and ends where one run of 5 steps ends.
    import shutil

    shutil.rmtree(work)
    second = leg(5)
    assert (second["leg"], second["step_from"], second["step_to"], second["episodes_total"]) == (2, 3, 5, 10)
    reference = tmp_path / "reference"
    train.train(leg_config(**{"train.steps": 5}), str(reference), train_store=FakeTaskStore())
    assert_states_equal(state(reference, 5), state(campaign_dir / "state", 5))

    history = campaign.read_history(campaign_dir)
    assert [row["leg"] for row in history] == [1, 2]
    assert history[0]["dice"]["check"]["intensity"] == history[1]["dice"]["check"]["intensity"]  # same draws
    table = (campaign_dir / "history.md").read_text()
    assert (
        "| 2 | " in table
        and "| 3-5 | " in table
        and "| GFLOP/s |" in table
        and "check: fake_held" in table
        and "| *intensity* |" in table
    )
    command = campaign.commit_command(campaign_dir, second)
    assert command[:3] == ["git", "commit", "-m"] and "campaign leg 2: steps 3-5" in command[3]


def test_a_killed_leg_is_continued_from_its_workdir_and_a_stray_state_is_refused(tmp_path):
    campaign_dir, work = tmp_path / "campaign", tmp_path / "work"
    campaign.run_leg(
        leg_config(),
        campaign_dir,
        budget_s=3600,
        workdir=work,
        max_steps=2,
        evaluations={},
        train_store=FakeTaskStore(),
    )
    # A leg that got as far as a checkpoint of step 4 and was then killed (no state written back).
    train.train(leg_config(**{"train.steps": 4}), str(work), train_store=FakeTaskStore())
    assert campaign.load_state(campaign_dir / "state", work) == 4
    # A workdir behind the state is replaced by the state.
    assert campaign.load_state(campaign_dir / "state", tmp_path / "fresh") == 2
    stray = tmp_path / "stray"
    (stray / "checkpoints").mkdir(parents=True)
    with pytest.raises(ValueError, match="is not a campaign state"):
        campaign.load_state(stray, tmp_path / "other")


def start_worker(campaign_dir, work, steps):
    return start_script(__file__, campaign_dir, work, steps)


def test_sigterm_mid_leg_then_the_next_leg_continues_exactly(tmp_path):
    campaign_dir, work, steps = tmp_path / "campaign", tmp_path / "work", 12
    worker = start_worker(campaign_dir, work, steps)
    lines = []
    for line in worker.stdout:
        lines.append(line)
        if line.startswith("[train] step ") and int(line.split()[2].rstrip(":")) >= 4:
            worker.send_signal(signal.SIGTERM)
            break
    output = "".join(lines) + worker.communicate(timeout=300)[0]
    assert worker.returncode == 0, output[-3000:]
    (stopped,) = campaign.read_history(campaign_dir)
    assert stopped["stopped"] == "SIGTERM" and 4 <= stopped["step_to"] < steps and stopped["dice"] == {}
    assert_states_equal(state(work, stopped["step_to"]), state(campaign_dir / "state", stopped["step_to"]))

    resumed = campaign.run_leg(
        leg_config(),
        campaign_dir,
        budget_s=3600,
        workdir=tmp_path / "work2",
        max_steps=steps,
        evaluations={},
        train_store=FakeTaskStore(),
    )
    assert (resumed["step_from"], resumed["step_to"], resumed["stopped"]) == (stopped["step_to"], steps, "steps")
    reference = tmp_path / "reference"
    train.train(leg_config(**{"train.steps": steps}), str(reference), train_store=FakeTaskStore())
    assert_states_equal(state(reference, steps), state(campaign_dir / "state", steps))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s", force=True)
    logging.getLogger("absl").setLevel(logging.WARNING)
    campaign.run_leg(
        leg_config(),
        sys.argv[1],
        budget_s=3600,
        workdir=sys.argv[2],
        max_steps=int(sys.argv[3]),
        evaluations={},
        train_store=FakeTaskStore(),
    )
    print(json.dumps(campaign.read_history(Path(sys.argv[1]))[-1]))
