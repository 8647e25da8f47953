#!/usr/bin/env bash
# local/data_prep.sh <db_root> <datadir> [extra options of recipe_tools prep-audio-dir]
# LibriSpeech/{train-clean-5,dev-clean-2}/SPK/CH/*.flac -> data/{train,dev}; any other folder of
# audio -> data/train + data/dev (10 %, fixed seed), speaker = first sub-folder.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 <db_root> <datadir> [options]" 1>&2; exit 1; }
db_root="$1"; datadir="$2"; shift 2
python -m sqcodec.recipe_tools prep-audio-dir --db_root "${db_root}" --datadir "${datadir}" "$@"
