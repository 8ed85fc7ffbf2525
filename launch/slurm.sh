#!/usr/bin/env bash
# Train universeg-jax on a SLURM cluster: N nodes x G GPUs, one JAX process per GPU.
#
# Usage: launch/slurm.sh [--flag=value ...] [--dry-run] [-- training flags]
#
# Run it on the login node: it checks the settings and submits itself with
#   sbatch --nodes=N --ntasks-per-node=G --gpus-per-node=G ...
# Inside the job it starts one process per GPU with
#   srun --kill-on-bad-exit=1 --label ... python -m universeg_jax.main --distributed=on --config=CONFIG ...
# after exporting the jax.distributed settings taken from SLURM's environment:
#   JAX_COORDINATOR_ADDRESS  first node of the job, port COORDINATOR_PORT
#   JAX_NUM_PROCESSES        SLURM_NTASKS
#   JAX_PROCESS_ID           SLURM_PROCID of each task
#   JAX_LOCAL_DEVICE_IDS     SLURM_LOCALID of each task (the one GPU this process drives)
# Run inside an existing allocation (salloc), it skips sbatch and starts the job step directly.
# Other sbatch options come from sbatch's own variables, e.g. SBATCH_PARTITION, SBATCH_ACCOUNT, SBATCH_TIMELIMIT,
# SBATCH_REQUEUE=1 (training resumes from the latest checkpoint in WORKDIR after a requeue).
#
# Settings (flag, or the environment variable of the same name in capitals):
#   --workdir          directory on a shared filesystem (or gs://) for checkpoints and logs (required)
#   --tfds-data-dir    directory holding the prepared TFDS data, readable from every node (required)
#   --gpus-per-node    GPUs to use on each node (required)
#   --nodes            number of nodes (default: 1)
#   --config           training config (default: configs/base.py:gpu_node of this checkout)
#   --python           Python with universeg-jax installed, on a shared filesystem (default: python3)
#   --job-name         SLURM job name (default: universeg-jax)
#   --coordinator-port port of the jax.distributed coordinator (default: 61440 + job id mod 4096, as JAX uses)
#   --dry-run          print every command and run none

SETTINGS=(WORKDIR TFDS_DATA_DIR GPUS_PER_NODE NODES CONFIG PYTHON JOB_NAME COORDINATOR_PORT)
SWITCHES=()
# Inside the job SLURM runs a copy of this script, so the checkout is found from the variable set at submission.
if [[ -n ${SLURM_JOB_ID:-} ]]; then
  REPO=${UNIVERSEG_REPO:-${SLURM_SUBMIT_DIR:-}}
else
  REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
fi
[[ -f $REPO/launch/lib.sh ]] || {
  echo "error: cannot find the universeg-jax checkout (got '$REPO'); submit with launch/slurm.sh" >&2
  exit 2
}
# shellcheck source=lib.sh
source "$REPO/launch/lib.sh"

WORKDIR=${WORKDIR:-}
TFDS_DATA_DIR=${TFDS_DATA_DIR:-}
GPUS_PER_NODE=${GPUS_PER_NODE:-}
NODES=${NODES:-1}
CONFIG=${CONFIG:-$REPO/configs/base.py:gpu_node}
PYTHON=${PYTHON:-python3}
JOB_NAME=${JOB_NAME:-universeg-jax}
COORDINATOR_PORT=${COORDINATOR_PORT:-}

check_settings() {
  require WORKDIR TFDS_DATA_DIR CONFIG PYTHON JOB_NAME
  require_config_file CONFIG
  [[ -n ${SLURM_JOB_ID:-} ]] || require GPUS_PER_NODE NODES
  [[ -z $GPUS_PER_NODE ]] || require_positive_int GPUS_PER_NODE
  require_positive_int NODES
  [[ -z $COORDINATOR_PORT ]] || require_positive_int COORDINATOR_PORT
  require_switch DRY_RUN
}

# The settings as flags, to hand them to the job unchanged.
settings_as_flags() {
  local name
  for name in "${SETTINGS[@]}"; do
    [[ -z ${!name} ]] || printf '%s\0' "$(name_to_flag "$name")=${!name}"
  done
}

submit() {
  local flags
  mapfile -d '' -t flags < <(settings_as_flags)
  require_programs sbatch
  run sbatch --job-name="$JOB_NAME" --nodes="$NODES" --ntasks-per-node="$GPUS_PER_NODE" \
    --gpus-per-node="$GPUS_PER_NODE" --export=ALL,UNIVERSEG_REPO="$REPO" \
    "$REPO/launch/slurm.sh" "${flags[@]}" -- "${EXTRA_ARGS[@]}"
}

start_job_step() {
  require_programs srun scontrol
  [[ -n ${SLURM_NTASKS:-} && -n ${SLURM_JOB_NODELIST:-} ]] ||
    die "SLURM_NTASKS or SLURM_JOB_NODELIST is not set: the job needs --ntasks-per-node (launch/slurm.sh sets it)"
  local nodes first_node port
  nodes=$(query FIRST_NODE scontrol show hostnames "$SLURM_JOB_NODELIST") ||
    die "could not list the nodes of SLURM_JOB_NODELIST='$SLURM_JOB_NODELIST'"
  first_node=${nodes%%$'\n'*}
  [[ -n $first_node ]] || die "no node in SLURM_JOB_NODELIST='$SLURM_JOB_NODELIST'"
  port=${COORDINATOR_PORT:-$((61440 + SLURM_JOB_ID % 4096))}
  note "job $SLURM_JOB_ID: $SLURM_NTASKS processes on ${SLURM_JOB_NUM_NODES:-?} node(s)," \
    "coordinator $first_node:$port"
  # Each task sets its own process id and GPU from the variables srun gives it.
  # shellcheck disable=SC2016
  run env JAX_COORDINATOR_ADDRESS="$first_node:$port" JAX_NUM_PROCESSES="$SLURM_NTASKS" \
    TFDS_DATA_DIR="$TFDS_DATA_DIR" \
    srun --kill-on-bad-exit=1 --label \
    bash -c 'export JAX_PROCESS_ID=$SLURM_PROCID JAX_LOCAL_DEVICE_IDS=$SLURM_LOCALID; exec "$@"' task \
    "$PYTHON" -m universeg_jax.main --distributed=on --config="$CONFIG" --workdir="$WORKDIR" "${EXTRA_ARGS[@]}"
}

main() {
  parse_flags "$@"
  check_settings
  print_settings
  if [[ -n ${SLURM_JOB_ID:-} ]]; then
    start_job_step
  else
    submit
  fi
}

main "$@"
