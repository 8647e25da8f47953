# Sourced by recipes/codec.sh and recipes/image.sh after their option defaults (needs log/die and
# recipes_root): parses the options, checks --recipe_dir, sources the recipe's path.sh and cmd.sh,
# resolves a relative --conf against the recipe folder, sets ${python} and defines run1.
. "${recipes_root}/utils/parse_options.sh"
[ $# -eq 0 ] || die "unexpected arguments: $*"
[ -n "${recipe_dir}" ] || die "--recipe_dir is required (egs/<corpus>)"
recipe_dir="$(cd "${recipe_dir}" && pwd)"
# shellcheck disable=SC1091
. "${recipe_dir}/path.sh"
# shellcheck disable=SC1091
. "${recipe_dir}/cmd.sh"
if [ -n "${conf}" ] && [ ! -f "${conf}" ] && [ -f "${recipe_dir}/${conf}" ]; then conf="${recipe_dir}/${conf}"; fi
python="${PYTHON:-python}"

# run1 LOG CMD...: one logged command through ${train_cmd}; on failure the runner names the log and we stop
run1() { local logf="$1"; shift; ${train_cmd} "${logf}" "$@" || die "failed, see ${logf}"; }
