"""Training speed and memory: the train step, the input pipeline (old and new side by side), the augmentation's
share of the step, and the input wait of a real run.

  python benchmarks/bench_train.py                          # every case, each in its own process
  python benchmarks/bench_train.py --cases=pipeline_cpu,pipeline_v1_b1_s64 --steps=20

Cases:

* step cases (``cpu``, ``campaign``, ``v1_*``): the jitted train step (on-device augmentation, forward, backward, Adam) on a
  fixed random uint8 batch: the median over ``--steps`` steps after compilation, XLA's estimate of the step's
  memory (temporaries + arguments) and FLOPs, the achieved TFLOP/s and its share of the float32 matrix-product
  peak measured in the same case (``of_matmul_peak``; the first line names the CPU, ``cpu_info.py``);
* ``augment_share_v1_b1_s64``: the same step with and without augmentation: the augmentation's share of the step;
* pipeline cases: episodes/s of the whole input path per core: sampling and gathering on the host, then the
  augmentation as it runs in the step (jitted, on this CPU); ``pipeline_old_*`` runs the numpy pipeline of the
  commit before it moved to the device (``--baseline-commit``, from a temporary git worktree), on the same
  datasets at that commit's builder versions, in one process;
* ``input_wait_cpu``: a ``:cpu`` run of ``--loop-steps`` steps; its input-wait fraction from ``metrics.jsonl``;
* ``official_v1_b4_s16`` (with ``--official-repo``): the official PyTorch model's train step at the shapes of
  ``v1_b4_s16`` (soft Dice, Adam, no augmentation), in ``--official-python``.

  python benchmarks/bench_train.py --cases=v1_b4_s16,official_v1_b4_s16 --steps=3 \
      --official-repo=/path/to/UniverSeg --official-python=/path/to/python-with-torch

Pipeline and loop cases read the embedded datasets, built on first use into $TFDS_DATA_DIR.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
import cpu_info  # noqa: E402

BASELINE_COMMIT = "b6d9242"  # the last commit with the numpy (host) augmentation

PAPER = {"train.batch_size": 1, "data.support_size": 64}
# name -> (preset, overrides)
STEP_CASES = {
    "cpu": ("cpu", {}),
    "v1_b1_s64": ("default", PAPER),
    "v1_b1_s64_remat": ("default", {**PAPER, "model.remat": True}),
    "v1_b4_s16": ("default", {"train.batch_size": 4, "data.support_size": 16}),
    "campaign": ("campaign", {}),  # configs/campaign.py: the step every campaign leg runs
}
PIPELINE_CASES = {
    "pipeline_cpu": ("cpu", {}),
    "pipeline_v1_b1_s64": ("default", PAPER),
}
OTHER_CASES = {
    "augment_share_v1_b1_s64": ("default", PAPER),
    "input_wait_cpu": ("cpu", {}),
    "pipeline_old_cpu": ("cpu", {}),
    "pipeline_old_v1_b1_s64": ("default", PAPER),
}


def make_config(preset, overrides):
    """configs/base.py's ``preset``, or configs/campaign.py for ``"campaign"``, with ``overrides``."""
    from configs import base, campaign

    config = campaign.get_config() if preset == "campaign" else base.get_config(preset)
    config.update_from_flattened_dict(overrides)
    return config


def random_batch(config, seed=0):
    """A uint8 episode batch of the config's shapes (images 0-255, labels 0/1, episode indices)."""
    import numpy as np

    b, s, size = config.train.batch_size, config.data.support_size, config.data.size
    rng = np.random.default_rng(seed)
    image = lambda *shape: rng.integers(0, 256, shape + (size, size, 1), dtype=np.uint8)
    label = lambda *shape: (rng.random(shape + (size, size, 1)) > 0.5).astype(np.uint8)
    return {
        "query": image(b),
        "query_label": label(b),
        "support_images": image(b, s),
        "support_labels": label(b, s),
        "episode": np.arange(b, dtype=np.int32),
    }


def lower_step(config, mesh=None):
    """(lowered train step, state, device batch) for ``config`` on a fixed random batch."""
    from flax import nnx

    from universeg_jax import parallel, train

    mesh = mesh or parallel.make_mesh()
    graphdef, params = nnx.split(train.create_model(config))
    schedule = train.learning_rate_schedule(config)
    tx = train.make_optimizer(config, schedule)
    train_step, _ = train.make_steps(graphdef, tx, schedule, config, mesh)
    state = train.init_state((graphdef, params), tx, mesh)
    batch = parallel.global_batch(random_batch(config), mesh)
    return train_step.lower(state, batch), state, batch


def analyse(compiled) -> dict:
    """XLA's memory (GB) and FLOP estimates of a compiled step."""
    memory = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) and cost else cost
    return {
        "xla_step_memory_gb": (memory.temp_size_in_bytes + memory.argument_size_in_bytes) / 1e9 if memory else None,
        "flops_per_step": float(cost["flops"]) if cost and "flops" in cost else None,
    }


def time_step(compiled, state, batch, steps, batch_size) -> dict:
    """Median step time over ``steps`` steps after two warm-up steps (each step waited for)."""
    import jax

    times = []
    for i in range(steps + 2):
        start = time.perf_counter()
        state, metrics = compiled(state, batch)
        jax.block_until_ready(metrics)
        if i >= 2:
            times.append(time.perf_counter() - start)
    step_s = statistics.median(times)
    return {
        "step_s": step_s,
        "step_s_spread": max(times) - min(times),
        "steps_per_s": 1 / step_s,
        "episodes_per_s": batch_size / step_s,
    }


def bench_step(config, steps):
    start = time.perf_counter()
    lowered, state, batch = lower_step(config)
    compiled = lowered.compile()
    result = {"compile_s": time.perf_counter() - start, **analyse(compiled)}
    result.update(time_step(compiled, state, batch, steps, config.train.batch_size))
    if result["flops_per_step"]:
        result["tflops"] = result["flops_per_step"] / result["step_s"] / 1e12
        result["of_matmul_peak"] = result["tflops"] * 1e3 / cpu_info.matmul_peak()
    return result


def bench_official_step(repo, steps, batch_size=4, support_size=16, size=128):
    """The official PyTorch UniverSeg (a local checkout of JJGO/UniverSeg, not part of this project) trained one
    step at a time like ``v1_b4_s16``: random float inputs, soft Dice on the sigmoid, Adam; no augmentation (the
    ``augment_share`` case gives the augmentation's share on our side)."""
    import torch

    sys.path.insert(0, repo)
    from universeg.model import UniverSeg as Official

    torch.manual_seed(0)
    model = Official(encoder_blocks=[64, 64, 64, 64])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    query = torch.rand(batch_size, 1, size, size)
    support_images = torch.rand(batch_size, support_size, 1, size, size)
    support_labels = (torch.rand(batch_size, support_size, 1, size, size) > 0.5).float()
    query_label = (torch.rand(batch_size, 1, size, size) > 0.5).float()

    def step():
        optimizer.zero_grad()
        probabilities = torch.sigmoid(model(query, support_images, support_labels))
        overlap = (probabilities * query_label).sum(dim=(1, 2, 3))
        total = probabilities.sum(dim=(1, 2, 3)) + query_label.sum(dim=(1, 2, 3))
        loss = (1 - (2 * overlap + 1e-5) / (total + 1e-5)).mean()
        loss.backward()
        optimizer.step()

    times = []
    for i in range(steps + 2):
        start = time.perf_counter()
        step()
        if i >= 2:
            times.append(time.perf_counter() - start)
    step_s = statistics.median(times)
    return {
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "step_s": step_s,
        "step_s_spread": max(times) - min(times),
        "episodes_per_s": batch_size / step_s,
    }


def bench_augment_share(config, steps):
    """The step with the config's augmentations against the same step with none."""
    with_augment = bench_step(config, steps)
    for spec in list(config.augment.in_task.values()) + list(config.augment.task.values()):
        spec.p = 0.0
    without = bench_step(config, steps)
    return {
        "step_s_augmented": with_augment["step_s"],
        "step_s_plain": without["step_s"],
        "augmentation_share": 1 - without["step_s"] / with_augment["step_s"],
    }


def bench_pipeline(config, steps):
    """Episodes/s of sampling + gathering (host) and augmentation (jitted, this CPU), one after the other."""
    import jax

    from universeg_jax import train
    from universeg_jax.data import episodes
    from universeg_jax.data.augment import EpisodeAugmenter

    train_store, _ = train.load_stores(config)
    data = train.episode_dataset(train_store, config, seed=0, training=True)
    augment = jax.jit(EpisodeAugmenter(config.augment.in_task.to_dict(), config.augment.task.to_dict(), 0))
    iterator = episodes.iterate(data, num_workers=0, prefetch=config.data.prefetch)
    jax.block_until_ready(augment(next(iterator)))  # start-up and compilation are not throughput
    host = device = 0.0
    for _ in range(steps):
        start = time.perf_counter()
        batch = next(iterator)
        middle = time.perf_counter()
        jax.block_until_ready(augment(batch))
        host, device = host + middle - start, device + time.perf_counter() - middle
    episodes_done = steps * config.train.batch_size
    return {
        "episodes_per_s": episodes_done / (host + device),
        "host_ms_per_episode": 1e3 * host / episodes_done,
        "augment_ms_per_episode": 1e3 * device / episodes_done,
    }


def bench_old_pipeline(name, steps, commit):
    """The numpy pipeline of ``commit``, in a temporary worktree with its own builders (for a commit from before
    the folder took its import name, ``universeg_datasets`` points at its ``datasets/``) and its own data dir
    (``$TFDS_DATA_DIR`` + ``_<commit>``: its builder versions), in one process without workers."""
    from universeg_jax.data.tasks import default_data_dir

    old_case = name.replace("pipeline_old_", "pipeline_")
    with tempfile.TemporaryDirectory() as folder:
        tree, packages = Path(folder) / "old", Path(folder) / "packages"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(tree), commit], cwd=REPO, check=True, capture_output=True
        )
        packages.mkdir()
        if (tree / "datasets").is_dir():
            (packages / "universeg_datasets").symlink_to(tree / "datasets")
        env = {**os.environ, "PYTHONPATH": f"{packages}:{tree}", "TFDS_DATA_DIR": f"{default_data_dir()}_{commit}"}
        try:
            out = subprocess.run(
                [sys.executable, "benchmarks/bench_train.py", f"--case={old_case}", f"--steps={steps}"],
                cwd=tree,
                capture_output=True,
                text=True,
                env=env,
            )
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, capture_output=True)
    if out.returncode:
        raise RuntimeError(f"the pipeline of {commit} failed:\n{out.stderr[-3000:]}")
    figures = json.loads(out.stdout.strip().splitlines()[-1])[old_case]
    return {"episodes_per_s": figures["episodes_per_s_0_workers"], "commit": commit}


def bench_input_wait(config, steps):
    """A real ``:cpu`` run: the input-wait fraction of its windows (the first, with compilation, left out)."""
    from universeg_jax import train

    config.train.steps, config.train.log_every, config.train.eval_every = steps, max(1, steps // 4), 0
    config.checkpoint.every = steps
    with tempfile.TemporaryDirectory() as workdir:
        started = time.perf_counter()
        train.train(config, workdir)
        wall = time.perf_counter() - started
        rows = [json.loads(line) for line in (Path(workdir) / "metrics.jsonl").read_text().splitlines()]
    windows = [r for r in rows if r["prefix"] == "train"]
    return {
        "input_wait_fraction": statistics.mean(r["input_wait_fraction"] for r in windows),
        "steps_per_s": statistics.mean(r["steps_per_second"] for r in windows),
        "wall_s": wall,
        "windows": len(windows),
    }


def run_case(name, steps, loop_steps, commit, official_repo=None):
    if name == "official_v1_b4_s16":
        result = bench_official_step(official_repo, steps)
    elif name in STEP_CASES:
        result = bench_step(make_config(*STEP_CASES[name]), steps)
    elif name in PIPELINE_CASES:
        result = bench_pipeline(make_config(*PIPELINE_CASES[name]), steps)
    elif name.startswith("pipeline_old_"):
        result = bench_old_pipeline(name, steps, commit)
    elif name == "input_wait_cpu":
        result = bench_input_wait(make_config(*OTHER_CASES[name]), loop_steps)
    else:
        result = bench_augment_share(make_config(*OTHER_CASES[name]), steps)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({name: result}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    known = [*STEP_CASES, *PIPELINE_CASES, *OTHER_CASES]
    parser.add_argument("--cases", default=",".join(known))
    parser.add_argument("--steps", type=int, default=5, help="timed steps (or batches) per case")
    parser.add_argument("--loop-steps", type=int, default=200, help="steps of the input_wait_cpu run")
    parser.add_argument("--baseline-commit", default=BASELINE_COMMIT, help="commit of the old (numpy) pipeline")
    parser.add_argument(
        "--official-repo",
        help="a checkout of JJGO/UniverSeg: adds the case official_v1_b4_s16, the "
        "official PyTorch model's train step next to v1_b4_s16",
    )
    parser.add_argument(
        "--official-python",
        default=sys.executable,
        help="a Python with torch, einops and pydantic<2 installed (for --official-repo)",
    )
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case in this process
    args = parser.parse_args()
    if args.case:
        run_case(args.case, args.steps, args.loop_steps, args.baseline_commit, args.official_repo)
        return
    if args.official_repo:
        known.append("official_v1_b4_s16")
        if "--cases" not in " ".join(sys.argv):
            args.cases += ",official_v1_b4_s16"
    print(cpu_info.describe(), flush=True)
    for name in args.cases.split(","):
        if name not in known:
            parser.error(f"unknown case {name!r}; known: {known}")
        python = args.official_python if name.startswith("official") else sys.executable
        official = [f"--official-repo={args.official_repo}"] if args.official_repo else []
        out = subprocess.run(
            [
                python,
                __file__,
                f"--case={name}",
                f"--steps={args.steps}",
                f"--loop-steps={args.loop_steps}",
                f"--baseline-commit={args.baseline_commit}",
                *official,
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        if out.returncode:
            print(f"{name}: failed\n{out.stderr[-3000:]}", flush=True)
            continue
        figures = json.loads(out.stdout.strip().splitlines()[-1])[name]
        print(
            f"{name:26s} "
            + "  ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()),
            flush=True,
        )


if __name__ == "__main__":
    main()
