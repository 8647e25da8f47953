#!/usr/bin/env bash
# The GPU columns of BENCHMARKS.md §2 and §4 in one short device lease (the device machine: Python 3.12
# with its own torch/torchaudio, no soundfile/speechbrain/encodec, no network, at most 8 files back).
#
#   bash tools/gpu_session.sh fetch          # here: the wheels it needs, into .whl/ (git-ignored)
#   bash tools/gpu_session.sh run [OUTDIR]   # there (carry .whl): about 7 minutes; OUTDIR = $OUT
#
# `run` writes one JSON per benchmark (the same scripts and records as the CPU tables), the machine
# (nvidia-smi) and one log with every printed table: 6 files, under the device's 8-file limit.
# Each benchmark has its own time limit, so one that hangs cannot eat the lease; its exit status is in
# the log. SMOKE=1 DEVICE=cpu runs the tiny settings on the CPU (tests/test_bench_smoke.py).
set -uo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
fetch)
  set -e
  bash ../shared/tools/gpu_wheels.sh .whl
  python3 -m pip wheel -q --no-deps -w .whl encodec # pure Python, published as an sdist only
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
  du -sh .whl
  exit 0
  ;;
run) ;;
*)
  echo "usage: $0 fetch | run [OUTDIR]" >&2
  exit 2
  ;;
esac

OUTDIR=${2:-${OUT:-exp/gpu_session}}
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}
mkdir -p "$OUTDIR"
if [ -d .whl ] && ! "$PY" -c "import soundfile, speechbrain, encodec" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
SMOKE_ARG=()
[ "${SMOKE:-0}" = 1 ] && SMOKE_ARG=(--smoke)
LOG=$OUTDIR/session.log
: >"$LOG"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$OUTDIR/machine.txt" 2>&1
else
  echo "no nvidia-smi" >"$OUTDIR/machine.txt"
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" >>"$OUTDIR/machine.txt" 2>&1

status=0
bench() { # name, time limit (s), script, args...
  local name=$1 limit=$2 script=$3
  shift 3
  echo "== $name ($script $*)" >>"$LOG"
  timeout "$limit" "$PY" "tools/$script" --device "$DEVICE" "${SMOKE_ARG[@]}" "$@" \
    --json "$OUTDIR/$name.json" >>"$LOG" 2>&1
  local rc=$?
  echo "== $name: exit $rc" >>"$LOG"
  [ $rc -eq 0 ] || status=1
}

# §2: RSQ/RQ training-step throughput next to vector-quantize-pytorch's ResidualVQ, K = 8/64/512, L = 4/8
bench quantizer 90 bench_quantizer.py --repeats 5
# §4.4: the recipes' full configs (speech: the published SQ-VAE's batch 52 x 32, fp32 as its 86 steps/s;
# UrbanSound8K: 128 channels, batch 32), SQ next to its VQ baseline, with peak GPU memory
bench train_throughput_fp32 120 bench_train_throughput.py --amp none --repeats 5 --iters 20 --warmup 5
bench train_throughput_bf16 90 bench_train_throughput.py --amp bf16 --repeats 5 --iters 20 --warmup 5
# §4.2: codec-only and full real-time factors, batch 1 and 8, next to EnCodec (random weights)
bench codec_speed 120 bench_codec_speed.py --systems codec_only,full_hifigan,encodec
exit $status
