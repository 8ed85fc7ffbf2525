"""Command line: train, or evaluate on held-out tasks.

    python -m universeg_jax.main --config=configs/base.py:cpu --workdir=DIR
    python -m universeg_jax.main --mode=evaluate --config=configs/evaluate.py --workdir=DIR

Flags: ``--mode`` (train or evaluate), ``--config`` (an ml_collections config file, ``path:preset``, every field
overridable as ``--config.train.steps=100``), ``--workdir`` (local or ``gs://``), and the multi-process set-up
(``--distributed``, ``--coordinator_address``, ``--num_processes``, ``--process_id``; see
``universeg_jax.parallel.initialize``). Running again with the same workdir resumes from the latest checkpoint.
``--dry_run`` checks the flags and the config and stops. A user error (a bad config value, missing data or
weights) is one line on stderr and exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import sys

from absl import app, flags
from ml_collections import config_flags

from universeg_jax import evaluate, parallel, train

FLAGS = flags.FLAGS
flags.DEFINE_enum("mode", "train", ["train", "evaluate"], "Train (configs/base.py) or evaluate (configs/evaluate.py).")
config_flags.DEFINE_config_file("config", None, "Config file (path[:preset]) for the mode.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, TensorBoard events and config.json.")
flags.DEFINE_enum(
    "distributed",
    "auto",
    parallel.DISTRIBUTED_MODES,
    "Start jax.distributed: auto (when a coordinator or a multi-process cluster is detected), on, off.",
)
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (default: $JAX_COORDINATOR_ADDRESS).")
flags.DEFINE_integer("num_processes", None, "Number of processes (default: $JAX_NUM_PROCESSES or auto-detected).")
flags.DEFINE_integer("process_id", None, "This process's index (default: $JAX_PROCESS_ID or auto-detected).")
flags.DEFINE_bool(
    "dry_run", False, "Check the flags and the config, say what would run, and stop (reads no data, loads no weights)."
)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("absl").setLevel(logging.WARNING)  # orbax and grain narrate every save at INFO
    try:
        run()
    except (ValueError, OSError) as err:  # what a user can fix; any other exception is a bug: traceback
        print(f"universeg_jax.main: error: {err}", file=sys.stderr)
        sys.exit(2)


def run() -> None:
    """Train or evaluate as the flags say (with --dry_run, only check them)."""
    if FLAGS.dry_run:
        (evaluate.check_config if FLAGS.mode == "evaluate" else train.validate_config)(FLAGS.config)
        print(f"universeg_jax.main: dry run: flags and config are valid; would {FLAGS.mode} into {FLAGS.workdir}")
        return
    if FLAGS.mode == "evaluate":
        evaluate.run(FLAGS.config, FLAGS.workdir)
        return
    parallel.initialize(FLAGS.distributed, FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    train.train(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
    app.run(main)
