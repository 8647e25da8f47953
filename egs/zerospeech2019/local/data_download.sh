#!/usr/bin/env bash
# local/data_download.sh <db_root>: download and unpack the corpus (stage -1; never run by the tests).
# Re-runnable: an archive already unpacked is skipped.
set -euo pipefail
. "$(cd "$(dirname "$0")/../../.." && pwd)/recipes/utils/fetch.sh"
[ $# -eq 1 ] || { echo "usage: $0 <db_root>" 1>&2; exit 1; }
db_root="$1"; mkdir -p "${db_root}"; cd "${db_root}"
# ZeroSpeech 2019 English (challenge terms). The archive URL below is where the ZeroSpeech site
# archives the 2019 data; VERIFY it (and its licence) before use.
url=https://download.zerospeech.com/archive/2019/english.tgz
if [ ! -d english/train/voice ]; then
  fetch "${url}" english.tgz
  tar xzf english.tgz
fi
echo "ZeroSpeech 2019 english ready in ${db_root}/english"
