#!/usr/bin/env bash
# local/data_download.sh <db_root>: download the corpus (stage -1; needs internet; never run by the tests).
# Re-runnable: files already downloaded are skipped. A local copy can be used instead: --db_root DIR.
set -euo pipefail
. "$(cd "$(dirname "$0")/../../.." && pwd)/recipes/utils/fetch.sh"
[ $# -eq 1 ] || { echo "usage: $0 <db_root>" 1>&2; exit 1; }
db_root="$1"; mkdir -p "${db_root}"; cd "${db_root}"
# CelebAMask-HQ (Lee et al. 2020) is distributed through Google Drive
# (https://github.com/switchablenorms/CelebAMask-HQ). The SQ-VAE reference code trains on the
# face-parsing label maps {train,val,test}_label/<i>.png (one class index 0..18 per pixel) that the
# CelebAMask-HQ face_parsing scripts (g_mask.py, g_partition.py) make from CelebAMask-HQ-mask-anno/.
# Put those folders in db_root and rerun; this script only checks.
for d in train_label val_label test_label; do
  if [ ! -d "${d}" ]; then
    echo "CelebAMask-HQ: ${db_root}/${d}/ is missing; make {train,val,test}_label/*.png with the" 1>&2
    echo "  CelebAMask-HQ face_parsing scripts (see this recipe's README.md), then run this stage again" 1>&2
    exit 1
  fi
done
echo "CelebAMask-HQ label maps ready in ${db_root}"
