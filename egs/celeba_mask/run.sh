#!/usr/bin/env bash
# celeba_mask: SQ-VAE / HQ-VAE image recipe (secondary to the audio recipes). Stages -1..3 of recipes/image.sh:
# download, split files, training, evaluation (MSE, RMSE, SSIM, perplexity, grids), summary table.
# Configs in conf/ (sqvae_categorical, vmf_sqvae, vqvae_categorical); see README.md. Examples (run from this folder):
#   ./run.sh --stage -1 --stop_stage 0 --db_root /data/celeba_mask        # download + data/{train,valid,test}.npz
#   ./run.sh --stage 0 --stop_stage 0 --db_root /data/celeba_mask         # a local copy
#   ./run.sh --stage 1 --stop_stage 2 --conf conf/vmf_sqvae.yaml --ngpu 1
#   ./run.sh --stage 3 --stop_stage 3                                  # exp/summary_test.md
set -euo pipefail
recipe_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

exec "${recipe_dir}/../../recipes/image.sh" \
  --recipe_dir "${recipe_dir}" \
  --corpus celeba_mask \
  --db_root "${recipe_dir}/downloads" \
  --conf "${recipe_dir}/conf/vmf_sqvae.yaml" \
  "$@"
