"""Where the train step's time goes: a per-op profile of one compiled step on this machine.

  python benchmarks/profile_step.py --case=cpu            # the :cpu preset's step
  python benchmarks/profile_step.py --case=v1_b4_s16 --top=40

Runs the jitted train step of ``bench_train.py``'s case (augmentation, forward, backward, Adam) a few times under
``jax.profiler``, reads the trace's per-op durations (XLA thunk events, summed over threads) and prints them grouped
by kind: convolutions by role (forward, input gradient, kernel gradient) and shape, dots, reductions, fusions, with
the JAX operation each came from. Also prints the CPU's instruction set and the step's share of the matrix-product
peak measured in the same run (``cpu_info.py``).
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench_train  # noqa: E402
import cpu_info  # noqa: E402

INSTRUCTION = re.compile(r"\s*(?:ROOT )?%?([\w.\-]+) = (\S+) ")


def instructions(hlo: str) -> dict[str, str]:
    """HLO instruction name -> its line, for the top-level computations of the compiled step."""
    found = {}
    for line in hlo.splitlines():
        match = INSTRUCTION.match(line)
        if match:
            found.setdefault(match.group(1), line.strip())
    return found


def conv_role(line: str) -> str:
    """Forward, input gradient or kernel gradient, from the window size and the JAX operation it came from."""
    window = re.search(r"window=\{size=(\d+)x(\d+)", line)
    if window and int(window.group(1)) > 3:
        return "conv kernel-grad"
    return "conv input-grad" if "transpose(" in line else "conv forward"


def kind(name: str, line: str | None) -> str:
    if line is None:
        return "other"
    if " convolution(" in line or name.startswith(("conv", "convolution")):
        return conv_role(line)
    shape = line.split(" = ", 1)[1].split(" ", 1)[0]
    return f"{re.sub(r'[.0-9]+$', '', name)} {shape}"


def profile(case: str, steps: int) -> tuple[dict[str, float], dict[str, str], float]:
    """(op name -> milliseconds per step, op name -> HLO line, median step seconds)."""
    import jax

    preset, overrides = bench_train.STEP_CASES[case]
    config = bench_train.make_config(preset, overrides)
    lowered, state, batch = bench_train.lower_step(config)
    compiled = lowered.compile()
    for _ in range(2):  # warm-up
        state, metrics = compiled(state, batch)
        jax.block_until_ready(metrics)
    trace_dir, times = tempfile.mkdtemp(), []
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
        for _ in range(steps):
            start = time.perf_counter()
            state, metrics = compiled(state, batch)
            jax.block_until_ready(metrics)
            times.append(time.perf_counter() - start)
    trace = glob.glob(f"{trace_dir}/**/perfetto_trace.json.gz", recursive=True)[0]
    events = json.load(gzip.open(trace))
    events = events["traceEvents"] if isinstance(events, dict) else events
    lines = instructions(compiled.as_text())
    per_op = collections.Counter()
    for event in events:
        if event.get("ph") == "X" and event.get("name") in lines:
            per_op[event["name"]] += event["dur"] / 1000 / steps
    return per_op, lines, statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", default="cpu", choices=sorted(bench_train.STEP_CASES))
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--top", type=int, default=25, help="how many single ops to list")
    args = parser.parse_args()
    print(cpu_info.describe())
    per_op, lines, step_s = profile(args.case, args.steps)
    total = sum(per_op.values())
    print(f"\n{args.case}: step {step_s * 1000:.1f} ms wall; ops sum to {total:.1f} ms of thread time\n")
    by_kind = collections.Counter()
    for name, ms in per_op.items():
        by_kind[kind(name, lines[name])] += ms
    print("by kind (ms per step, share of op time)")
    for name, ms in by_kind.most_common(args.top):
        print(f"  {ms:8.2f}  {ms / total:5.1%}  {name}")
    print("\nsingle ops")
    for name, ms in per_op.most_common(args.top):
        origin = re.search(r'op_name="([^"]*)"', lines[name])
        print(f"  {ms:8.2f}  {name:32s} {kind(name, lines[name])[:60]:60s} {origin.group(1)[-70:] if origin else ''}")


if __name__ == "__main__":
    main()
