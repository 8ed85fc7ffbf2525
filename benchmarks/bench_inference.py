"""Inference throughput and peak memory of the Segmenter with the v1 architecture (random weights: timing only).

Cases (each runs in its own process so that its peak RSS is its own):

* ``images``: 100 queries of 256x256 (uint16) against one support set of 16 labelled 256x256 images;
* ``volume``: one 128-slice volume of 256x256 slices, support of 16 labelled slices;
* ``labels``: 8 queries, ``--labels`` label values (1, 4 and 20 by default), ensemble K=4 of support 16: ``before``
  runs one forward pass per (label, member) as the Segmenter did until it batched them; ``after`` is the Segmenter,
  every (label, member) set and query in as few passes as ``--memory-budget`` allows, the first block's support
  work encoded once per set. Probabilities of the two are compared (max abs difference printed).

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


def label_maps(n: int, labels: int, shape, seed: int):
    """Images with ``labels`` discs, each with its own label value."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    images, maps = [], []
    for _ in range(n):
        image = rng.normal(1000, 100, shape)
        label = np.zeros(shape, np.uint8)
        for value in range(1, labels + 1):
            cy, cx, r = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.04, 0.1)
            disc = (yy / shape[0] - cy) ** 2 + (xx / shape[1] - cx) ** 2 < r**2
            image[disc] += 40 * value
            label[disc] = value
        images.append(image.clip(0, 65535).astype(np.uint16))
        maps.append(label)
    return images, maps


def run_labels(mode: str, labels: int, queries: int, support_size: int, ensemble: int, budget_gb: float) -> dict:
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from universeg_jax import preprocess as pp
    from universeg_jax.inference import Segmenter
    from universeg_jax.model import UniverSeg

    model = UniverSeg(rngs=nnx.Rngs(0))
    segmenter = Segmenter(model, batch_size=queries, memory_budget=int(budget_gb * 1024**3))
    images, maps = label_maps(4 * support_size, labels, (256, 256), seed=0)
    support = segmenter.prepare_support(images, maps)
    query_images = label_maps(queries, labels, (256, 256), seed=1)[0]
    options = dict(ensemble=ensemble, support_size=support_size, seed=0)
    members = segmenter.members(len(support), **options)
    graphdef, params = nnx.split(model)
    forward = jax.jit(lambda p, q, i, l: jax.nn.sigmoid(nnx.merge(graphdef, p)(q, i, l)[..., 0]))

    def before():
        inputs = np.stack([pp.fit_image(segmenter.normalize(q), segmenter.size) for q in query_images])[..., None]
        query = jnp.asarray(inputs)
        out = []
        for masks in support.masks:  # one pass per label and member, as before the batching
            total = sum(
                forward(
                    params,
                    query,
                    jnp.asarray(support.images[m][None, ..., None]),
                    jnp.asarray(masks[m][None, ..., None]),
                )
                for m in members
            )
            out.append(np.asarray(total) / len(members))
        return np.stack(out)

    def after():
        inputs = np.stack([pp.fit_image(segmenter.normalize(q), segmenter.size) for q in query_images])
        return segmenter._predict(inputs, segmenter._plan(support, **options))

    work = before if mode == "before" else after
    start = time.perf_counter()
    first = work()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    result = work()
    total = time.perf_counter() - start
    np.save(f"/tmp/bench_labels_{mode}_{labels}.npy", result)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    device = jax.devices()[0]
    stats = getattr(device, "memory_stats", lambda: None)() or {}
    row = {
        "case": "labels",
        "mode": mode,
        "labels": labels,
        "queries": queries,
        "ensemble": ensemble,
        "support": support_size,
        "passes": len(segmenter._plan(support, **options)["groups"]) if mode == "after" else labels * len(members),
        "first_run_with_compile_s": round(compile_s, 2),
        "total_s": round(total, 2),
        "peak_rss_mib": round(peak_mib),
        "device": device.platform,
    }
    if "peak_bytes_in_use" in stats:
        row["peak_device_mib"] = round(stats["peak_bytes_in_use"] / 2**20)
    del first
    return row


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
        "case": case,
        "batch_size": batch_size,
        "queries": count,
        "support": support_size,
        "prepare_support_s": round(prepare, 3),
        "first_batch_with_compile_s": round(first, 2),
        "total_s": round(total, 2),
        "queries_per_s": round(count / total, 3),
        "s_per_query": round(total / count, 3),
        "peak_rss_mib": round(peak_mib),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["images", "volume"], choices=["images", "volume", "labels"])
    parser.add_argument("--labels", type=int, nargs="+", default=[1, 4, 20])
    parser.add_argument("--ensemble", type=int, default=4)
    parser.add_argument("--memory-budget", type=float, default=2.0, metavar="GB")
    parser.add_argument("--mode", default="after", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, nargs="+", default=[8])
    parser.add_argument("--queries", type=int, default=None, help="queries (images) or slices (volume)")
    parser.add_argument("--support-size", type=int, default=16)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child and args.cases[0] == "labels":
        print(
            json.dumps(
                run_labels(
                    args.mode, args.labels[0], args.queries or 8, args.support_size, args.ensemble, args.memory_budget
                )
            )
        )
        return
    if args.child:
        queries = args.queries or (100 if args.cases[0] == "images" else 128)
        print(json.dumps(run_case(args.cases[0], args.batch_size[0], queries, args.support_size)))
        return
    for case in args.cases:
        if case == "labels":
            for labels in args.labels:
                for mode in ("before", "after"):
                    cmd = [
                        sys.executable,
                        __file__,
                        "--child",
                        "--cases",
                        "labels",
                        "--labels",
                        str(labels),
                        "--mode",
                        mode,
                        "--support-size",
                        str(args.support_size),
                        "--ensemble",
                        str(args.ensemble),
                        "--memory-budget",
                        str(args.memory_budget),
                    ]
                    if args.queries:
                        cmd += ["--queries", str(args.queries)]
                    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                    print(out.strip().splitlines()[-1], flush=True)
                a = np.load(f"/tmp/bench_labels_before_{labels}.npy")
                b = np.load(f"/tmp/bench_labels_after_{labels}.npy")
                print(json.dumps({"labels": labels, "max_abs_difference": float(np.abs(a - b).max())}), flush=True)
            continue
        for batch_size in args.batch_size:
            cmd = [
                sys.executable,
                __file__,
                "--child",
                "--cases",
                case,
                "--batch-size",
                str(batch_size),
                "--support-size",
                str(args.support_size),
            ]
            if args.queries:
                cmd += ["--queries", str(args.queries)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            print(out.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
