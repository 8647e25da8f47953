#!/usr/bin/env bash
# local/data_download.sh <db_root>: download and unpack the corpus (stage -1; never run by the tests).
# Re-runnable: an archive already unpacked is skipped.
set -euo pipefail
. "$(cd "$(dirname "$0")/../../.." && pwd)/recipes/utils/fetch.sh"
[ $# -eq 1 ] || { echo "usage: $0 <db_root>" 1>&2; exit 1; }
db_root="$1"; mkdir -p "${db_root}"; cd "${db_root}"
# mini LibriSpeech (OpenSLR 31, CC-BY-4.0): dev-clean-2 and train-clean-5.
for part in dev-clean-2 train-clean-5; do
  if [ ! -d "LibriSpeech/${part}" ]; then
    fetch "https://www.openslr.org/resources/31/${part}.tar.gz" "${part}.tar.gz"
    tar xzf "${part}.tar.gz"
  fi
done
echo "mini LibriSpeech ready in ${db_root}/LibriSpeech"
