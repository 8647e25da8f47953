#!/usr/bin/env bash
# utt2spk -> spk2utt:  utils/utt2spk_to_spk2utt.sh data/x/utt2spk > data/x/spk2utt   (or stdin)
# Speakers in order of first appearance, utterances in input order (so a C-sorted utt2spk whose
# utterance ids start with the speaker id gives a C-sorted spk2utt, as Kaldi expects).
set -euo pipefail
export LC_ALL=C
awk '
  NF < 2 { printf("%s: bad line %d: %s\n", FILENAME, FNR, $0) > "/dev/stderr"; exit 1 }
  !($2 in u) { order[++n] = $2; u[$2] = $1; next }
  { u[$2] = u[$2] " " $1 }
  END { for (i = 1; i <= n; i++) print order[i], u[order[i]] }
' "${1:--}"
