#!/usr/bin/env bash
# Build universeg-jax TFDS datasets on this machine and upload them to a Cloud Storage bucket for training.
#
# Usage: launch/prepare_data.sh [--flag=value ...] [--dry-run]
#
# Run it once, before launch/tpu.sh, on a cheap machine (a workstation or a small VM): building data on a TPU
# slice would pay TPU prices for CPU work. Each dataset is built with
#   python -m universeg_datasets.build NAME [--config CONFIG] --data_dir LOCAL_DATA_DIR [--manual_dir MANUAL_DIR]
# then LOCAL_DATA_DIR is copied with `gsutil -m rsync -r` to TFDS_DATA_DIR (raw downloads are not uploaded). Put
# the bucket in the TPU's region: reading data across regions is billed as network egress.
#
# Settings (flag, or the environment variable of the same name in capitals):
#   --tfds-data-dir   gs:// directory to upload to; training reads it as TFDS_DATA_DIR (required)
#   --datasets        comma-separated dataset names, each optionally NAME/CONFIG (e.g. drive/size128), or
#                     "embedded" for every dataset that needs no download (default: embedded)
#   --local-data-dir  local directory to build into, used for nothing else (default: ~/universeg_tfds)
#   --manual-dir      directory holding manually downloaded raw data, for builders that need it (optional)
#   --python          Python with universeg-jax[data] installed, e.g. .venv/bin/python (default: python3)
#   --dry-run         print every command and run none

SETTINGS=(TFDS_DATA_DIR DATASETS LOCAL_DATA_DIR MANUAL_DIR PYTHON)
SWITCHES=()
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib.sh
source "$REPO/launch/lib.sh"

TFDS_DATA_DIR=${TFDS_DATA_DIR:-}
DATASETS=${DATASETS:-embedded}
LOCAL_DATA_DIR=${LOCAL_DATA_DIR:-$HOME/universeg_tfds}
MANUAL_DIR=${MANUAL_DIR:-}
PYTHON=${PYTHON:-python3}

check_settings() {
  require TFDS_DATA_DIR DATASETS LOCAL_DATA_DIR PYTHON
  require_gs_path TFDS_DATA_DIR
  [[ $DATASETS =~ ^[a-z0-9_]+(/[a-z0-9_]+)?(,[a-z0-9_]+(/[a-z0-9_]+)?)*$ ]] ||
    die "--datasets must be comma-separated TFDS names like name or name/config, got '$DATASETS'"
  [[ -z $MANUAL_DIR || -d $MANUAL_DIR ]] || die "--manual-dir '$MANUAL_DIR' is not a directory"
  require_switch DRY_RUN
}

build_dataset() {
  local name=${1%%/*} options=()
  [[ $1 != */* ]] || options+=(--config "${1#*/}")
  [[ -z $MANUAL_DIR ]] || options+=(--manual_dir "$MANUAL_DIR")
  run "$PYTHON" -m universeg_datasets.build "$name" "${options[@]}" --data_dir "$LOCAL_DATA_DIR"
}

main() {
  parse_flags "$@"
  ((${#EXTRA_ARGS[@]} == 0)) || die "launch/prepare_data.sh takes no arguments after --"
  check_settings
  require_programs "$PYTHON" gsutil
  print_settings
  local dataset datasets
  IFS=, read -r -a datasets <<<"$DATASETS"
  for dataset in "${datasets[@]}"; do
    build_dataset "$dataset" || die "building $dataset failed"
  done
  run gsutil -m rsync -r -x '^downloads/' "$LOCAL_DATA_DIR" "${TFDS_DATA_DIR%/}" || die "uploading failed"
  note "data ready: pass --tfds-data-dir=$TFDS_DATA_DIR to launch/tpu.sh"
}

main "$@"
