"""Short CPU probes of the default-model recipe (configs/default_model.py), side by side.

Each probe trains the recipe's ``probe`` preset (its data, augmentation and schedule at a 2-core CPU's size: width
32, 64x64, support 8, 4 episodes per step) with one change, for the same number of steps, in its own process, one
after the other, then evaluates it on the held-out suite with ``configs/evaluate.py:check`` (the fixed draw that
tests/test_default_model.py recomputes: the same episodes for every probe). Two seeds of the unchanged recipe
show how much of a difference is noise.

  python benchmarks/probe_recipe.py                                   # every probe, 1,000 steps each
  python benchmarks/probe_recipe.py --probes=recipe,lr_1e-3 --steps=300 --out=/tmp/probes.json

Prints one row per probe (training minutes, episodes/s, last logged training loss, held-out Dice at support 16 on
the fixed ``:check`` draw, per dataset and their mean) and the baselines' rows on the same episodes. Datasets are
built on first use into $TFDS_DATA_DIR.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from configs import base  # noqa: E402

SYNTHETIC = "synthetic_tasks/tasks2000_size64"
CHECK_SUPPORT = 16  # the support size of configs/evaluate.py:check
REAL = "real_synthetic_labels,mni152_tissue,bbbc007_nuclei,cells3d_nuclei"

# The paper's task-augmentation probabilities (configs/base.py; the recipe halves them to 0.25).
PAPER_TASK_AUGMENTATION = {
    f"augment.task.{name}.p": augmentation.p for name, augmentation in base.get_config().augment.task.items()
}
# name -> config overrides of the probe preset
PROBES = {
    "recipe": {},
    "recipe_seed1": {"seed": 1},
    "loss_soft_dice": {"train.loss": "soft_dice"},
    "loss_soft_dice_seed1": {"train.loss": "soft_dice", "seed": 1},
    "lr_2.5e-4": {"optim.lr": 2.5e-4},
    "lr_1e-3": {"optim.lr": 1e-3},
    "lr_2e-3": {"optim.lr": 2e-3},
    "task_aug_0": {key: 0.0 for key in PAPER_TASK_AUGMENTATION},
    "task_aug_paper": PAPER_TASK_AUGMENTATION,
    "synthetic_only": {"data.datasets": SYNTHETIC, "data.dataset_weights": ""},
    "real_only": {"data.datasets": REAL, "data.dataset_weights": ""},
    "support_16": {"data.support_size": 16, "train.batch_size": 2},
    "width_48": {"model.encoder_blocks": "(48, 48, 48, 48)"},
    "width_64": {"model.encoder_blocks": "(64, 64, 64, 64)"},
    "synthetic_on_device_0.5": {"data.synthetic_share": 0.5},
    "synthetic_on_device_0.25": {"data.synthetic_share": 0.25},
    "constant_lr_ema": {"optim.schedule": "constant", "optim.ema_decay": 0.999},
}


def run_probe(name: str, overrides: dict, steps: int, workdir: Path) -> dict:
    """Train one probe, then evaluate it with configs/evaluate.py:check; returns its row."""
    flags = {"train.steps": steps, "train.eval_every": 0, "checkpoint.every": steps, **overrides}
    started = time.perf_counter()
    run(
        [sys.executable, "-m", "universeg_jax.main", "--config=configs/default_model.py:probe", f"--workdir={workdir}"]
        + [f"--config.{key}={value}" for key, value in flags.items()],
        name,
    )
    minutes = (time.perf_counter() - started) / 60
    run(
        [
            sys.executable,
            "-m",
            "universeg_jax.main",
            "--mode=evaluate",
            "--config=configs/evaluate.py:check",
            f"--workdir={workdir}",
            f"--config.weights={workdir}",
        ],
        name,
    )
    train = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in train if r["prefix"] == "train"]
    summary = json.loads((workdir / "evaluation" / "report.json").read_text())["summary"]
    dice = {
        (r["method"], r["name"]): r["dice_mean"]
        for r in summary
        if r["experiment"] == "support_size"
        and r["support_size"] == CHECK_SUPPORT
        and r["scope"] in ("dataset", "datasets")
    }
    return {
        "probe": name,
        "overrides": overrides,
        "steps": steps,
        "train_minutes": round(minutes, 2),
        "episodes_per_second": statistics.median(r["episodes_per_second"] for r in train),
        "train_loss_last": train[-1]["loss"],
        "dice": {
            method: {dataset: d for (m, dataset), d in dice.items() if m == method}
            for method in sorted({m for m, _ in dice})
        },
    }


def run(command: list[str], name: str) -> None:
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"probe {name}: {' '.join(command[1:4])} failed:\n{result.stderr[-4000:]}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probes", default=",".join(PROBES), help="comma-separated names of " + ", ".join(PROBES))
    parser.add_argument("--steps", type=int, default=1000, help="training steps per probe")
    parser.add_argument("--out", help="also write the rows as JSON here")
    args = parser.parse_args()
    names = args.probes.split(",")
    unknown = sorted(set(names) - set(PROBES))
    if unknown:
        parser.error(f"--probes: unknown {unknown}; choose from {list(PROBES)}")
    if args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            rows.append(run_probe(name, PROBES[name], args.steps, Path(tmp) / name))
            print(
                f"{name}: {rows[-1]['train_minutes']:.1f} min, mean held-out Dice "
                f"{rows[-1]['dice']['universeg']['all']:.3f}",
                flush=True,
            )
            if args.out:  # after every probe: a run cut short keeps what it measured
                Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    datasets = [d for d in rows[0]["dice"]["universeg"] if d != "all"]
    print(
        f"\nHeld-out Dice at support {CHECK_SUPPORT} (configs/evaluate.py:check), {args.steps} steps per probe "
        f"of configs/default_model.py:probe, {os.cpu_count()} CPUs:\n"
    )
    print("| probe | train min | episodes/s | last train loss | mean over datasets | " + " | ".join(datasets) + " |")
    print("|---" * (5 + len(datasets)) + "|")
    for row in rows:
        print(
            f"| {row['probe']} | {row['train_minutes']:.1f} | {row['episodes_per_second']:.1f} | "
            f"{row['train_loss_last']:.3f} | {row['dice']['universeg']['all']:.3f} | "
            + " | ".join(f"{row['dice']['universeg'][d]:.3f}" for d in datasets)
            + " |"
        )
    for method, dice in rows[0]["dice"].items():  # the baselines see the same episodes in every probe
        if method != "universeg":
            print(f"| *{method}* | | | | {dice['all']:.3f} | " + " | ".join(f"{dice[d]:.3f}" for d in datasets) + " |")


if __name__ == "__main__":
    main()
