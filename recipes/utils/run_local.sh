#!/usr/bin/env bash
# Local job runner with the interface of Kaldi's run.pl (our own implementation):
#
#   utils/run_local.sh [options] [JOB=1:N] <log-file> <command> [args...]
#
# Runs <command> once per job id in 1..N (N at a time unless --max-jobs-run), with every "JOB" in the
# log name and in the command replaced by the job id (any other VAR=a:b name works too). Each job's
# stdout+stderr go to its own log, which starts with the command line and ends with
# "# Accounting: status=<rc>". Arguments are joined as run.pl does: an argument without white space
# is passed unquoted (so "\|" or ">" act as shell pipes/redirections), one with white space is quoted.
# Exit status 0 if every job succeeded; else 1, naming the failed job count and a failing log.
#
# Options (accepted for compatibility with the cluster runners; only --max-jobs-run acts locally):
#   --max-jobs-run N   at most N jobs at a time (default: all)
#   --num-threads N | --gpu N | --mem M | --time T   (ignored here; see run_slurm.sh)
set -uo pipefail

max_jobs=0
while [ $# -gt 0 ]; do
  case "$1" in
    --max-jobs-run|--max_jobs_run) max_jobs="$2"; shift 2 ;;
    --num-threads|--num_threads|--gpu|--mem|--time|--config) shift 2 ;;
    --*=*) shift ;;
    *) break ;;
  esac
done

jobvar=""; first=1; last=1
if [[ "${1:-}" =~ ^([A-Za-z][A-Za-z0-9_]*)=([0-9]+):([0-9]+)$ ]]; then
  jobvar="${BASH_REMATCH[1]}"; first="${BASH_REMATCH[2]}"; last="${BASH_REMATCH[3]}"; shift
  if [ "${first}" -gt "${last}" ]; then echo "$0: empty job range ${first}:${last}" 1>&2; exit 1; fi
elif [[ "${1:-}" =~ ^[A-Za-z][A-Za-z0-9_]*=[0-9]+$ ]]; then
  jobvar="${1%%=*}"; first="${1#*=}"; last="${first}"; shift
fi
if [ $# -lt 2 ]; then
  echo "usage: $0 [--max-jobs-run N] [JOB=1:N] <log-file> <command> [args...]" 1>&2; exit 1
fi
logtmpl="$1"; shift

subst() { if [ -n "${jobvar}" ]; then printf '%s' "${1//${jobvar}/$2}"; else printf '%s' "$1"; fi; }

cmdline() {  # job id -> command string
  local out="" a
  for a in "${ARGS[@]}"; do
    a="$(subst "${a}" "$1")"
    if [[ "${a}" =~ ^[^[:space:]]+$ ]]; then out+="${a} "; else out+="$(printf '%q' "${a}") "; fi
  done
  printf '%s' "${out% }"
}
ARGS=("$@")

run_one() {
  local j="$1" log cmd rc
  log="$(subst "${logtmpl}" "${j}")"
  cmd="$(cmdline "${j}")"
  mkdir -p "$(dirname "${log}")" || return 1
  {
    echo "# ${cmd}"
    echo "# Started at $(date)"
  } > "${log}"
  local t0=${SECONDS}
  ( bash -c "${cmd}" ) >> "${log}" 2>&1
  rc=$?
  {
    echo "# Accounting: time=$(( SECONDS - t0 )) threads=1"
    echo "# Ended (code ${rc}) at $(date), elapsed time $(( SECONDS - t0 )) seconds"
    echo "# Accounting: status=${rc}"
  } >> "${log}"
  return "${rc}"
}

declare -A pid2job=()
failed=(); n=$(( last - first + 1 ))
wait_one() {  # reap one finished job (bash >= 5.1: wait -n -p)
  local p rc
  wait -n -p p; rc=$?
  if [ "${rc}" -ne 0 ]; then failed+=("${pid2job[$p]}"); fi
  unset "pid2job[$p]"
}
for (( j = first; j <= last; j++ )); do
  if [ "${max_jobs}" -gt 0 ]; then
    while [ "${#pid2job[@]}" -ge "${max_jobs}" ]; do wait_one; done
  fi
  run_one "${j}" &
  pid2job[$!]="${j}"
done
while [ "${#pid2job[@]}" -gt 0 ]; do wait_one; done

if [ "${#failed[@]}" -gt 0 ]; then
  IFS=$'\n' failed=($(sort -n <<< "${failed[*]}")); unset IFS
  flog="$(subst "${logtmpl}" "${failed[0]}")"
  if [ "${n}" -gt 1 ]; then
    echo "$0: ${#failed[@]} / ${n} failed, log is in ${flog}" 1>&2
  else
    echo "$0: job failed, log is in ${flog}" 1>&2
  fi
  exit 1
fi
exit 0
