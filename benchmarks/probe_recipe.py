"""Short CPU probes of the default-model recipe (configs/default_model.py), side by side.

Each probe trains the recipe's ``probe`` preset (its data, augmentation and schedule at a 2-core CPU's size: width
32, 64x64, support 8, 4 episodes per step) with one change, for the same number of steps, in its own process, one
after the other, then evaluates it on the held-out suite with ``configs/evaluate.py:check`` (the fixed draw that
tests/test_default_model.py recomputes: the same episodes for every probe) and, when ``$UNIVERSEG_JAX_MEGAMEDICAL``
names the real MegaMedical files, on ``configs/evaluate.py:megamedical``. Two seeds of the unchanged recipe show
how much of a difference is noise.

  python benchmarks/probe_recipe.py                                   # every probe, 1,000 steps each
  python benchmarks/probe_recipe.py --probes=recipe,lr_1e-3 --steps=300 --out=/tmp/probes.json

Prints one row per probe (training minutes, episodes/s, last logged training loss, held-out Dice on each preset's
fixed draw at its largest support size, per dataset and their mean) and the baselines' rows on the same episodes. Datasets are
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
    "superpixels_0.5": {"data.superpixel_share": 0.5},
    "constant_lr_ema": {"optim.schedule": "constant", "optim.ema_decay": 0.999},
}


def evaluations() -> list[str]:
    """The ``configs/evaluate.py`` presets every probe is evaluated on: ``check``, and ``megamedical`` when
    ``$UNIVERSEG_JAX_MEGAMEDICAL`` names the real MegaMedical files."""
    from configs import evaluate

    return ["check"] + (["megamedical"] if evaluate.get_config("megamedical").manual_dir else [])


def run_probe(name: str, overrides: dict, steps: int, workdir: Path) -> dict:
    """Train one probe, then evaluate it on every preset of :func:`evaluations`; returns its row."""
    flags = {"train.steps": steps, "train.eval_every": 0, "checkpoint.every": steps, **overrides}
    started = time.perf_counter()
    run(
        [sys.executable, "-m", "universeg_jax.main", "--config=configs/default_model.py:probe", f"--workdir={workdir}"]
        + [f"--config.{key}={value}" for key, value in flags.items()],
        name,
    )
    minutes = (time.perf_counter() - started) / 60
    dice = {}
    for preset in evaluations():
        run(
            [
                sys.executable,
                "-m",
                "universeg_jax.main",
                "--mode=evaluate",
                f"--config=configs/evaluate.py:{preset}",
                f"--workdir={workdir}",
                f"--config.weights={workdir}",
                f"--config.output=evaluation/{preset}",
            ],
            name,
        )
        report = json.loads((workdir / "evaluation" / preset / "report.json").read_text())
        dice[preset] = dice_at_largest_support(report["summary"])
    train = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in train if r["prefix"] == "train"]
    return {
        "probe": name,
        "overrides": overrides,
        "steps": steps,
        "train_minutes": round(minutes, 2),
        "episodes_per_second": statistics.median(r["episodes_per_second"] for r in train),
        "train_loss_last": train[-1]["loss"],
        "dice": dice,
    }


def dice_at_largest_support(summary: list[dict]) -> dict:
    """method -> dataset (and "all", their mean) -> mean Dice at the report's largest support size."""
    rows = [r for r in summary if r["experiment"] == "support_size" and r["scope"] in ("dataset", "datasets")]
    support = max(r["support_size"] for r in rows)
    dice = {}
    for r in rows:
        if r["support_size"] == support:
            dice.setdefault(r["method"], {})[r["name"]] = r["dice_mean"]
    return dice


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
                f"{rows[-1]['dice']['check']['universeg']['all']:.3f}",
                flush=True,
            )
            if args.out:  # after every probe: a run cut short keeps what it measured
                Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    print(
        f"\nHeld-out Dice at each preset's largest support size (configs/evaluate.py), {args.steps} steps per probe "
        f"of configs/default_model.py:probe, {os.cpu_count()} CPUs:\n"
    )
    columns = [(preset, d) for preset, methods in rows[0]["dice"].items() for d in methods["universeg"]]
    print(
        "| probe | train min | episodes/s | last train loss | "
        + " | ".join(f"{preset}: {'mean' if d == 'all' else d}" for preset, d in columns)
        + " |"
    )
    print("|---" * (4 + len(columns)) + "|")
    for row in rows:
        print(
            f"| {row['probe']} | {row['train_minutes']:.1f} | {row['episodes_per_second']:.1f} | "
            f"{row['train_loss_last']:.3f} | "
            + " | ".join(f"{row['dice'][preset]['universeg'][d]:.3f}" for preset, d in columns)
            + " |"
        )
    for method in rows[0]["dice"]["check"]:  # the baselines see the same episodes in every probe
        if method != "universeg":
            cells = [rows[0]["dice"][preset].get(method, {}).get(d) for preset, d in columns]
            print(f"| *{method}* | | | | " + " | ".join("" if c is None else f"{c:.3f}" for c in cells) + " |")


if __name__ == "__main__":
    main()
