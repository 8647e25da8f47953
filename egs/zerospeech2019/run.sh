#!/usr/bin/env bash
# zerospeech2019: SQ-VAE on ZeroSpeech 2019 English, mel preset zerospeech
# The normalisation follows the preset's paper (--norm standardise|none overrides it).
# Stages -1..6 of recipes/codec.sh (see README.md). Examples (run from this folder):
#   ./run.sh --db_root /data/zerospeech2019 --stage 0 --stop_stage 2 --nj 8
#   ./run.sh --stage 3 --stop_stage 3 --ngpu 1 --conf conf/sqvae_gaussian_iv.yaml --tag my_run
#   ./run.sh --stage 4 --stop_stage 4 --ngpu 1             # HiFi-GAN vocoder -> exp/hifigan_<preset>_v3/vocoder
#   ./run.sh --stage 5 --stop_stage 6 --nj 8 --tag my_run  # decode the test set(s), score -> exp/my_run/scores
#   ./run.sh --stage 7 --stop_stage 7 --tag my_run --abx_item english_test.item  # ABX on data/abx
set -euo pipefail
recipe_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

exec "${recipe_dir}/../../recipes/codec.sh" \
  --recipe_dir "${recipe_dir}" \
  --db_root "${recipe_dir}/downloads" \
  --train_set "train" \
  --valid_set "test" \
  --test_sets "test abx" \
  --decode_sets "test" \
  --abx_set "abx" \
  --conf "${recipe_dir}/conf/sqvae_gaussian_iv.yaml" \
  --norm none \
  "$@"
