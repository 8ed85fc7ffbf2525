"""Training that adds up: legs of one run, each resuming the campaign's committed state.

    python -m universeg_jax.campaign --budget=45m             # one leg with configs/campaign.py
    python -m universeg_jax.campaign --budget=2h --commit     # ... and commit the state and the history

A leg copies the state (``CAMPAIGN/state``: ``config.json`` and the latest checkpoint: weights, Adam, the moving
average, the step) into its working directory, trains until its wall-clock budget (less the time its evaluation
needs) is spent, writes the new state back, evaluates the moving average with ``configs/evaluate.py:check`` (and
the real MegaMedical tasks when their folder is given), appends a line to ``CAMPAIGN/history.jsonl``, rewrites
``CAMPAIGN/history.md`` from it, and prints the git command that commits the leg. SIGTERM ends the training early
with a checkpoint (as in ``train.train``); the state is then written back and the evaluation skipped. The working
directory keeps a leg's checkpoints: a leg killed outright (SIGKILL) is continued from its last checkpoint by the
next leg, which sees a newer step there than in the state.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import jax
import ml_collections
import orbax.checkpoint as ocp

from universeg_jax import checkpoint, evaluate, train
from universeg_jax.report import HEADLINE, Report, write_atomic

STATE, HISTORY, TABLE = "state", "history.jsonl", "history.md"
EVALUATION_RESERVE_S = 90.0  # the budget kept for the evaluation when no leg has measured it yet
DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?$")


def parse_duration(text: str) -> float:
    """Seconds in ``"45m"``, ``"2h"``, ``"1h30m"``, ``"90s"`` or ``"90"``."""
    match = DURATION.match(str(text).strip())
    if not str(text).strip() or not match or not any(match.groups()):
        raise ValueError(f"--budget: expected a duration such as 45m, 2h, 1h30m or 90s, got {text!r}")
    hours, minutes, seconds = (float(g or 0) for g in match.groups())
    total = 3600 * hours + 60 * minutes + seconds
    if total <= 0:
        raise ValueError(f"--budget must be positive, got {text!r}")
    return total


# ---------------------------------------------------------------- the state


def latest_step(workdir: Path) -> int | None:
    """The step of the newest finalized checkpoint in a training workdir (``None``: none)."""
    directory = checkpoint.checkpoint_dir(workdir)
    steps = ocp.utils.checkpoint_steps(directory) if directory.exists() else []
    return max(steps) if steps else None


def load_state(state_dir: Path, workdir: Path) -> int | None:
    """Prepares ``workdir`` to resume the campaign: a copy of the state, unless ``workdir`` already holds a newer
    checkpoint of it (a leg that was killed before it could write the state back). Returns the step to resume
    from (``None``: a new campaign)."""
    state_step = latest_step(state_dir) if state_dir.is_dir() else None
    work_step = latest_step(workdir)
    if state_step is not None and work_step is not None and work_step > state_step:
        logging.warning(
            "continuing from step %d in %s, newer than the campaign state's %d (an unfinished leg)",
            work_step,
            workdir,
            state_step,
        )
        return work_step
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    if state_step is None:
        if state_dir.exists() and any(state_dir.iterdir()):
            raise ValueError(
                f"{state_dir} is not a campaign state (no finished checkpoint in it): move it away to "
                "start a new campaign"
            )
        logging.info("no campaign state in %s: a new campaign starts", state_dir)
        return None
    shutil.copy(state_dir / checkpoint.CONFIG_FILE, workdir / checkpoint.CONFIG_FILE)
    shutil.copytree(
        checkpoint.checkpoint_dir(state_dir) / str(state_step), checkpoint.checkpoint_dir(workdir) / str(state_step)
    )
    return state_step


def save_state(workdir: Path, state_dir: Path) -> int:
    """Writes the config and the newest checkpoint of ``workdir`` as the campaign state, replacing the old one
    only once the new one is complete. Returns its step."""
    step = latest_step(workdir)
    if step is None:
        raise FileNotFoundError(f"no finished checkpoint in {workdir} to save as the campaign state")
    tmp, old = state_dir.with_name(state_dir.name + ".tmp"), state_dir.with_name(state_dir.name + ".old")
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copy(workdir / checkpoint.CONFIG_FILE, tmp / checkpoint.CONFIG_FILE)
    shutil.copytree(checkpoint.checkpoint_dir(workdir) / str(step), checkpoint.checkpoint_dir(tmp) / str(step))
    if state_dir.exists():
        state_dir.rename(old)
    tmp.rename(state_dir)
    shutil.rmtree(old, ignore_errors=True)
    return step


# ---------------------------------------------------------------- the history


def read_history(campaign_dir: Path) -> list[dict]:
    path = campaign_dir / HISTORY
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def append_history(campaign_dir: Path, row: dict) -> None:
    """One line more in ``history.jsonl``; ``history.md`` rewritten from all of them."""
    with open(campaign_dir / HISTORY, "a") as f:
        f.write(json.dumps(row, sort_keys=True) + "\n")
    write_atomic(campaign_dir / TABLE, lambda f: f.write(history_table(read_history(campaign_dir))))


def history_table(rows: list[dict]) -> str:
    """Markdown: one row per leg (the model's Dice per dataset and evaluation), then the baselines' rows on the
    same fixed draws (from the latest evaluated leg)."""
    columns = []  # (evaluation, dataset)
    for row in rows:
        for name, methods in row.get("dice", {}).items():
            for dataset in methods.get(evaluate.MODEL_NAME, {}):
                if (name, dataset) not in columns:
                    columns.append((name, dataset))
    header = [
        "leg",
        "date (UTC)",
        "machine",
        "steps",
        "episodes",
        "wall",
        "episodes/s",
        "GFLOP/s",
        "input wait",
        "stopped",
    ]
    label = lambda name, dataset: f"{name}: {'mean' if dataset == 'all' else dataset}"
    lines = [
        "# Campaign history",
        "",
        "Dice of the moving average of the weights on fixed draws (configs/evaluate.py presets, at the "
        "largest support size of each), the baselines on the same draws below. Written by "
        "`python -m universeg_jax.campaign` from history.jsonl.",
        "",
        "| " + " | ".join(header + [label(*c) for c in columns]) + " |",
        "|---" * (len(header) + len(columns)) + "|",
    ]
    dice = lambda row, method, name, dataset: row.get("dice", {}).get(name, {}).get(method, {}).get(dataset)
    cell = lambda value: "" if value is None else f"{value:.3f}"
    for row in rows:
        lines.append(
            "| "
            + " | ".join(
                [
                    str(row["leg"]),
                    row["started"][:16].replace("T", " "),
                    row["machine"],
                    f"{row['step_from']:,}-{row['step_to']:,}",
                    f"{row['episodes']:,} ({row['episodes_total']:,})",
                    f"{row['wall_s'] / 60:.1f} min",
                    "" if row.get("episodes_per_second") is None else f"{row['episodes_per_second']:.1f}",
                    "" if row.get("gflops_per_second") is None else f"{row['gflops_per_second']:.0f}",
                    "" if row.get("input_wait_fraction") is None else f"{100 * row['input_wait_fraction']:.1f}%",
                    row["stopped"],
                ]
                + [cell(dice(row, evaluate.MODEL_NAME, *c)) for c in columns]
            )
            + " |"
        )
    evaluated = [row for row in rows if row.get("dice")]
    if evaluated:
        latest = evaluated[-1]
        methods = sorted({m for methods in latest["dice"].values() for m in methods} - {evaluate.MODEL_NAME})
        for method in methods:
            lines.append(
                "| "
                + " | ".join(
                    [f"*{method}*"] + [""] * (len(header) - 1) + [cell(dice(latest, method, *c)) for c in columns]
                )
                + " |"
            )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- one leg


@contextlib.contextmanager
def sigterm_recorder(trained: list[bool]) -> Iterator[list[bool]]:
    """``[True]`` once SIGTERM arrived. During the training loop ``train.train``'s handler stops the loop with a
    checkpoint and passes the signal on to this one; before the loop (start-up, compilation; ``trained[0]``
    still false) there is nothing to save, and the leg ends at once."""
    received = [False]

    def on_sigterm(signum, frame):
        received[0] = True
        if signal.getsignal(signal.SIGTERM) is on_sigterm and not trained[0]:  # not passed on by train's loop
            raise SystemExit("SIGTERM before the leg's training loop: the campaign state is unchanged")

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


def machine() -> str:
    """The accelerator's name, or the CPU's model and core count."""
    device = jax.devices()[0]
    if device.platform != "cpu":
        return f"{jax.device_count()} x {device.device_kind}"
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        names = [
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ]
        model = names[0] if names else model
    return f"{model}, {os.cpu_count()} CPUs"


def leg_throughput(workdir: Path, after_step: int) -> dict:
    """Median episodes/s and achieved GFLOP/s (XLA's count of the step's FLOPs) and mean input-wait fraction of this
    leg's logged windows (the first, which includes compilation, left out when there are others)."""
    path = workdir / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    windows = [r for r in rows if r["prefix"] == "train" and r["step"] > after_step]
    windows = windows[1:] or windows
    if not windows:
        return {"episodes_per_second": None, "gflops_per_second": None, "input_wait_fraction": None}
    return {
        "episodes_per_second": statistics.median(w["episodes_per_second"] for w in windows),
        "gflops_per_second": (
            statistics.median(w["tflops_per_device"] * 1e3 for w in windows)
            if all("tflops_per_device" in w for w in windows)
            else None
        ),
        "input_wait_fraction": statistics.mean(w["input_wait_fraction"] for w in windows),
    }


def dice_by_dataset(report: Report) -> dict:
    """method -> dataset (and ``all``, the mean over datasets) -> Dice at the report's largest support size."""
    size = max(report.config["support_sizes"])
    out: dict[str, dict[str, float]] = {}
    for row in report.summary:
        if (
            row["experiment"] == "support_size"
            and row["support_size"] == size
            and row["scope"] in ("dataset", HEADLINE)
        ):
            out.setdefault(row["method"], {})[row["name"]] = row["dice_mean"]
    return out


def default_evaluations() -> dict[str, ml_collections.ConfigDict]:
    """``configs/evaluate.py:check``, and ``:megamedical`` when ``$UNIVERSEG_JAX_MEGAMEDICAL`` names the real
    MegaMedical files."""
    from configs import evaluate as evaluate_configs

    evaluations = {"check": evaluate_configs.get_config("check")}
    megamedical = evaluate_configs.get_config("megamedical")
    if megamedical.manual_dir:
        evaluations["megamedical"] = megamedical
    return evaluations


def run_leg(
    config: ml_collections.ConfigDict,
    campaign_dir,
    *,
    budget_s: float,
    workdir,
    max_steps: int | None = None,
    evaluations: Mapping[str, ml_collections.ConfigDict] | None = None,
    train_store=None,
    eval_stores: Mapping | None = None,
) -> dict:
    """One leg (see the module docstring); returns its history row.

    ``max_steps`` also stops the leg at that step. ``evaluations``: name -> a ``configs/evaluate.py`` config
    (default: ``default_evaluations()``); ``train_store``/``eval_stores`` (by evaluation name) replace the TFDS
    tasks.
    """
    if not budget_s > 0:
        raise ValueError(f"budget_s must be positive, got {budget_s}")
    if evaluations is None:
        evaluations = default_evaluations()
    campaign_dir, workdir = Path(campaign_dir), Path(workdir)
    campaign_dir.mkdir(parents=True, exist_ok=True)
    started, started_at = time.monotonic(), datetime.datetime.now(datetime.timezone.utc)
    history = read_history(campaign_dir)
    step_from = latest_step(campaign_dir / STATE) or 0  # a killed leg's steps (never recorded) count in this one
    load_state(campaign_dir / STATE, workdir)
    measured = [row["evaluation_s"] for row in history if row.get("evaluation_s")]
    reserve = 1.2 * measured[-1] if measured else EVALUATION_RESERVE_S
    config = ml_collections.ConfigDict(config.to_dict())
    config.train.max_seconds = max(budget_s - reserve, 1.0)
    if max_steps is not None:
        config.train.steps = max_steps
    trained = [False]
    with sigterm_recorder(trained) as terminated:
        train.train(config, str(workdir), train_store=train_store)
        trained[0] = True
        train_s = time.monotonic() - started
        step_to = save_state(workdir, campaign_dir / STATE)
        logging.info("campaign state at step %d written to %s", step_to, campaign_dir / STATE)
        row = {
            "leg": len(history) + 1,
            "started": started_at.isoformat(timespec="seconds"),
            "machine": machine(),
            "step_from": step_from,
            "step_to": step_to,
            "episodes": (step_to - step_from) * config.train.batch_size,
            "episodes_total": step_to * config.train.batch_size,
            "train_s": round(train_s, 1),
            "budget_s": budget_s,
            **leg_throughput(workdir, step_from),
            "stopped": "SIGTERM" if terminated[0] else "steps" if step_to >= config.train.steps else "budget",
            "dice": {},
        }
        if not terminated[0]:
            evaluated = time.monotonic()
            for name, evaluation in evaluations.items():
                evaluation = ml_collections.ConfigDict(evaluate.config_dict(evaluation))
                evaluation.weights, evaluation.output = str(workdir), str(workdir / "evaluation" / name)
                evaluation.data_dir = evaluation.data_dir or config.data.data_dir
                try:
                    report = evaluate.run(evaluation, str(workdir), store=(eval_stores or {}).get(name))
                except Exception as error:  # the leg's training is saved: its history line must not be lost
                    logging.exception("evaluation %s failed", name)
                    row.setdefault("evaluation_errors", {})[name] = f"{type(error).__name__}: {error}"[:500]
                    continue
                row["dice"][name] = dice_by_dataset(report)
            row["evaluation_s"] = round(time.monotonic() - evaluated, 1)
    row["wall_s"] = round(time.monotonic() - started, 1)
    append_history(campaign_dir, row)
    return row


def commit_command(campaign_dir: Path, row: dict) -> list[str]:
    model = row["dice"].get("check", {}).get(evaluate.MODEL_NAME, {})
    dice = f", :check mean Dice {model['all']:.3f}" if "all" in model else ""
    message = (
        f"campaign leg {row['leg']}: steps {row['step_from']:,}-{row['step_to']:,} on {row['machine']} "
        f"({row['wall_s'] / 60:.0f} min{dice})"
    )
    return ["git", "commit", "-m", message, "--", str(campaign_dir)]


def main(argv) -> None:
    from absl import app, flags

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("absl").setLevel(logging.WARNING)
    try:
        leg(flags.FLAGS)
    except (ValueError, OSError) as err:  # what a user can fix; any other exception is a bug: traceback
        print(f"universeg_jax.campaign: error: {err}", file=sys.stderr)
        sys.exit(2)


def leg(FLAGS) -> None:
    """One leg as the flags say (with --dry_run, only check them), then the table and the commit."""
    budget, campaign_dir = parse_duration(FLAGS.budget), Path(FLAGS.campaign_dir)
    train.validate_config(FLAGS.config)
    if FLAGS.dry_run:
        print(
            f"universeg_jax.campaign: dry run: flags and config are valid; would train a leg of {budget:.0f} s "
            f"from {campaign_dir / STATE} in {FLAGS.workdir}"
        )
        return
    row = run_leg(FLAGS.config, campaign_dir, budget_s=budget, workdir=Path(FLAGS.workdir), max_steps=FLAGS.steps)
    print((campaign_dir / TABLE).read_text())
    add, commit = ["git", "add", "--", str(campaign_dir)], commit_command(campaign_dir, row)
    if FLAGS.commit:
        subprocess.run(add, check=True)
        subprocess.run(commit, check=True)
    else:
        print("Commit the leg with:\n  " + " && ".join(shlex.join(c) for c in (add, commit)))


def define_flags() -> None:
    from absl import flags
    from ml_collections import config_flags

    config_flags.DEFINE_config_file(
        "config", "configs/campaign.py", "The campaign's training config.", lock_config=True
    )
    flags.DEFINE_string("budget", None, "Wall-clock time of the leg, evaluation included: 45m, 2h, 1h30m, 90s.")
    flags.DEFINE_string("campaign_dir", "campaign", "Holds state/, history.jsonl and history.md (committed).")
    flags.DEFINE_string(
        "workdir", "runs/campaign", "The leg's training workdir (checkpoints, metrics, TensorBoard); not committed."
    )
    flags.DEFINE_integer("steps", None, "Also stop the leg at this step.")
    flags.DEFINE_bool("commit", False, "git commit the campaign directory after the leg.")
    flags.DEFINE_bool("dry_run", False, "Check the flags and the config, say what would run, and stop.")
    flags.mark_flag_as_required("budget")


if __name__ == "__main__":
    from absl import app

    define_flags()
    app.run(main)
