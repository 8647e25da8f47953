# Shared job-runner set-up, sourced by every egs/<corpus>/cmd.sh (which chooses cmd_backend).
# Job runners used by the stages ("<runner> [--gpu N] [--mem M] [JOB=1:N] <log> <command...>", with JOB
# substituted in the log name and the command; see recipes/utils/run_local.sh).
#   train_cmd: CPU jobs (feature extraction, statistics)   cuda_cmd: training (gets --gpu <ngpu>)
# cmd_backend: local (default: run on this machine, all jobs in parallel) or slurm (one sbatch job array
# per stage, waits for it; put site options such as the partition in SQCODEC_SBATCH_OPTS or below).
cmd_backend=${cmd_backend:-local}

_utils="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/utils"  # recipes/utils
if [ "${cmd_backend}" = local ]; then
  export train_cmd="${_utils}/run_local.sh"
  export cuda_cmd="${_utils}/run_local.sh"
elif [ "${cmd_backend}" = slurm ]; then
  # e.g. export SQCODEC_SBATCH_OPTS="--partition=cpu --account=myproj"
  export train_cmd="${_utils}/run_slurm.sh --mem=8G --time=4:00:00"
  export cuda_cmd="${_utils}/run_slurm.sh --mem=32G --time=7-00:00:00 --num-threads 8"
else
  echo "cmd.sh: unknown cmd_backend=${cmd_backend} (local | slurm)" 1>&2
  return 1 2>/dev/null || exit 1
fi
unset _utils
