#!/usr/bin/env bash
# local/data_download.sh <db_root>: download and unpack the corpus (stage -1; never run by the tests).
# Re-runnable: an archive already unpacked is skipped.
set -euo pipefail
. "$(cd "$(dirname "$0")/../../.." && pwd)/recipes/utils/fetch.sh"
[ $# -eq 1 ] || { echo "usage: $0 <db_root>" 1>&2; exit 1; }
db_root="$1"; mkdir -p "${db_root}"; cd "${db_root}"
# UrbanSound8K (CC-BY-NC-3.0). Official request form: https://goo.gl/8hY5ER ; the archive is on Zenodo.
url=https://zenodo.org/record/1203745/files/UrbanSound8K.tar.gz
if [ ! -f UrbanSound8K/metadata/UrbanSound8K.csv ]; then
  fetch "${url}" UrbanSound8K.tar.gz
  tar xzf UrbanSound8K.tar.gz
fi
echo "UrbanSound8K ready in ${db_root}/UrbanSound8K"
