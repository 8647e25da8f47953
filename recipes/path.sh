# Environment of every recipe, sourced through egs/<corpus>/path.sh by run.sh / recipes/codec.sh.
# MAIN_ROOT is the sqcodec checkout; its .venv (if any) goes first on PATH, then recipes/utils.
MAIN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export MAIN_ROOT
if [ -x "${MAIN_ROOT}/.venv/bin/python" ]; then
  export PATH="${MAIN_ROOT}/.venv/bin:${PATH}"
fi
export PATH="${MAIN_ROOT}/recipes/utils:${PATH}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export PYTHONIOENCODING=UTF-8
export MPLBACKEND=Agg
export LC_ALL=C
if ! python -c "import sqcodec, kaldiio" 2>/dev/null; then
  echo "path.sh: cannot import sqcodec and kaldiio with $(command -v python || echo 'no python');" \
    "run 'make install' in ${MAIN_ROOT} (creates ${MAIN_ROOT}/.venv)" 1>&2
  return 1 2>/dev/null || exit 1
fi
