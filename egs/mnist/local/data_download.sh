#!/usr/bin/env bash
# local/data_download.sh <db_root>: download the corpus (stage -1; needs internet; never run by the tests).
# Re-runnable: files already downloaded are skipped. A local copy can be used instead: --db_root DIR.
set -euo pipefail
. "$(cd "$(dirname "$0")/../../.." && pwd)/recipes/utils/fetch.sh"
[ $# -eq 1 ] || { echo "usage: $0 <db_root>" 1>&2; exit 1; }
db_root="$1"; mkdir -p "${db_root}"; cd "${db_root}"
# MNIST (LeCun et al.): the IDX files from the mirror torchvision uses. egs/fashion_mnist runs this script
# with IDX_BASE_URL set to the Fashion-MNIST mirror (same file names).
base="${IDX_BASE_URL:-https://ossci-datasets.s3.amazonaws.com/mnist}"
for f in train-images-idx3-ubyte t10k-images-idx3-ubyte train-labels-idx1-ubyte t10k-labels-idx1-ubyte; do
  fetch "${base}/${f}.gz" "${f}.gz"
done
echo "IDX files from ${base} ready in ${db_root}"
