#!/usr/bin/env bash
# mini_librispeech: tiny RSQ codec on mini LibriSpeech (or any folder of audio), preset codec16k; runs on a CPU
# The normalisation follows the preset's paper (--norm standardise|none overrides it).
# Stages -1..6 of recipes/codec.sh (see README.md). Examples (run from this folder):
#   ./run.sh --db_root /data/mini_librispeech --stage 0 --stop_stage 2 --nj 8
#   ./run.sh --stage 3 --stop_stage 3 --ngpu 1 --conf conf/tiny_codec.yaml --tag my_run
#   ./run.sh --stage 4 --stop_stage 4 --ngpu 0 --vocoder_steps 20 --vocoder_gan_start 18 \
#     --vocoder_args "--batch 2 --segment 4096"                          # a (useless) tiny vocoder
#   ./run.sh --stage 5 --stop_stage 6 --tag my_run --decode_max_utts 20   # decode data/dev, score
#   every stage on a CPU in minutes: see README.md
set -euo pipefail
recipe_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

exec "${recipe_dir}/../../recipes/codec.sh" \
  --recipe_dir "${recipe_dir}" \
  --db_root "${recipe_dir}/downloads" \
  --train_set "train" \
  --valid_set "dev" \
  --test_sets "" \
  --conf "${recipe_dir}/conf/tiny_codec.yaml" \
  --norm none \
  "$@"
