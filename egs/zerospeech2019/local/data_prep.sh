#!/usr/bin/env bash
# local/data_prep.sh <db_root> <datadir> [extra options of recipe_tools prep-zerospeech]
# ZeroSpeech 2019 english/ -> data/train (train/voice + train/unit, SQ-VAE App. E.2.1 after
# van Niekerk et al.), data/test (train/parallel/voice), data/abx (test/*.wav, for ABX). Speaker = file prefix.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 <db_root> <datadir> [options]" 1>&2; exit 1; }
db_root="$1"; datadir="$2"; shift 2
python -m sqcodec.recipe_tools prep-zerospeech --db_root "${db_root}" --datadir "${datadir}" "$@"
