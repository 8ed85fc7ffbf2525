#!/usr/bin/env bash
# Train universeg-jax on a Cloud TPU VM slice (one host or a pod slice), from start to delete.
#
# Usage: launch/tpu.sh [--flag=value ...] [--dry-run] [--keep-tpu] [-- training flags]
#
# Steps: check that the prepared data and the workdir bucket exist and that the TPU name is free; request the TPU
# as a queued resource and wait until it is ACTIVE; copy this checkout to every worker and install it; run
#   python -m universeg_jax.main --distributed=on --config=CONFIG --workdir=WORKDIR [training flags]
# on all workers at once (--worker=all), streaming their output prefixed with the worker's host name; delete the
# TPU on exit -- after success, failure, Ctrl-C or a closed terminal (exit status 3 if that delete failed). If a
# spot TPU is preempted, it is deleted and requested again, and training resumes from the latest checkpoint in
# WORKDIR (at most MAX_RESTARTS times). A failure on a healthy TPU is not retried.
#
# Settings (flag, or the environment variable of the same name in capitals, e.g. --tpu-name or TPU_NAME):
#   --project          Google Cloud project to bill (required; gcloud's default project is not used)
#   --zone             zone of the TPU, e.g. us-central2-b (required)
#   --tpu-name         name for the queued resource and its TPU node; must not exist yet (required)
#   --accelerator-type TPU slice, e.g. v4-32, v5litepod-16, v5p-64, v6e-16 (required)
#   --runtime-version  TPU software version (default: the one Google lists for the accelerator family)
#   --capacity         spot | on-demand | reserved (default: spot, the cheapest, with automatic resume)
#   --workdir          gs:// directory for checkpoints and logs (required)
#   --tfds-data-dir    gs:// directory holding the prepared TFDS data, see launch/prepare_data.sh (required)
#   --config           training config, relative to the checkout's root (default: configs/base.py:tpu_pod)
#   --max-restarts     times to re-create a preempted TPU (default: 3)
#   --poll-seconds     seconds between status checks while waiting for capacity (default: 30)
#   --keep-tpu         do not delete the TPU on exit (it keeps billing until you delete it)
#   --dry-run          print every command and run none
#
# Example:
#   launch/tpu.sh --project=my-lab --zone=us-central2-b --tpu-name=useg-v4-32 --accelerator-type=v4-32 \
#     --workdir=gs://my-lab-useg/runs/v4-32 --tfds-data-dir=gs://my-lab-useg/tfds --dry-run

SETTINGS=(PROJECT ZONE TPU_NAME ACCELERATOR_TYPE RUNTIME_VERSION CAPACITY WORKDIR TFDS_DATA_DIR CONFIG
  MAX_RESTARTS POLL_SECONDS)
SWITCHES=(KEEP_TPU)
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib.sh
source "$REPO/launch/lib.sh"

PROJECT=${PROJECT:-}
ZONE=${ZONE:-}
TPU_NAME=${TPU_NAME:-}
ACCELERATOR_TYPE=${ACCELERATOR_TYPE:-}
RUNTIME_VERSION=${RUNTIME_VERSION:-}
CAPACITY=${CAPACITY:-spot}
WORKDIR=${WORKDIR:-}
TFDS_DATA_DIR=${TFDS_DATA_DIR:-}
CONFIG=${CONFIG:-configs/base.py:tpu_pod}
MAX_RESTARTS=${MAX_RESTARTS:-3}
POLL_SECONDS=${POLL_SECONDS:-30}
KEEP_TPU=${KEEP_TPU:-0}

# Where the code and its virtual environment live on each worker, relative to the worker's home directory.
REMOTE_TARBALL=universeg-jax.tgz
REMOTE_CODE=universeg-jax/code
REMOTE_VENV=universeg-jax/venv

# The TPU software version Google lists for each accelerator family.
default_runtime_version() {
  case $1 in
    v2-* | v3-* | v4-*) echo tpu-ubuntu2204-base ;;
    v5litepod-*) echo v2-alpha-tpuv5-lite ;;
    v5p-*) echo v2-alpha-tpuv5 ;;
    v6e-*) echo v2-alpha-tpuv6e ;;
    *) return 1 ;;
  esac
}

check_settings() {
  require PROJECT ZONE TPU_NAME ACCELERATOR_TYPE WORKDIR TFDS_DATA_DIR CONFIG
  [[ $TPU_NAME =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]] ||
    die "--tpu-name must be lower-case letters, digits and dashes, starting with a letter; got '$TPU_NAME'"
  [[ $ACCELERATOR_TYPE =~ ^v[0-9]+[a-z]*-[0-9]+$ ]] ||
    die "--accelerator-type must look like v4-32 or v5litepod-16, got '$ACCELERATOR_TYPE'"
  if [[ -z $RUNTIME_VERSION ]]; then
    RUNTIME_VERSION=$(default_runtime_version "$ACCELERATOR_TYPE") ||
      die "no default --runtime-version for '$ACCELERATOR_TYPE'; pass one (see the Cloud TPU software versions page)"
  fi
  contains "$CAPACITY" spot on-demand reserved ||
    die "--capacity must be spot, on-demand or reserved, got '$CAPACITY'"
  require_gs_path WORKDIR
  require_gs_path TFDS_DATA_DIR
  [[ $CONFIG != /* ]] ||
    die "--config must be a path inside this checkout, relative to its root (the checkout is copied to the TPU)"
  require_config_file CONFIG "$REPO"
  require_non_negative_int MAX_RESTARTS
  require_non_negative_int POLL_SECONDS
  require_switch KEEP_TPU
  require_switch DRY_RUN
}

gcloud_tpus() {
  run gcloud compute tpus "$@" --zone="$ZONE" --project="$PROJECT" --quiet
}

query_tpus() {
  local dry_answer=$1
  shift
  query "$dry_answer" gcloud compute tpus "$@" --zone="$ZONE" --project="$PROJECT" --quiet
}

# Refuses before anything is paid for: the data must be prepared, the workdir bucket must exist, and no queued
# resource or TPU of this name may exist (so that this script only ever deletes what it created).
preflight() {
  local bucket=${WORKDIR#gs://}
  bucket=gs://${bucket%%/*}
  query "" gsutil ls "$TFDS_DATA_DIR" >/dev/null ||
    die "no prepared data at $TFDS_DATA_DIR (run launch/prepare_data.sh first)"
  query "" gsutil ls -b "$bucket" >/dev/null || die "cannot read bucket $bucket of --workdir"
  local names
  names=$(query_tpus "" queued-resources list --format='value(name.basename())') ||
    die "could not list the queued resources in $ZONE of project $PROJECT"
  names+=$'\n'$(query_tpus "" tpu-vm list --format='value(name.basename())') ||
    die "could not list the TPUs in $ZONE of project $PROJECT"
  if grep -qx -- "$TPU_NAME" <<<"$names"; then
    die "a queued resource or TPU named '$TPU_NAME' already exists in $ZONE; choose another --tpu-name" \
      "(or delete it: gcloud compute tpus queued-resources delete $TPU_NAME --zone=$ZONE --project=$PROJECT --force)"
  fi
}

pack_code() {
  run tar -czf "$TARBALL" --exclude=__pycache__ -C "$REPO" setup.py README.md universeg_jax universeg_datasets configs
}

capacity_flags() {
  case $CAPACITY in
    spot) echo --spot ;;
    reserved) echo --reserved ;;
    on-demand) ;;
  esac
}

qr_state() {
  query_tpus ACTIVE queued-resources describe "$TPU_NAME" --format='value(state.state)'
}

node_state() {
  query_tpus READY tpu-vm describe "$TPU_NAME" --format='value(state)'
}

# Requests the TPU and waits until it is ACTIVE. Returns 1 if it is preempted before that.
provision() {
  local state previous=""
  CREATED=1
  # shellcheck disable=SC2046  # capacity_flags prints zero or one word
  gcloud_tpus queued-resources create "$TPU_NAME" --node-id="$TPU_NAME" \
    --accelerator-type="$ACCELERATOR_TYPE" --runtime-version="$RUNTIME_VERSION" $(capacity_flags) ||
    die "could not request the TPU (see the gcloud message above)"
  note "waiting for $TPU_NAME to become ACTIVE (a request still waiting for capacity is not billed)"
  while true; do
    state=$(qr_state) || die "could not read the state of $TPU_NAME"
    [[ $state == "$previous" ]] || note "$TPU_NAME is ${state:-UNKNOWN}"
    previous=$state
    case $state in
      ACTIVE) return 0 ;;
      SUSPENDING | SUSPENDED) return 1 ;;
      FAILED)
        die "the TPU request failed; see why with:" \
          "gcloud compute tpus queued-resources describe $TPU_NAME --zone=$ZONE --project=$PROJECT"
        ;;
    esac
    sleep "$POLL_SECONDS"
  done
}

tpu_ssh() {
  gcloud_tpus tpu-vm ssh "$TPU_NAME" --worker=all \
    --ssh-flag=-oServerAliveInterval=60 --ssh-flag=-oServerAliveCountMax=5 --command="$1"
}

install_code() {
  # These run on the workers, where ~ expands.
  # shellcheck disable=SC2088
  local install=(
    "rm -rf $REMOTE_CODE"
    "mkdir -p $REMOTE_CODE"
    "tar -xzf $REMOTE_TARBALL -C $REMOTE_CODE"
    "python3 -m pip install --user --quiet uv"
    "(test -x $REMOTE_VENV/bin/python || ~/.local/bin/uv venv --python 3.11 $REMOTE_VENV)"
    "~/.local/bin/uv pip install --python $REMOTE_VENV/bin/python -e $REMOTE_CODE \"jax[tpu]\" gcsfs"
  )
  local joined
  joined=$(printf ' && %s' "${install[@]}")
  gcloud_tpus tpu-vm scp "$TARBALL" "$TPU_NAME:$REMOTE_TARBALL" --worker=all &&
    tpu_ssh "${joined# && }"
}

train() {
  local training
  training="TFDS_DATA_DIR=$(shell_quote "$TFDS_DATA_DIR") ~/$REMOTE_VENV/bin/python -m universeg_jax.main"
  training+=" $(shell_quote --distributed=on --config="$CONFIG" --workdir="$WORKDIR" "${EXTRA_ARGS[@]}")"
  # Each output line gets the worker's host name; pipefail keeps the training's exit status.
  tpu_ssh "set -o pipefail; cd $REMOTE_CODE && $training 2>&1 | sed -u \"s/^/[\$(hostname)] /\""
}

# After a failed step: was the TPU preempted (so a restart makes sense) rather than the job broken?
preempted() {
  local qr node
  qr=$(qr_state) || qr=""
  node=$(node_state) || node=""
  note "queued resource: ${qr:-UNKNOWN}, node: ${node:-UNKNOWN}"
  [[ $qr != ACTIVE || $node != READY ]]
}

delete_tpu() {
  gcloud_tpus queued-resources delete "$TPU_NAME" --force && CREATED=0
}

cleanup() {
  if ((DRY_RUN == 0)); then
    rm -f "$TARBALL"
  fi
  ((CREATED)) || return 0
  if ((KEEP_TPU)); then
    note "KEEPING $TPU_NAME as asked: it bills until you run" \
      "gcloud compute tpus queued-resources delete $TPU_NAME --zone=$ZONE --project=$PROJECT --force"
  elif ! delete_tpu; then
    note "COULD NOT DELETE $TPU_NAME: it may still be billing. Check and delete it now:" \
      "gcloud compute tpus queued-resources delete $TPU_NAME --zone=$ZONE --project=$PROJECT --force"
    exit 3
  fi
}

main() {
  parse_flags "$@"
  check_settings
  require_programs gcloud gsutil tar
  print_settings
  TARBALL=${TMPDIR:-/tmp}/universeg-jax-$TPU_NAME.tgz
  CREATED=0
  trap cleanup EXIT
  trap 'exit 129' HUP
  trap 'exit 130' INT
  trap 'exit 143' TERM

  preflight
  pack_code || die "could not pack the code"
  local restarts=0
  until provision && install_code && train; do
    preempted || die "the job failed on a healthy TPU, so it is not retried (see the output above)"
    ((restarts < MAX_RESTARTS)) || die "preempted $restarts times, the limit set by --max-restarts"
    restarts=$((restarts + 1))
    note "preempted: re-creating $TPU_NAME (restart $restarts of $MAX_RESTARTS);" \
      "training resumes from the latest checkpoint in $WORKDIR"
    delete_tpu || die "could not delete the preempted TPU"
  done
  note "training finished"
}

main "$@"
