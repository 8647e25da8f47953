#!/usr/bin/env bash
# local/data_download.sh <db_root>: download the corpus (stage -1; needs internet; never run by the tests).
# Re-runnable: files already downloaded are skipped. A local copy can be used instead: --db_root DIR.
set -euo pipefail
. "$(cd "$(dirname "$0")/../../.." && pwd)/recipes/utils/fetch.sh"
[ $# -eq 1 ] || { echo "usage: $0 <db_root>" 1>&2; exit 1; }
db_root="$1"; mkdir -p "${db_root}"; cd "${db_root}"
# CIFAR-10, the *binary* version (the python version is pickled; sqcodec never unpickles downloads).
if [ ! -f cifar-10-batches-bin/test_batch.bin ]; then
  fetch "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz" cifar-10-binary.tar.gz
  tar xzf cifar-10-binary.tar.gz
fi
echo "CIFAR-10 ready in ${db_root}/cifar-10-batches-bin"
