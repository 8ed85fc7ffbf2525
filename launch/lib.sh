# shellcheck shell=bash
# Shared helpers for the launch scripts (sourced, not run).
#
# Settings: a script names its settings in SETTINGS (and its on/off ones in SWITCHES). A setting FOO_BAR comes
# from the environment variable FOO_BAR, and the flag --foo-bar=VALUE (or --foo-bar VALUE) overrides it; a switch
# is turned on by the bare flag --foo-bar or by FOO_BAR=1. Everything after "--" is passed to training unchanged.
#
# Commands: every command that acts (creates, copies, runs, deletes) goes through `run`, which prints it and, with
# --dry-run, does not run it. Read-only status queries go through `query`, which runs them quietly, or prints
# them under --dry-run. So a dry run prints the whole plan and runs nothing.

set -euo pipefail

SWITCHES+=(DRY_RUN)
DRY_RUN=${DRY_RUN:-0}
EXTRA_ARGS=()

die() {
  printf 'error: %s\n' "$*" >&2
  exit 2
}

note() {
  printf '==> %s\n' "$*" >&2
}

# Prints the header comment of the running script (its usage text).
usage() {
  sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0"
}

contains() {
  local needle=$1 item
  shift
  for item in "$@"; do
    [[ $item == "$needle" ]] && return 0
  done
  return 1
}

# --foo-bar -> FOO_BAR
flag_to_name() {
  local name=${1#--}
  name=${name//-/_}
  printf '%s' "${name^^}"
}

# FOO_BAR -> --foo-bar
name_to_flag() {
  local flag=${1,,}
  printf -- '--%s' "${flag//_/-}"
}

# Reads flags into the settings variables; sets EXTRA_ARGS from what follows "--".
parse_flags() {
  local name
  while (($# > 0)); do
    case $1 in
      -h | --help)
        usage
        exit 0
        ;;
      --)
        shift
        EXTRA_ARGS=("$@")
        return 0
        ;;
      --*=*)
        name=$(flag_to_name "${1%%=*}")
        contains "$name" "${SETTINGS[@]}" || die "unknown flag ${1%%=*} (see --help)"
        printf -v "$name" '%s' "${1#*=}"
        ;;
      --*)
        name=$(flag_to_name "$1")
        if contains "$name" "${SWITCHES[@]}"; then
          printf -v "$name" '%s' 1
        elif contains "$name" "${SETTINGS[@]}"; then
          (($# >= 2)) || die "flag $1 needs a value"
          printf -v "$name" '%s' "$2"
          shift
        else
          die "unknown flag $1 (see --help)"
        fi
        ;;
      *) die "unexpected argument '$1' (training flags go after --, see --help)" ;;
    esac
    shift
  done
}

# Fails, naming every missing one, unless all the given settings are non-empty.
require() {
  local name missing=""
  for name in "$@"; do
    [[ -n ${!name:-} ]] || missing+="${missing:+, }$(name_to_flag "$name") (or $name)"
  done
  [[ -z $missing ]] || die "missing required setting(s): $missing"
}

require_gs_path() {
  [[ ${!1} =~ ^gs://[a-z0-9][-a-z0-9_.]*[a-z0-9](/.*)?$ ]] ||
    die "$(name_to_flag "$1") must be a Cloud Storage path gs://BUCKET/..., got '${!1}'"
}

require_positive_int() {
  [[ ${!1} =~ ^[1-9][0-9]*$ ]] || die "$(name_to_flag "$1") must be a positive integer, got '${!1}'"
}

require_non_negative_int() {
  [[ ${!1} =~ ^[0-9]+$ ]] || die "$(name_to_flag "$1") must be a whole number >= 0, got '${!1}'"
}

# Fails unless the file part of a config setting (PATH or PATH:PRESET) exists, relative to $2 if given.
require_config_file() {
  local file=${!1%%:*}
  [[ -z ${2:-} || $file == /* ]] || file=$2/$file
  [[ -f $file ]] || die "$(name_to_flag "$1"): no config file $file"
}

require_switch() {
  [[ ${!1} == 0 || ${!1} == 1 ]] || die "$1 must be 0 or 1, got '${!1}'"
}

# Fails unless the given programs are on PATH (not needed for a dry run, which runs nothing).
require_programs() {
  local program
  ((DRY_RUN)) && return 0
  for program in "$@"; do
    command -v "$program" >/dev/null || die "'$program' is not on PATH"
  done
}

# Prints one shell word per argument, quoted only where the shell needs it, so that printed commands can be
# pasted back into a shell.
shell_quote() {
  local arg out=()
  for arg in "$@"; do
    if [[ $arg =~ ^[-A-Za-z0-9_./:=,@%+]+$ ]]; then
      out+=("$arg")
    else
      out+=("'${arg//\'/\'\\\'\'}'")
    fi
  done
  printf '%s' "${out[*]}"
}

print_settings() {
  local name
  note "settings:"
  for name in "${SETTINGS[@]}" "${SWITCHES[@]}"; do
    printf '      %s=%s\n' "$name" "${!name}" >&2
  done
  ((${#EXTRA_ARGS[@]} == 0)) || printf '      training flags: %s\n' "$(shell_quote "${EXTRA_ARGS[@]}")" >&2
}

# Runs a command that acts, after printing it; under --dry-run only prints it.
run() {
  printf '+ %s\n' "$(shell_quote "$@")" >&2
  ((DRY_RUN)) || "$@"
}

# Runs a read-only status query quietly and prints its output; under --dry-run prints the query and the
# given stand-in answer instead.
query() {
  local dry_answer=$1
  shift
  if ((DRY_RUN)); then
    printf '+ %s\n' "$(shell_quote "$@")" >&2
    printf '%s\n' "$dry_answer"
  else
    "$@"
  fi
}
