"""The GPU run: parity, peak, train-step figures, the training loop and the default model, in one time budget.

Made for the one-H200 machine this project is lent now and then (no network, 15 minutes of device time in all,
start-up included), and runnable on any machine. In order, within ``--budget`` seconds, writing
``OUT/gpu_run.json`` after every phase:

1. ``environment``: versions and devices;
2. ``parity``: the official model's logits of the fixture in tests/data, float32 (default and highest matmul
   precision) and bfloat16;
3. ``peak``: a large bfloat16 matrix product, the TFLOP/s ceiling that MFU is measured against;
4. ``steps``: the train step (augmentation on the device, forward, backward, Adam) at v1 size, 128x128, support
   64, batch 8 and 32, float32 and bfloat16, per-block remat (tuned on CPU only), and the default model's step;
   compiled concurrently, timed one by one;
5. ``loop``: the real training loop (``configs/base.py:gpu_node``, batch 8, support 64, bfloat16) on the
   embedded data: input-wait fraction, episodes/s, TFLOP/s per window;
6. ``campaign`` (``--train=campaign``, the default): a leg of the campaign (configs/campaign.py,
   universeg_jax/campaign.py) for the rest of the budget: the committed ``campaign/`` is copied to
   ``OUT/campaign``, the leg resumes its state, trains, evaluates with ``configs/evaluate.py:check`` and writes
   the state and a history line there; copy ``OUT/campaign`` over ``campaign/`` and commit it
   (docs/training.md#campaign). At ``--scale tiny`` the leg starts a new campaign of a tiny model instead;
   or ``default_model`` (``--train=default_model``): ``configs/default_model.py`` for the rest of the budget,
   exported to ``OUT/default.safetensors`` with its config and metrics.

The trained config's synthetic tasks are built (and packed) by a background process during phases 2-5.

  bash benchmarks/gpu/run.sh OUT [BUDGET_S]                                        # on the GPU machine
  python benchmarks/gpu/device_run.py --out /tmp/gpu --data .carry/tfds --scale tiny --budget 400   # any CPU
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import logging
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_train import analyse, lower_step, make_config, time_step  # noqa: E402


class Run:
    """The results file and the clock."""

    def __init__(self, out: Path, budget: float):
        self.out, self.start, self.budget = out, time.perf_counter(), budget
        self.results: dict = {"budget_s": budget, "phases": {}}
        out.mkdir(parents=True, exist_ok=True)

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.start)

    def phase(self, name: str, fn, *args):
        """Runs one phase; its result (or its error) goes into the results file, which is rewritten."""
        started = time.perf_counter()
        logging.info("=== %s (%.0f s left)", name, self.left())
        try:
            result = fn(*args)
        except Exception as error:  # a failed phase must not cost the others
            logging.exception("phase %s failed", name)
            result = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()[-4000:]}
        result = dict(result or {}, seconds=time.perf_counter() - started)
        self.results["phases"][name] = result
        (self.out / "gpu_run.json").write_text(json.dumps(self.results, indent=2, default=str))
        return result


# ---------------------------------------------------------------- phases


def environment() -> dict:
    import jax

    versions = {}
    for name in ("jax", "jaxlib", "flax", "optax", "orbax.checkpoint", "grain", "numpy", "tensorflow_datasets"):
        with contextlib.suppress(Exception):
            versions[name] = getattr(__import__(name, fromlist=["_"]), "__version__", "?")
    smi = shutil.which("nvidia-smi")
    gpu = (
        subprocess.run(
            [smi, "--query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm", "--format=csv,noheader"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        if smi
        else ""
    )
    return {
        "python": platform.python_version(),
        "versions": versions,
        "devices": [str(d) for d in jax.devices()],
        "platform": jax.devices()[0].platform,
        "cpu_count": os.cpu_count(),
        "nvidia_smi": gpu,
    }


def parity() -> dict:
    """Max |error| of the fixture's logits against the official model's, per precision."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from universeg_jax.weights import load_official

    fixture = np.load(REPO / "tests/data/universeg_v1_torch_seed0.npz")
    to_last = lambda x: np.moveaxis(x, -3, -1)  # (..., 1, H, W) -> (..., H, W, 1)
    inputs = [jnp.asarray(to_last(fixture[k])) for k in ("target_image", "support_images", "support_labels")]
    want = to_last(fixture["logits"])
    out = {}
    for name, dtype, precision in (
        ("float32_default", jnp.float32, "default"),
        ("float32_highest", jnp.float32, "highest"),
        ("bfloat16", jnp.bfloat16, "default"),
    ):
        model = load_official(REPO / "tests/data/universeg_v1_torch_seed0.pt")
        model.dtype = dtype
        with jax.default_matmul_precision(precision):
            got = np.asarray(jax.jit(lambda q, si, sl: model(q, si, sl))(*inputs))
        error = np.abs(got - want)
        out[name] = {
            "max_abs_error": float(error.max()),
            "relative_l2": float(np.linalg.norm(got - want) / np.linalg.norm(want)),
        }
    return out


def peak(size: int) -> dict:
    """Median TFLOP/s of a ``size``^3 bfloat16 matrix product on random data (ten timed runs)."""
    import jax
    import jax.numpy as jnp

    keys = jax.random.split(jax.random.key(0), 2)
    a, b = (jax.random.normal(k, (size, size), jnp.bfloat16) for k in keys)
    product = jax.jit(lambda x, y: x @ y)
    product(a, b).block_until_ready()
    times = []
    for _ in range(10):
        start = time.perf_counter()
        product(a, b).block_until_ready()
        times.append(time.perf_counter() - start)
    return {"size": size, "tflops": 2 * size**3 / statistics.median(times) / 1e12}


def step_cases(scale: str, default_config) -> dict:
    """name -> config, smallest memory first (the device's peak memory is read after each case).

    A constant learning rate without warmup makes the compiled step independent of ``train.steps``, so that the
    loop phase, of another length, finds its step in the compilation cache."""
    paper = {
        "data.support_size": 64,
        "data.size": 128,
        "model.encoder_blocks": (64, 64, 64, 64),
        "optim.schedule": "constant",
        "optim.warmup_steps": 0,
    }
    if scale == "tiny":
        paper.update({"data.support_size": 4, "model.encoder_blocks": (8, 8)})
    cases = {}
    for batch in (8, 32) if scale == "full" else (2, 4):
        for dtype in ("float32", "bfloat16"):
            cases[f"v1_b{batch}_{dtype}"] = make_config(
                "gpu_node", {**paper, "train.batch_size": batch, "model.dtype": dtype}
            )
    small = 8 if scale == "full" else 2
    base = {**paper, "train.batch_size": small, "model.dtype": "bfloat16"}
    cases[f"v1_b{small}_bfloat16_remat"] = make_config("gpu_node", {**base, "model.remat": True})
    cases["default_model"] = default_config
    order = sorted(cases, key=lambda n: ("b32" in n or "b4" in n, "float32" in n))
    return {name: cases[name] for name in order}


def steps(run: Run, cases: dict, timed: int, peak_tflops: float | None) -> dict:
    import jax

    lowered = {}
    for name, config in cases.items():  # tracing is quick: one by one
        lowered[name] = lower_step(config)
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(len(lowered)) as pool:
        futures = {
            name: pool.submit(lambda lw: (time.perf_counter(), lw.compile(), time.perf_counter()), low[0])
            for name, low in lowered.items()
        }
    results = {"compile_wall_s": time.perf_counter() - started}
    for name, (low, state, batch) in lowered.items():
        try:
            t0, compiled, t1 = futures[name].result()
            result = {"compile_s": t1 - t0, **analyse(compiled)}
            result.update(time_step(compiled, state, batch, timed, cases[name].train.batch_size))
            if result["flops_per_step"]:
                result["tflops"] = result["flops_per_step"] / result["step_s"] / 1e12
                if peak_tflops:
                    result["mfu"] = result["tflops"] / peak_tflops
            stats = jax.devices()[0].memory_stats() or {}
            result["device_peak_gb_so_far"] = stats.get("peak_bytes_in_use", 0) / 1e9
        except Exception as error:
            result = {"error": f"{type(error).__name__}: {str(error)[:2000]}"}
        results[name] = result
        logging.info("%s: %s", name, result)
    return results


def loop(run: Run, config, workdir: Path, seconds: float, step_s: float | None) -> dict:
    """The training loop for about ``seconds`` (compilation excluded), windows of a quarter of the steps."""
    from universeg_jax import train

    shutil.rmtree(workdir, ignore_errors=True)  # a fresh run, also when this script runs twice on one machine
    config.train.steps = max(8, int(seconds / (step_s or 0.5)))
    config.train.log_every = max(1, config.train.steps // 4)
    config.checkpoint.every = config.train.steps
    started = time.perf_counter()
    train.train(config, str(workdir))
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    shutil.copy(workdir / "metrics.jsonl", run.out / "loop_metrics.jsonl")
    windows = [r for r in rows if r["prefix"] == "train"]
    later = windows[1:] or windows  # the first window's steps include warm-up
    mean = lambda key: statistics.mean(w[key] for w in later if key in w) if any(key in w for w in later) else None
    return {
        "steps": config.train.steps,
        "batch_size": config.train.batch_size,
        "wall_s": time.perf_counter() - started,
        "num_workers": config.data.num_workers,
        "input_wait_fraction": mean("input_wait_fraction"),
        "episodes_per_second": mean("episodes_per_second"),
        "tflops_per_device": mean("tflops_per_device"),
        "windows": windows,
    }


def default_model(run: Run, config, workdir: Path, step_s: float | None, synthetic) -> dict:
    """Trains the default-model recipe for what the budget leaves, then exports it."""
    from universeg_jax import checkpoint, train, weights

    shutil.rmtree(workdir, ignore_errors=True)
    waited = time.perf_counter()
    if synthetic is not None:
        synthetic.wait(timeout=max(run.left() - 120, 1))
    synthetic_wait = time.perf_counter() - waited
    reserve = 75.0  # compilation, the last checkpoint, export
    # 85% of what the benchmarked step time allows: the loop also logs, checkpoints and waits on the host.
    config.train.steps = max(10, int(0.85 * (run.left() - reserve) / (step_s or 1.0)))
    config.optim.warmup_steps = min(config.optim.warmup_steps, config.train.steps // 10)
    logging.info("default model: %d steps", config.train.steps)
    # Past the budget, stop as a preemption does: save the current step and return (train.sigterm_flag).
    deadline = threading.Timer(max(run.left() - 30.0, 1.0), os.kill, (os.getpid(), signal.SIGTERM))
    deadline.start()
    started = time.perf_counter()
    try:
        train.train(config, str(workdir))
    finally:
        deadline.cancel()
    trained = time.perf_counter() - started
    path = weights.save(
        checkpoint.load_model(workdir),
        run.out / "default.safetensors",
        image_size=(config.data.size, config.data.size),
        support_size=config.data.support_size,
        resize="stretch",
    )
    shutil.copy(workdir / checkpoint.CONFIG_FILE, run.out / "default_model_config.json")
    shutil.copy(workdir / "metrics.jsonl", run.out / "default_metrics.jsonl")
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return {
        "planned_steps": config.train.steps,
        "trained_steps": rows[-1]["step"] if rows else None,
        "train_wall_s": trained,
        "synthetic_wait_s": synthetic_wait,
        "weights": str(path),
        "last": rows[-1] if rows else None,
    }


def campaign_config(scale: str, data_dir: str):
    """configs/campaign.py on the carried data (built there: nothing to download); at ``tiny`` scale a small model
    on fewer datasets, for a new campaign (its state could not continue the committed one)."""
    from configs import campaign as recipe

    config = recipe.get_config()
    if scale == "tiny":
        config.model.encoder_blocks = (8, 8)
        config.data.datasets = ("synthetic_tasks/size64", "mni152_tissue", "bbbc007_nuclei", "cells3d_nuclei")
        config.data.dataset_weights = "synthetic_tasks=4,mni152_tissue=1,bbbc007_nuclei=1,cells3d_nuclei=1"
        config.data.support_size, config.train.batch_size, config.train.log_every = 4, 2, 5
    config.data.data_dir, config.data.build = data_dir, False
    config.train.compilation_cache_dir = "/tmp/universeg_jax_compilation_cache"
    return config


def campaign_leg(run: Run, config, scale: str, workdir: Path, synthetic) -> dict:
    """A campaign leg for what the budget leaves, into ``OUT/campaign`` (the committed campaign continued, or at
    ``tiny`` scale a new one)."""
    from configs import evaluate as evaluate_configs
    from universeg_jax import campaign

    campaign_dir = run.out / "campaign"
    shutil.rmtree(campaign_dir, ignore_errors=True)
    shutil.rmtree(workdir, ignore_errors=True)
    if scale == "full" and (REPO / "campaign").is_dir():
        shutil.copytree(REPO / "campaign", campaign_dir)
    waited = time.perf_counter()
    if synthetic is not None:
        synthetic.wait(timeout=max(run.left() - 120, 1))
    synthetic_wait = time.perf_counter() - waited
    check = evaluate_configs.get_config("check")
    check.data_dir = config.data.data_dir
    row = campaign.run_leg(
        config, campaign_dir, budget_s=max(run.left() - 20.0, 60.0), workdir=workdir, evaluations={"check": check}
    )
    shutil.copy(workdir / "metrics.jsonl", run.out / "campaign_metrics.jsonl")
    return {"synthetic_wait_s": synthetic_wait, "campaign_dir": str(campaign_dir), "leg": row}


def prepare_synthetic(data_dir: str, spec: str) -> None:
    """Builds and packs the synthetic tasks of ``spec`` (``name/config``): run in a background process."""
    from universeg_datasets import registry

    from universeg_jax.data import tasks

    name, _, config = spec.partition("/")
    registry.build(name, config=config, data_dir=data_dir)
    tasks.open_tasks([spec], data_dir, build=False)  # packs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--data", default=str(REPO / ".carry/tfds"), help="TFDS data dir with the carried datasets")
    parser.add_argument("--budget", type=float, default=470.0, help="seconds for the whole run")
    parser.add_argument("--scale", choices=("full", "tiny"), default="full")
    parser.add_argument(
        "--train",
        choices=("campaign", "default_model"),
        default="campaign",
        help="what the rest of the budget trains: a campaign leg, or the default-model recipe",
    )
    parser.add_argument("--prepare-synthetic", help=argparse.SUPPRESS)  # internal: the background build
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", force=True)
    logging.getLogger("absl").setLevel(logging.WARNING)
    if args.prepare_synthetic:
        prepare_synthetic(args.data, args.prepare_synthetic)
        return

    import jax

    from configs import default_model as recipe

    jax.config.update("jax_compilation_cache_dir", "/tmp/universeg_jax_compilation_cache")
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    run = Run(args.out, args.budget)
    full = args.scale == "full"
    default_config = recipe.get_config("gpu" if full else "tiny")
    # Evaluated afterwards, on a CPU: the held-out datasets need not travel.
    default_config.data.data_dir, default_config.data.build, default_config.data.held_out = args.data, False, ()
    default_config.train.compilation_cache_dir = "/tmp/universeg_jax_compilation_cache"
    trained = campaign_config(args.scale, args.data) if args.train == "campaign" else default_config
    synthetic_spec = next(n for n in trained.data.datasets if n.startswith("synthetic_tasks"))
    # The machine's CPUs build them while its GPU runs phases 2-5 (a few cores stay free for XLA's compiler).
    workers = str(max(1, (os.cpu_count() or 4) - 6))
    synthetic = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--data",
            args.data,
            f"--prepare-synthetic={synthetic_spec}",
            "--out",
            str(args.out),
        ],
        env={**os.environ, "UNIVERSEG_BUILD_PROCESSES": workers},
    )
    run.results["synthetic"] = synthetic_spec

    run.phase("environment", environment)
    run.phase("parity", parity)
    peak_result = run.phase("peak", peak, 8192 if full else 256)
    cases = step_cases(args.scale, default_config.copy_and_resolve_references())
    step_results = run.phase("steps", steps, run, cases, 10 if full else 2, peak_result.get("tflops"))

    loop_config = make_config(
        "gpu_node",
        {
            "train.batch_size": 8 if full else 2,
            "data.support_size": 64 if full else 4,
            "data.size": 128,
            "train.eval_every": 0,
            "optim.schedule": "constant",
            "optim.warmup_steps": 0,
            **({} if full else {"model.encoder_blocks": (8, 8)}),
            "data.datasets": ("mni152_tissue", "bbbc007_nuclei", "cells3d_nuclei"),
            "data.held_out": (),
            "data.repeat_subjects": True,
            "data.data_dir": args.data,
            "data.build": False,
            "train.compilation_cache_dir": "/tmp/universeg_jax_compilation_cache",
        },
    )
    loop_step = step_results.get(f"v1_b{loop_config.train.batch_size}_bfloat16", {}).get("step_s")
    run.phase("loop", loop, run, loop_config, Path("/tmp/universeg_loop_run"), 30.0 if full else 10.0, loop_step)

    if args.train == "campaign":
        run.phase("campaign", campaign_leg, run, trained, args.scale, Path("/tmp/universeg_campaign"), synthetic)
    else:
        default_step = step_results.get("default_model", {}).get("step_s")
        run.phase(
            "default_model",
            default_model,
            run,
            default_config,
            Path("/tmp/universeg_default_model"),
            default_step,
            synthetic,
        )
    if synthetic.poll() is None:
        synthetic.kill()
    run.results["synthetic_returncode"] = synthetic.returncode
    run.results["total_s"] = time.perf_counter() - run.start
    (args.out / "gpu_run.json").write_text(json.dumps(run.results, indent=2, default=str))
    logging.info("done in %.0f s", run.results["total_s"])


if __name__ == "__main__":
    main()
