#!/usr/bin/env bash
# urbansound8k: RSQ-VAE vs RQ-VAE on UrbanSound8K (HQ-VAE Table 2), mel preset urbansound, folds 1-8/9/10
# The normalisation follows the preset's paper (--norm standardise|none overrides it).
# Stages -1..6 of recipes/codec.sh (see README.md). Examples (run from this folder):
#   ./run.sh --db_root /data/urbansound8k --stage 0 --stop_stage 2 --nj 8
#   ./run.sh --stage 3 --stop_stage 3 --ngpu 1 --conf conf/rsqvae_l8_shared.yaml --tag my_run
#   ./run.sh --stage 4 --stop_stage 4 --ngpu 1             # HiFi-GAN vocoder -> exp/hifigan_<preset>_v3/vocoder
#   ./run.sh --stage 5 --stop_stage 6 --nj 8 --tag my_run  # decode the test set(s), score -> exp/my_run/scores
set -euo pipefail
recipe_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

exec "${recipe_dir}/../../recipes/codec.sh" \
  --recipe_dir "${recipe_dir}" \
  --db_root "${recipe_dir}/downloads" \
  --train_set "train" \
  --valid_set "valid" \
  --test_sets "test" \
  --conf "${recipe_dir}/conf/rsqvae_l8_shared.yaml" \
  --norm none \
  "$@"
