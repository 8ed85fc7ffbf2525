"""Training speed and memory: steps/s and episodes/s of the train step, and episodes/s of the input pipeline.

  python benchmarks/bench_train.py                      # every case, each in its own process
  python benchmarks/bench_train.py --cases=cpu,pipeline_cpu --steps=5

Step cases time the jitted train step (forward, backward, Adam) on a fixed random batch: the median over
``--steps`` steps after compilation. Each case runs in a fresh process so its peak RSS is its own; XLA's own
estimate of the step's working memory (temp buffers + arguments) is printed next to it. Pipeline cases build
episodes (sampling, TFDS reads, both augmentation kinds) from the embedded datasets, built on first use into
$TFDS_DATA_DIR.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# name -> (preset, overrides)
STEP_CASES = {
    "cpu": ("cpu", {}),
    "v1_b1_s64": ("default", {"train.batch_size": 1, "data.support_size": 64}),
    "v1_b1_s64_remat": ("default", {"train.batch_size": 1, "data.support_size": 64, "model.remat": True}),
    "v1_b4_s16": ("default", {"train.batch_size": 4, "data.support_size": 16}),
}
PIPELINE_CASES = {
    "pipeline_cpu": ("cpu", {}),
    "pipeline_v1_b1_s64": ("default", {"train.batch_size": 1, "data.support_size": 64}),
}


def make_config(preset, overrides):
    from configs.base import get_config

    config = get_config(preset)
    for path, value in overrides.items():
        section, field = path.split(".")
        config[section][field] = value
    return config


def bench_step(config, steps):
    import jax
    import numpy as np
    from flax import nnx

    from universeg_jax import parallel, train

    mesh = parallel.make_mesh()
    b, s, size = config.train.batch_size, config.data.support_size, config.data.size
    rng = np.random.default_rng(0)
    local = {
        "query": rng.random((b, size, size, 1), np.float32),
        "query_label": (rng.random((b, size, size, 1)) > 0.5).astype(np.float32),
        "support_images": rng.random((b, s, size, size, 1), np.float32),
        "support_labels": (rng.random((b, s, size, size, 1)) > 0.5).astype(np.float32),
    }
    graphdef, params = nnx.split(train.create_model(config))
    schedule = train.learning_rate_schedule(config)
    tx = train.make_optimizer(config, schedule)
    train_step, _ = train.make_steps(graphdef, tx, schedule, config, mesh)
    state = train.init_state((graphdef, params), tx, mesh)
    batch = parallel.global_batch(local, mesh)
    start = time.perf_counter()
    compiled = train_step.lower(state, batch).compile()
    compile_s = time.perf_counter() - start
    memory = compiled.memory_analysis()
    xla_mb = (memory.temp_size_in_bytes + memory.argument_size_in_bytes) / 2**20 if memory else float("nan")
    times = []
    for _ in range(steps + 1):  # the first call also transfers and warms up
        start = time.perf_counter()
        state, metrics = train_step(state, batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    step_s = statistics.median(times[1:])
    return {"compile_s": compile_s, "step_s": step_s, "steps_per_s": 1 / step_s, "episodes_per_s": b / step_s,
            "xla_step_memory_mb": xla_mb}


def bench_pipeline(config, steps):
    from universeg_jax import train
    from universeg_jax.data import episodes

    train_store, _ = train.load_stores(config)
    data = train.episode_dataset(train_store, config, seed=0, training=True)
    result = {}
    for workers in (0, 1):
        iterator = episodes.iterate(data, num_workers=workers, prefetch=config.data.prefetch)
        next(iterator)  # start-up (worker spawn, file opening) is not throughput
        start = time.perf_counter()
        for _ in range(steps):
            next(iterator)
        elapsed = time.perf_counter() - start
        iterator.close()
        result[f"episodes_per_s_{workers}_workers"] = steps * config.train.batch_size / elapsed
    return result


def run_case(name, steps):
    if name in STEP_CASES:
        result = bench_step(make_config(*STEP_CASES[name]), steps)
    else:
        result = bench_pipeline(make_config(*PIPELINE_CASES[name]), steps)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({name: result}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join([*STEP_CASES, *PIPELINE_CASES]))
    parser.add_argument("--steps", type=int, default=5, help="timed steps (or batches) per case")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case in this process
    args = parser.parse_args()
    if args.case:
        run_case(args.case, args.steps)
        return
    for name in args.cases.split(","):
        if name not in STEP_CASES and name not in PIPELINE_CASES:
            parser.error(f"unknown case {name!r}; known: {[*STEP_CASES, *PIPELINE_CASES]}")
        out = subprocess.run([sys.executable, __file__, f"--case={name}", f"--steps={args.steps}"],
                             capture_output=True, text=True, cwd=REPO)
        if out.returncode:
            print(f"{name}: failed\n{out.stderr[-3000:]}")
            continue
        figures = json.loads(out.stdout.strip().splitlines()[-1])[name]
        print(f"{name:20s} " + "  ".join(f"{k}={v:.3g}" for k, v in figures.items()), flush=True)


if __name__ == "__main__":
    main()
