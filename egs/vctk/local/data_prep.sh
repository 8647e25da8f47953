#!/usr/bin/env bash
# local/data_prep.sh <db_root> <datadir> [extra options of recipe_tools prep-vctk]
# VCTK 0.80 (wav48/pXXX/pXXX_NNN.wav + txt/) or 0.92 (wav48_silence_trimmed/pXXX/pXXX_NNN_mic1.flac)
# -> data/{train,test}: SQ-VAE App. E.2.1, 90 % / 10 % of the utterances, drawn per utterance with a fixed
# seed (--seed 777, --test_fraction 0.1); 0.92 uses mic1 (--mic mic2 for the other microphone).
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 <db_root> <datadir> [options]" 1>&2; exit 1; }
db_root="$1"; datadir="$2"; shift 2
python -m sqcodec.recipe_tools prep-vctk --db_root "${db_root}" --datadir "${datadir}" "$@"
