"""Wall time and peak memory of a full evaluation (configs/evaluate.py) on this machine.

    python benchmarks/bench_evaluate.py                         # shipped default model, full config
    python benchmarks/bench_evaluate.py --preset quick
    python benchmarks/bench_evaluate.py --architecture 64,64,64,64   # untrained model of that size (timing only:
                                                                    # the cost does not depend on the weights)
    python benchmarks/bench_evaluate.py --weights none          # baselines only

Prints the time per method (model and each baseline, including compilation), the total, the number of tasks and
model forward passes implied by the config, and the process's peak resident memory. Nothing is written to disk
except the datasets built on first use (in --data_dir).
"""

import argparse
import logging
import os
import resource
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="", help="configs/evaluate.py preset ('' = full, 'quick')")
    parser.add_argument("--weights", default=None, help="override config.weights ('default', 'v1', 'none', path)")
    parser.add_argument(
        "--architecture",
        default=None,
        help="comma-separated encoder blocks of an untrained model to time instead of weights",
    )
    parser.add_argument("--data_dir", default=None, help="TFDS data dir of the prepared tasks")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")  # one line per evaluated task

    from flax import nnx

    from configs.evaluate import get_config
    from universeg_jax import evaluate as E
    from universeg_jax.data.tasks import open_tasks
    from universeg_jax.model import UniverSeg

    config = get_config(args.preset)
    if args.weights:
        config.weights = args.weights
    if args.data_dir:
        config.data_dir = args.data_dir
    E.check_config(config)

    if args.architecture:
        model, trained_size = UniverSeg(tuple(int(b) for b in args.architecture.split(",")), rngs=nnx.Rngs(0)), None
        what = f"untrained UniverSeg{model.encoder_blocks}"
    else:
        model, trained_size = E.load_weights(config.weights)
        what = f"weights {config.weights!r}"
    config.size = E.evaluation_size(config.size, trained_size)

    tic = time.perf_counter()
    store = E.select_datasets(
        open_tasks(list(config.datasets), config.data_dir or None, size=config.size), config.datasets
    )
    open_seconds = time.perf_counter() - tic

    tic = time.perf_counter()
    report = E.evaluate(model, store, config)
    total = time.perf_counter() - tic

    supports = (
        sum(len(t["support_sizes"]) + (max(config.ensemble_sizes) if t["ensemble"] else 0) for t in report.tasks)
        * config.draws
    )
    print(
        f"evaluation of {what}, preset {args.preset or 'full'!r}, datasets {list(config.datasets)}, "
        f"{config.size}x{config.size}"
    )
    print(f"tasks: {len(report.tasks)} ({', '.join(t['id'] + ' n=' + str(t['examples']) for t in report.tasks)})")
    print(f"support sets predicted per method (upper bound, before reuse): {supports}")
    print(f"opening/building the tasks: {open_seconds:.1f} s")
    for method, seconds in report.timing["method_seconds"].items():
        print(f"  {method:>18}: {seconds:8.1f} s")
    print(f"total evaluation: {total:.1f} s ({total / 60:.1f} min)")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
