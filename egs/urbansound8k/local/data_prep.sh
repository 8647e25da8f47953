#!/usr/bin/env bash
# local/data_prep.sh <db_root> <datadir> [extra options of recipe_tools prep-urbansound]
# UrbanSound8K/{audio/foldN/*.wav, metadata/UrbanSound8K.csv} -> data/{train,valid,test} = folds
# 1-8 / 9 / 10 (HQ-VAE App. E). Speaker = Freesound id (fsID); class in utt2category.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 <db_root> <datadir> [options]" 1>&2; exit 1; }
db_root="$1"; datadir="$2"; shift 2
python -m sqcodec.recipe_tools prep-urbansound --db_root "${db_root}" --datadir "${datadir}" "$@"
