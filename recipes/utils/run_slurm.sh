#!/usr/bin/env bash
# Slurm job runner with the same interface as run_local.sh (select it in cmd.sh: cmd_backend=slurm):
#
#   utils/run_slurm.sh [options] [JOB=1:N] <log-file> <command> [args...]
#
# Submits ONE job array (sbatch --wait --array=1-N[%max]) whose task i runs the command with JOB=i and
# writes its log (JOB replaced by i); waits for the whole array; exits 1 naming a failed task's log.
#
# Options: --max-jobs-run N (array throttle %N), --num-threads N (--cpus-per-task), --gpu N
# (--gres=gpu:N), --mem M (--mem), --time T (--time); any other --key=value is passed to sbatch as is
# (e.g. --partition=gpu --account=abc). Site defaults go in $SQCODEC_SBATCH_OPTS (e.g. in cmd.sh).
# Needs sbatch >= 17.11 (--wait). Not exercised by the test suite (no Slurm on CI): keep it simple.
set -uo pipefail
command -v sbatch >/dev/null || { echo "$0: sbatch not found (set cmd_backend=local in cmd.sh)" 1>&2; exit 1; }

sb=(); throttle=""
# shellcheck disable=SC2206
[ -n "${SQCODEC_SBATCH_OPTS:-}" ] && sb+=(${SQCODEC_SBATCH_OPTS})
while [ $# -gt 0 ]; do
  case "$1" in
    --max-jobs-run|--max_jobs_run) throttle="%$2"; shift 2 ;;
    --num-threads|--num_threads) sb+=("--cpus-per-task=$2"); shift 2 ;;
    --gpu) [ "$2" -gt 0 ] && sb+=("--gres=gpu:$2"); shift 2 ;;
    --mem) sb+=("--mem=$2"); shift 2 ;;
    --time) sb+=("--time=$2"); shift 2 ;;
    --*=*) sb+=("$1"); shift ;;
    *) break ;;
  esac
done
jobvar=""; first=1; last=1
if [[ "${1:-}" =~ ^([A-Za-z][A-Za-z0-9_]*)=([0-9]+):([0-9]+)$ ]]; then
  jobvar="${BASH_REMATCH[1]}"; first="${BASH_REMATCH[2]}"; last="${BASH_REMATCH[3]}"; shift
fi
[ $# -ge 2 ] || { echo "usage: $0 [options] [JOB=1:N] <log-file> <command> [args...]" 1>&2; exit 1; }
logtmpl="$1"; shift

cmd=""
for a in "$@"; do
  [ -n "${jobvar}" ] && a="${a//${jobvar}/\$\{SLURM_ARRAY_TASK_ID\}}"
  if [[ "${a}" =~ ^[^[:space:]]+$ ]]; then cmd+="${a} "; else cmd+="\"${a//\"/\\\"}\" "; fi
done
logdir="$(dirname "${logtmpl}")"; mkdir -p "${logdir}/q"
base="$(basename "${logtmpl}")"; base="${base//${jobvar:-JOB}/}"
script="${logdir}/q/${base%.log}.sh"
logpat="${logtmpl}"; [ -n "${jobvar}" ] && logpat="${logtmpl//${jobvar}/%a}"
cat > "${script}" <<EOS
#!/usr/bin/env bash
cd "$(pwd)"
echo "# ${cmd}"
echo "# Started at \$(date) on \$(hostname)"
t0=\${SECONDS}
( ${cmd} )
rc=\$?
echo "# Ended (code \${rc}) at \$(date), elapsed time \$(( SECONDS - t0 )) seconds"
echo "# Accounting: status=\${rc}"
exit \${rc}
EOS
sbatch --wait --parsable --array="${first}-${last}${throttle}" --output="${logpat}" \
  --job-name="$(basename "${script}" .sh)" --export=ALL "${sb[@]}" "${script}" > "${logdir}/q/sbatch.out"
rc=$?
if [ "${rc}" -ne 0 ]; then
  for (( j = first; j <= last; j++ )); do
    l="${logtmpl}"; [ -n "${jobvar}" ] && l="${logtmpl//${jobvar}/${j}}"
    if ! grep -q "^# Accounting: status=0$" "${l}" 2>/dev/null; then
      echo "$0: job ${j} failed, log is in ${l} (sbatch exit ${rc})" 1>&2; exit 1
    fi
  done
  echo "$0: sbatch failed (exit ${rc}), see ${logdir}/q/sbatch.out" 1>&2; exit 1
fi
exit 0
