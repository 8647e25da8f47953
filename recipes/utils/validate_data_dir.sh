#!/usr/bin/env bash
# utils/validate_data_dir.sh [--no-check-files] data/<set>
# Checks wav.scp, utt2spk, spk2utt (and text, segments, utt2category when present): C-sorted, unique
# keys, the same utterances in every table, spk2utt the inverse of utt2spk, audio files present.
set -euo pipefail
opts=()
if [ "${1:-}" = "--no-check-files" ] || [ "${1:-}" = "--no_check_files" ]; then opts+=(--no_check_files); shift; fi
[ $# -eq 1 ] || { echo "usage: $0 [--no-check-files] <data-dir>" 1>&2; exit 1; }
exec python -m sqcodec.recipe_tools validate-data-dir "${opts[@]}" "$1"
