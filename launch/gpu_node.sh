#!/usr/bin/env bash
# Train universeg-jax on one machine with one or more GPUs: a single JAX process that drives all visible GPUs.
#
# Usage: launch/gpu_node.sh [--flag=value ...] [--dry-run] [-- training flags]
#
# Runs
#   python -m universeg_jax.main --config=CONFIG --workdir=WORKDIR [training flags]
# with TFDS_DATA_DIR set. To use only some GPUs, set CUDA_VISIBLE_DEVICES (e.g. CUDA_VISIBLE_DEVICES=0,1).
#
# Settings (flag, or the environment variable of the same name in capitals):
#   --workdir        directory (or gs://) for checkpoints and logs (required)
#   --tfds-data-dir  directory holding the prepared TFDS data (required)
#   --config         training config (default: configs/base.py:gpu_node of this checkout)
#   --python         Python with universeg-jax installed (default: python3)
#   --dry-run        print the command and run nothing

SETTINGS=(WORKDIR TFDS_DATA_DIR CONFIG PYTHON)
SWITCHES=()
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib.sh
source "$REPO/launch/lib.sh"

WORKDIR=${WORKDIR:-}
TFDS_DATA_DIR=${TFDS_DATA_DIR:-}
CONFIG=${CONFIG:-$REPO/configs/base.py:gpu_node}
PYTHON=${PYTHON:-python3}

main() {
  parse_flags "$@"
  require WORKDIR TFDS_DATA_DIR CONFIG PYTHON
  require_config_file CONFIG
  require_switch DRY_RUN
  require_programs "$PYTHON"
  print_settings
  run env TFDS_DATA_DIR="$TFDS_DATA_DIR" \
    "$PYTHON" -m universeg_jax.main --config="$CONFIG" --workdir="$WORKDIR" "${EXTRA_ARGS[@]}"
}

main "$@"
