#!/usr/bin/env bash
# fashion_mnist: SQ-VAE / HQ-VAE image recipe (secondary to the audio recipes). Stages -1..3 of recipes/image.sh:
# download, split files, training, evaluation (MSE, RMSE, SSIM, perplexity, grids), summary table.
# Configs in conf/ (sqvae_gauss1, sqvae_gauss2, sqvae_gauss3, vqvae_ema, vqvae_ema_reset); see README.md. Examples (run from this folder):
#   ./run.sh --stage -1 --stop_stage 0 --db_root /data/fashion_mnist        # download + data/{train,valid,test}.npz
#   ./run.sh --stage 0 --stop_stage 0 --db_root /data/fashion_mnist         # a local copy
#   ./run.sh --stage 1 --stop_stage 2 --conf conf/sqvae_gauss1.yaml --ngpu 1
#   ./run.sh --stage 3 --stop_stage 3                                  # exp/summary_test.md
set -euo pipefail
recipe_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

exec "${recipe_dir}/../../recipes/image.sh" \
  --recipe_dir "${recipe_dir}" \
  --corpus fashion_mnist \
  --db_root "${recipe_dir}/downloads" \
  --conf "${recipe_dir}/conf/sqvae_gauss1.yaml" \
  "$@"
