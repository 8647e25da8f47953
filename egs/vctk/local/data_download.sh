#!/usr/bin/env bash
# local/data_download.sh <db_root>: download and unpack the corpus (stage -1; never run by the tests).
# Re-runnable: an archive already unpacked is skipped.
set -euo pipefail
. "$(cd "$(dirname "$0")/../../.." && pwd)/recipes/utils/fetch.sh"
[ $# -eq 1 ] || { echo "usage: $0 <db_root>" 1>&2; exit 1; }
db_root="$1"; mkdir -p "${db_root}"; cd "${db_root}"
# VCTK 0.92 (Edinburgh DataShare, CC-BY-4.0, ~11 GB). For 0.80 (the SQ-VAE paper) point --db_root at
# an existing VCTK-Corpus/ with wav48/; data prep accepts both layouts.
url=https://datashare.ed.ac.uk/bitstream/handle/10283/3443/VCTK-Corpus-0.92.zip
if [ ! -d VCTK-Corpus-0.92/wav48_silence_trimmed ]; then
  fetch "${url}" VCTK-Corpus-0.92.zip
  mkdir -p VCTK-Corpus-0.92 && unzip -q -o VCTK-Corpus-0.92.zip -d VCTK-Corpus-0.92
fi
echo "VCTK ready in ${db_root}/VCTK-Corpus-0.92"
