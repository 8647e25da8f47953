#!/usr/bin/env bash
# utils/split_scp.sh IN.scp OUT.1.scp ... OUT.N.scp
# Split a Kaldi table into N contiguous, near-equal parts (each non-empty; fails if N > lines).
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 in.scp out.1.scp [out.2.scp ...]" 1>&2; exit 1; }
exec python -m sqcodec.recipe_tools split-scp "$@"
