#!/usr/bin/env bash
# local/data_download.sh <db_root>: download the corpus (stage -1; needs internet; never run by the tests).
# Re-runnable: files already downloaded are skipped. A local copy can be used instead: --db_root DIR.
set -euo pipefail
. "$(cd "$(dirname "$0")/../../.." && pwd)/recipes/utils/fetch.sh"
[ $# -eq 1 ] || { echo "usage: $0 <db_root>" 1>&2; exit 1; }
db_root="$1"; mkdir -p "${db_root}"; cd "${db_root}"
# CelebA (Liu et al. 2015) is distributed through Google Drive and needs accepting its terms: download
# Img/img_align_celeba.zip and Eval/list_eval_partition.txt from
# https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html into db_root (the SQ-VAE reference code also
# recommends a manual download), then rerun. This script only unpacks and checks.
if [ ! -d img_align_celeba ] && [ -f img_align_celeba.zip ]; then unzip -q img_align_celeba.zip; fi
if [ ! -d img_align_celeba ] || [ ! -f list_eval_partition.txt ]; then
  echo "CelebA: put img_align_celeba.zip (or img_align_celeba/) and list_eval_partition.txt in ${db_root}" 1>&2
  echo "  (from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html), then run this stage again" 1>&2
  exit 1
fi
echo "CelebA ready in ${db_root}"
