# Where the stages' jobs run: local (this machine, jobs in parallel) or slurm (sbatch job arrays; site
# options such as the partition in SQCODEC_SBATCH_OPTS, or edit the runner lines in recipes/cmd.sh).
cmd_backend=${cmd_backend:-local}
. "$(dirname "${BASH_SOURCE[0]}")/../../recipes/cmd.sh"
