"""The training command: ``python -m universeg_jax.main --config=configs/base.py:cpu --workdir=DIR``."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def main(workdir, *overrides, data_dir, timeout=900, cwd=REPO):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "TFDS_DATA_DIR": str(data_dir)}
    command = [
        sys.executable,
        "-m",
        "universeg_jax.main",
        f"--config={REPO / 'configs' / 'base.py'}:cpu",
        f"--workdir={workdir}",
        *overrides,
    ]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def train_losses(log: str) -> list[float]:
    return [float(x) for x in re.findall(r"\[train\] step \d+: .*?loss=([0-9.]+)", log)]


def test_bad_config_fails_at_start_with_the_field_name(tmp_path):
    result = main(tmp_path / "run", "--config.train.steps=-3", data_dir=tmp_path / "tfds", timeout=120)
    assert result.returncode != 0
    assert "config train.steps must be positive, got -3" in result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_cpu_preset_builds_its_data_trains_and_its_loss_goes_down(tmp_path):
    """End to end on a fresh data dir: the embedded datasets are built on first use (a quick subset here). The
    workdir is relative to the current directory (orbax itself wants absolute paths)."""
    workdir = tmp_path / "run"
    result = main(
        "run",
        "--config.data.datasets=synthetic_tasks,mni152_tissue",
        "--config.data.held_out=stardist_nuclei",
        "--config.train.steps=40",
        "--config.train.eval_every=40",
        "--config.checkpoint.every=20",
        data_dir=tmp_path / "tfds",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    log = result.stderr
    losses = train_losses(log)
    assert len(losses) == 4, log[-3000:]
    assert losses[-1] < losses[0], losses
    assert re.search(r"\[eval\] step 40: dice=[0-9.]+, loss=[0-9.]+", log)
    assert "process 0/1 on host" in log
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == ["20", "40"]
    assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
    assert json.loads((workdir / "config.json").read_text())["data"]["support_size"] == 7
    # The run ends with what a newcomer needs: where the model is, how it compares, the command that uses it.
    assert "Trained model: run (step 40)" in log
    assert re.search(r"this model [0-9.]+ \| \w+ [0-9.]+ \| \w+ [0-9.]+ \| \w+ [0-9.]+ \| \w+ [0-9.]+", log)
    assert "universeg-jax segment --weights run --support-images" in log
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["prefix"] == "eval"] == [40]
    # The baselines of the summary, on the same episodes, for scripts that compare runs (benchmarks/probe_recipe.py).
    (baselines,) = [r for r in records if r["prefix"] == "baselines"]
    assert set(baselines) == {"step", "prefix", "spatial_prior", "intensity", "nearest_neighbour", "label_fusion"}
    assert all(0 <= baselines[name] <= 1 for name in set(baselines) - {"step", "prefix"})
    # Running again finds the finished run and does no more steps.
    again = main(
        "run",
        "--config.data.datasets=synthetic_tasks,mni152_tissue",
        "--config.data.held_out=stardist_nuclei",
        "--config.train.steps=40",
        "--config.train.eval_every=0",
        data_dir=tmp_path / "tfds",
        cwd=tmp_path,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "restored checkpoint of step 40" in again.stderr and not train_losses(again.stderr)


@pytest.mark.slow
def test_full_cpu_preset_learns(tmp_path):
    """The whole :cpu preset (all embedded datasets, 300 steps): held-out Dice improves over training."""
    result = main(tmp_path / "run", data_dir=tmp_path / "tfds", timeout=3600)
    assert result.returncode == 0, result.stderr[-5000:]
    losses = train_losses(result.stderr)
    assert min(losses[-5:]) < losses[0]
    dices = [float(x) for x in re.findall(r"\[eval\] step \d+: dice=([0-9.]+)", result.stderr)]
    assert len(dices) == 3 and dices[-1] > dices[0], dices
