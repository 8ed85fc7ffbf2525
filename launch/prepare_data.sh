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
#   --datasets        comma-separated dataset names, each optionally NAME/CONFIG (e.g. drive/size128),
#                     "embedded" for every dataset that needs no download (default: embedded), or "raw" (or
#                     raw/CONFIG) for every raw MegaMedical dataset whose folder is in --manual-dir: they are
#                     listed (that read-only listing runs even with --dry-run, and prints one table of the
#                     absent datasets with where to download them), then each is built
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
  [[ -n $MANUAL_DIR || ! $DATASETS =~ (^|,)raw(/|,|$) ]] ||
    die "--datasets=raw needs --manual-dir (the folder holding the raw downloads)"
  require_switch DRY_RUN
}

# Prints the raw datasets present in MANUAL_DIR, one per line (the table of absent ones goes to stderr). It only
# reads the manual dir, so it runs under --dry-run too: a dry run then shows one build command per dataset.
list_raw() {
  printf '+ %s\n' "$(shell_quote "$PYTHON" -m universeg_datasets.build raw --list --manual_dir "$MANUAL_DIR")" >&2
  "$PYTHON" -m universeg_datasets.build raw --list --manual_dir "$MANUAL_DIR"
}

# Sets DATASET_LIST from the given names, "raw" and "raw/CONFIG" replaced by the present raw datasets.
expand_datasets() {
  local dataset name names
  DATASET_LIST=()
  for dataset in "$@"; do
    if [[ ${dataset%%/*} == raw ]]; then
      names=$(list_raw) || die "listing the raw datasets in $MANUAL_DIR failed"
      while read -r name; do
        [[ -z $name ]] || DATASET_LIST+=("$name${dataset#raw}")
      done <<<"$names"
    else
      DATASET_LIST+=("$dataset")
    fi
  done
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
  expand_datasets "${datasets[@]}"
  for dataset in "${DATASET_LIST[@]}"; do
    build_dataset "$dataset" || die "building $dataset failed"
  done
  run gsutil -m rsync -r -x '^downloads/' "$LOCAL_DATA_DIR" "${TFDS_DATA_DIR%/}" || die "uploading failed"
  note "data ready: pass --tfds-data-dir=$TFDS_DATA_DIR to launch/tpu.sh"
}

main "$@"
