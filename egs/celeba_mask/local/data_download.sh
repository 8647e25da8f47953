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
# Stage 0 also reads the unpacked archive directly (CelebAMask-HQ-mask-anno/ part masks, combined in the
# face_parsing label order, and CelebA-HQ-to-CelebA-mapping.txt for the split). Put either in db_root and
# rerun; this script only unpacks and checks.
if [ ! -d CelebAMask-HQ ] && [ -f CelebAMask-HQ.zip ]; then unzip -q CelebAMask-HQ.zip; fi
if [ -d train_label ] || [ -d CelebAMask-HQ/CelebAMask-HQ-mask-anno ] || [ -d CelebAMask-HQ-mask-anno ]; then
  echo "CelebAMask-HQ ready in ${db_root}"
else
  echo "CelebAMask-HQ: put CelebAMask-HQ.zip (or its unpacked folder, or {train,val,test}_label/) in" 1>&2
  echo "  ${db_root} (from https://github.com/switchablenorms/CelebAMask-HQ), then run this stage again" 1>&2
  exit 1
fi
