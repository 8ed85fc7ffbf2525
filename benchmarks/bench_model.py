"""Forward-pass speed and memory of the v1 architecture: the fast model vs the concatenating form.

    python benchmarks/bench_model.py                  # B in {1, 8} x S in {1, 8, 64}, 128x128, float32
    python benchmarks/bench_model.py --batch 1 --support 64 --variants split
    python benchmarks/bench_model.py --official-repo /path/to/UniverSeg --official-python /path/to/torch/python
        # also times the official PyTorch model from a local checkout (not shipped with this project)

Every configuration runs in a fresh subprocess so that its peak resident memory (ru_maxrss) is its own. The first
line names the CPU, its instruction set and the float32 matrix-product peak measured in the same run
(``cpu_info.py``); GFLOP/s is XLA's FLOP count of the split model's forward over each row's time, and its share of
that peak.
The concatenating form (tests/reference_model.py, a literal port of the official forward) is skipped where XLA's
own memory estimate says it would not fit, and the table says so.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

import cpu_info

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEMORY_LIMIT_GB = 18.0


def make_inputs(b, s, size, seed=0):
    rng = np.random.default_rng(seed)
    query = rng.random((b, size, size, 1), dtype=np.float32)
    images = rng.random((b, s, size, size, 1), dtype=np.float32)
    labels = (rng.random((b, s, size, size, 1)) > 0.5).astype(np.float32)
    return query, images, labels


def forward_fn(variant):
    """A jitted forward and its arguments (channels-last inputs for both variants)."""
    import jax
    from flax import nnx

    from universeg_jax import weights
    from universeg_jax.model import UniverSeg

    model = UniverSeg(rngs=nnx.Rngs(0))
    if variant == "split":
        graphdef, state = nnx.split(model)
        return jax.jit(lambda p, q, si, sl: nnx.merge(graphdef, p)(q, si, sl)), state

    sys.path.insert(0, ROOT)
    from tests.reference_model import reference_forward

    def concat(p, q, si, sl):
        out = reference_forward(
            p,
            len(model.encoder_blocks),
            len(model.decoder_blocks),
            q.transpose(0, 3, 1, 2),
            si.transpose(0, 1, 4, 2, 3),
            sl.transpose(0, 1, 4, 2, 3),
        )
        return out.transpose(0, 2, 3, 1)

    return jax.jit(concat), weights.official_state_dict(model)


def run_one(variant, b, s, size, repeats):
    """Child process: compile, check XLA's memory estimate, time ``repeats`` forwards."""
    import jax

    fn, params = forward_fn(variant)
    inputs = [jax.device_put(x) for x in make_inputs(b, s, size)]
    start = time.perf_counter()
    compiled = fn.lower(params, *inputs).compile()
    compile_s = time.perf_counter() - start
    analysis = compiled.memory_analysis()
    xla_gb = (analysis.temp_size_in_bytes + analysis.argument_size_in_bytes + analysis.output_size_in_bytes) / 1e9
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    result = {
        "variant": variant,
        "B": b,
        "S": s,
        "compile_s": compile_s,
        "xla_estimate_gb": xla_gb,
        "xla_flops": float(cost["flops"]) if cost and "flops" in cost else None,
    }
    if xla_gb > MEMORY_LIMIT_GB:
        result["skipped"] = f"XLA estimate {xla_gb:.1f} GB > {MEMORY_LIMIT_GB} GB"
        return result
    compiled(params, *inputs).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        compiled(params, *inputs).block_until_ready()
        times.append(time.perf_counter() - start)
    result["median_s"] = statistics.median(times)
    result["times_s"] = times
    result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    return result


def run_official(repo, b, s, size, repeats):
    """Child process: the official PyTorch model from a local checkout of JJGO/UniverSeg (not part of this project)."""
    import torch

    sys.path.insert(0, repo)
    from universeg.model import UniverSeg as Official

    torch.manual_seed(0)
    model = Official(encoder_blocks=[64, 64, 64, 64]).eval()
    q, si, sl = (torch.from_numpy(np.moveaxis(x, -1, -3).copy()) for x in make_inputs(b, s, size))
    times = []
    with torch.no_grad():
        model(q, si, sl)
        for _ in range(repeats):
            start = time.perf_counter()
            model(q, si, sl)
            times.append(time.perf_counter() - start)
    return {
        "variant": f"official torch {torch.__version__}",
        "B": b,
        "S": s,
        "median_s": statistics.median(times),
        "times_s": times,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
    }


def spawn(args, python=sys.executable):
    out = subprocess.run([python, __file__, "--child", json.dumps(args)], capture_output=True, text=True)
    if out.returncode != 0:
        return {
            "variant": args["variant"],
            "B": args["b"],
            "S": args["s"],
            "skipped": f"child failed ({out.returncode}): {out.stderr.strip().splitlines()[-1:]}",
        }
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--support", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--variants", nargs="+", default=["split", "concat"], choices=["split", "concat"])
    parser.add_argument("--official-repo", help="path to a checkout of JJGO/UniverSeg, to time the official model")
    parser.add_argument(
        "--official-python",
        default=sys.executable,
        help="a Python with torch, einops and pydantic<2 installed (for --official-repo)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        spec = json.loads(args.child)
        if spec["variant"] == "official":
            print(json.dumps(run_official(spec["repo"], spec["b"], spec["s"], spec["size"], spec["repeats"])))
        else:
            print(json.dumps(run_one(spec["variant"], spec["b"], spec["s"], spec["size"], spec["repeats"])))
        return

    variants = list(args.variants) + (["official"] if args.official_repo else [])
    print(cpu_info.describe(), flush=True)
    peak = cpu_info.matmul_peak()
    print(
        f"UniverSeg v1 forward, {args.size}x{args.size}, float32, CPU x{os.cpu_count()}, "
        f"median of {args.repeats} after warm-up; peak RSS of a fresh process per row"
    )
    print(
        f"{'variant':<28}{'B':>3}{'S':>4}{'median s':>10}{'peak RSS GB':>13}{'XLA est GB':>12}{'compile s':>11}{'GFLOP/s':>9}{'of peak':>9}"
    )
    flops = {}  # (B, S) -> XLA's FLOP count of the split model's forward
    for b in args.batch:
        for s in args.support:
            for variant in variants:
                if variant == "official" and b * s > 64:
                    print(
                        f"{'official':<28}{b:>3}{s:>4}  not run: killed for memory at 24 GB on this machine "
                        "(measured once: B=8, S=64 needs more than 24 GB); running it would starve other processes",
                        flush=True,
                    )
                    continue
                r = spawn(
                    {
                        "variant": variant,
                        "b": b,
                        "s": s,
                        "size": args.size,
                        "repeats": args.repeats,
                        "repo": args.official_repo,
                    },
                    args.official_python if variant == "official" else sys.executable,
                )
                if "skipped" in r:
                    print(f"{r['variant']:<28}{b:>3}{s:>4}  not run: {r['skipped']}", flush=True)
                    continue
                est = f"{r['xla_estimate_gb']:.2f}" if "xla_estimate_gb" in r else "-"
                comp = f"{r['compile_s']:.1f}" if "compile_s" in r else "-"
                if r["variant"] == "split" and r.get("xla_flops"):
                    flops[(b, s)] = r["xla_flops"]
                # GFLOP/s of the split model's XLA count for every row: the same work, so the rates compare.
                rate = flops[(b, s)] / r["median_s"] / 1e9 if flops.get((b, s)) else None
                rate_text = f"{rate:>9.1f}{rate / peak:>9.1%}" if rate else f"{'-':>9}{'-':>9}"
                print(
                    f"{r['variant']:<28}{b:>3}{s:>4}{r['median_s']:>10.3f}{r['peak_rss_gb']:>13.2f}"
                    f"{est:>12}{comp:>11}{rate_text}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
