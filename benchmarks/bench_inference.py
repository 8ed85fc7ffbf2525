"""Inference throughput and peak memory of the Segmenter with the v1 architecture (random weights: timing only).

Cases (each runs in its own process so that its peak RSS is its own):

* ``images``: 100 queries of 256x256 (uint16) against one support set of 16 labelled 256x256 images;
* ``volume``: one 128-slice volume of 256x256 slices, support of 16 labelled slices.

The support set is preprocessed once (timed separately); the first batch compiles (timed separately); the
figure is the steady-state rate of a second full run. Usage:

    python benchmarks/bench_inference.py [--batch-size 8] [--cases images volume]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def synthetic(n: int, shape, seed: int):
    """Images with bright discs and their masks (content does not matter for timing, shapes do)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    images, labels = [], []
    for _ in range(n):
        cy, cx, r = rng.uniform(0.3, 0.7, 2).tolist() + [rng.uniform(0.1, 0.2)]
        mask = (yy / shape[0] - cy) ** 2 + (xx / shape[1] - cx) ** 2 < r**2
        images.append((rng.normal(1000, 100, shape) + 800 * mask).clip(0, 65535).astype(np.uint16))
        labels.append(mask.astype(np.uint8))
    return images, labels


def run_case(case: str, batch_size: int, queries: int, support_size: int) -> dict:
    from flax import nnx

    from universeg_jax.inference import Segmenter
    from universeg_jax.model import UniverSeg

    segmenter = Segmenter(UniverSeg(rngs=nnx.Rngs(0)), batch_size=batch_size)
    images, labels = synthetic(support_size, (256, 256), seed=0)
    start = time.perf_counter()
    support = segmenter.prepare_support(images, labels)
    prepare = time.perf_counter() - start

    if case == "images":
        query_images = synthetic(queries, (256, 256), seed=1)[0]
        work = lambda: segmenter.segment(query_images, support=support)  # noqa: E731
        warm = lambda: segmenter.segment(query_images[:batch_size], support=support)  # noqa: E731
        count = queries
    else:
        volume = np.stack(synthetic(queries, (256, 256), seed=1)[0], axis=-1)  # (256, 256, slices)
        work = lambda: segmenter.segment_volume(volume, support, axis=-1)  # noqa: E731
        warm = lambda: segmenter.segment_volume(volume[..., :batch_size], support, axis=-1)  # noqa: E731
        count = volume.shape[-1]

    start = time.perf_counter()
    warm()
    first = time.perf_counter() - start
    start = time.perf_counter()
    work()
    total = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "case": case, "batch_size": batch_size, "queries": count, "support": support_size,
        "prepare_support_s": round(prepare, 3), "first_batch_with_compile_s": round(first, 2),
        "total_s": round(total, 2), "queries_per_s": round(count / total, 3),
        "s_per_query": round(total / count, 3), "peak_rss_mib": round(peak_mib),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["images", "volume"], choices=["images", "volume"])
    parser.add_argument("--batch-size", type=int, nargs="+", default=[8])
    parser.add_argument("--queries", type=int, default=None, help="queries (images) or slices (volume)")
    parser.add_argument("--support-size", type=int, default=16)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        queries = args.queries or (100 if args.cases[0] == "images" else 128)
        print(json.dumps(run_case(args.cases[0], args.batch_size[0], queries, args.support_size)))
        return
    for case in args.cases:
        for batch_size in args.batch_size:
            cmd = [sys.executable, __file__, "--child", "--cases", case, "--batch-size", str(batch_size),
                   "--support-size", str(args.support_size)]
            if args.queries:
                cmd += ["--queries", str(args.queries)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            print(out.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
