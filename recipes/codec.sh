#!/usr/bin/env bash
# sqcodec: the shared staged pipeline of the audio recipes (egs/*/run.sh call it, ESPnet TEMPLATE style).
#
#   recipes/codec.sh --recipe_dir egs/vctk --train_set train --test_sets "test" --conf conf/X.yaml [options]
#
# Stages (run --stage A --stop_stage B; each is re-runnable and logs under data/log, dump/<set>/*/log
# or exp/<tag>/; a failing stage stops the recipe naming its log):
#   -1  download the corpus into --db_root                   (local/data_download.sh)
#    0  Kaldi data dirs data/<set>/{wav.scp,utt2spk,spk2utt,...}  (local/data_prep.sh), validated
#    1  log-mel features (preset = data.preset of --conf), --nj jobs -> dump/<set>/raw/feats.scp (ark)
#    2  train-set stats -> dump/<train_set>/stats.json; when the preset normalises (--norm auto) or
#       --norm standardise: dump/<set>/norm/feats.scp (per-bin standardised with the train stats)
#    3  training: python -m sqcodec.train (torchrun when --ngpu > 1) -> exp/<tag>/
#    4  HiFi-GAN vocoder on the preset: python -m sqcodec.vocoder.train on the audio of data/<train_set>
#       (--vocoder_size/--vocoder_steps/--vocoder_gan_start/--vocoder_args) -> exp/<vocoder_tag>/
#       (checkpoints, train.jsonl, log/) and the exported folder exp/<vocoder_tag>/vocoder/
#    5  decode --decode_sets (default: --test_sets, else --valid_set) with exp/<tag> (best.pt, else the
#       newest checkpoint) for each layer count of --decode_layers, vocoded with --vocoder
#       (exp/<vocoder_tag>/vocoder | griffinlim | a vocoder folder) -> exp/<tag>/decode_<set>_L<n>/
#       {codes,feats}.{ark,scp} + wav/, decode_<set>_resyn/wav/ (vocoder on the ground truth),
#       decode_<set>_ref/wav/ (reference audio at the preset rate); --nj jobs
#    6  scoring: sqcodec score of each wav/ against the references (log-mel RMSE, mel dB², STOI, PESQ-wb),
#       feature-domain log-mel RMSE / mel dB², codebook perplexity and bits/s of the codes ->
#       exp/<tag>/scores/<set>_<L<n>|resyn>.{json,md} and exp/<tag>/scores/summary.md
#    7  (only when asked: --stop_stage 7) minimal-pair ABX with sqcodec abx on the audio of --abx_set and
#       the item file --abx_item (ZeroSpeech 2019 / Libri-Light format, docs/abx.md), representation
#       --abx_representation of the stage-5 checkpoint -> exp/<tag>/abx/<set>_<representation>.{json,md}
#    (MUSHRA packaging is not part of the recipe: sqcodec mushra, docs/mushra.md.)
set -euo pipefail

recipes_root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck disable=SC1091
. "${recipes_root}/utils/log.sh"

# ------------------------------------------------------------------------------------------ options
stage=0              # first stage to run
stop_stage=6         # last stage to run
nj=4                 # parallel CPU jobs for feature extraction / normalisation
ngpu=1               # GPUs for training (0 = CPU; > 1 = torchrun DDP on this node)
conf=""              # model/training YAML (relative paths are tried in the recipe dir too)
tag=""               # experiment name (default: the conf file's stem)
db_root=""           # where the corpus is (or is downloaded to by stage -1)
resume=""            # stage 3: "true" = the newest checkpoint in exp/<tag>, or a checkpoint path
recipe_dir=""        # the egs/<corpus> folder (holds local/, conf/, cmd.sh, path.sh)
datadir=data         # Kaldi data dirs
dumpdir=dump         # features
expdir=exp           # experiments
train_set=""         # name of the training set in data/
valid_set=""         # validation set ("" = the trainer holds data.valid_holdout out of train)
test_sets=""         # further sets to featurise (space separated)
norm=auto            # auto (the preset's paper: vctk standardise, others none) | standardise | none
prep_args=""         # extra arguments to local/data_prep.sh
train_args=""        # extra arguments to python -m sqcodec.train (e.g. "--set train.steps=100")
vocoder_size=v3      # stage 4: HiFi-GAN size (v1 | v2 | v3)
vocoder_steps=100000 # stage 4: vocoder training steps
vocoder_gan_start=0  # stage 4: generator-only (mel + multi-resolution STFT) steps before the GAN losses
vocoder_args=""      # stage 4: extra arguments to python -m sqcodec.vocoder.train (e.g. "--batch 16 --segment 8192")
vocoder_tag=""       # stage 4: vocoder experiment name (default hifigan_<preset>_<vocoder_size>) -> exp/<vocoder_tag>
vocoder=""           # stages 5-6: exp/<vocoder_tag>/vocoder (default) | griffinlim | a vocoder folder
decode_sets=""       # stages 5-6: sets to decode (default: --test_sets, else --valid_set)
decode_layers=""     # stage 5: layer counts to decode with, e.g. "1 2 4 8" (default: 1, 2, 4, ... up to L)
decode_ckpt=""       # stage 5: model checkpoint (default: exp/<tag>/best.pt, else the newest checkpoint)
decode_max_utts=0    # stage 5: decode only the first N utterances of each set (0 = all; for smoke tests)
score_metrics=""     # stage 6: waveform metrics (default log_mel_rmse,mel_mse_db2,stoi,pesq_wb)
abx_item=""          # stage 7: ABX item file (#file onset offset #phone prev-phone next-phone speaker)
abx_set=""           # stage 7: the set whose audio the item file names (default: the first of --test_sets)
abx_representation=continuous  # stage 7: continuous | quantized | codes | mel
abx_args=""          # stage 7: extra arguments to sqcodec abx (e.g. "--layers 2 --mode across")
help_message="Usage: $0 [--stage N] [--stop_stage N] [--nj N] [--ngpu N] [--conf X.yaml] [--tag T] \
[--db_root DIR] [--resume true|CKPT] [--datadir data] [--dumpdir dump] [--expdir exp] [--norm auto|standardise|none] \
[--train_args '...'] [--prep_args '...'] [--vocoder_size v3] [--vocoder_steps N] [--vocoder_gan_start N] \
[--vocoder_args '...'] [--vocoder_tag T] [--vocoder DIR|griffinlim] [--decode_sets '...'] [--decode_layers '1 2 4'] \
[--decode_ckpt CKPT] [--decode_max_utts N] [--score_metrics '...'] [--abx_item FILE] [--abx_set SET] \
[--abx_representation continuous|quantized|codes|mel] [--abx_args '...']"

. "${recipes_root}/utils/recipe_setup.sh"
[ -n "${train_set}" ] || die "--train_set is required"
[ -n "${conf}" ] && [ -f "${conf}" ] || die "--conf '${conf}': no such file"
[ -n "${tag}" ] || tag="$(basename "${conf}" .yaml)"
tools() { "${python}" -m sqcodec.recipe_tools "$@"; }
preset="$(tools conf-get "${conf}" data.preset)"
[ -n "${preset}" ] || die "${conf}: data.preset is not set"
if [ "${norm}" = auto ]; then
  norm="$("${python}" -c "from sqcodec.audio import get_preset; print(get_preset('${preset}').normalisation)")" \
    || die "unknown mel preset ${preset}"
fi
case "${norm}" in standardise|none) ;; *) die "--norm must be auto, standardise or none (got ${norm})" ;; esac
feat_type=raw; [ "${norm}" = standardise ] && feat_type=norm
[ -n "${vocoder_tag}" ] || vocoder_tag="hifigan_${preset}_${vocoder_size}"
[ -n "${vocoder}" ] || vocoder="${expdir}/${vocoder_tag}/vocoder"
[ -n "${decode_sets}" ] || decode_sets="${test_sets:-${valid_set}}"
[ -n "${abx_set}" ] || abx_set="${test_sets%% *}"

all_sets=""
for s in ${train_set} ${valid_set} ${test_sets}; do
  case " ${all_sets} " in *" ${s} "*) ;; *) all_sets="${all_sets:+${all_sets} }${s}" ;; esac
done
log "recipe ${recipe_dir##*/}: sets [${all_sets}], preset ${preset}, normalisation ${norm}, conf ${conf}"


# ------------------------------------------------------------------------------------------ stages
if [ "${stage}" -le -1 ] && [ "${stop_stage}" -ge -1 ]; then
  log "Stage -1: download the corpus into ${db_root}"
  [ -n "${db_root}" ] || die "--db_root is required"
  mkdir -p "${db_root}"
  run1 "${datadir}/log/data_download.log" "${recipe_dir}/local/data_download.sh" "${db_root}"
fi

if [ "${stage}" -le 0 ] && [ "${stop_stage}" -ge 0 ]; then
  log "Stage 0: Kaldi data dirs ${datadir}/{${all_sets// /,}} from ${db_root}"
  [ -n "${db_root}" ] && [ -d "${db_root}" ] || die "--db_root '${db_root}': no such directory (run stage -1?)"
  # shellcheck disable=SC2086
  run1 "${datadir}/log/data_prep.log" "${recipe_dir}/local/data_prep.sh" "${db_root}" "${datadir}" ${prep_args}
  for s in ${all_sets}; do
    run1 "${datadir}/log/validate_${s}.log" "${recipes_root}/utils/validate_data_dir.sh" "${datadir}/${s}"
    log "  ${datadir}/${s}: $(wc -l < "${datadir}/${s}/utt2spk") utterances, $(wc -l < "${datadir}/${s}/spk2utt") speakers"
  done
fi

if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
  log "Stage 1: ${preset} log-mel features -> ${dumpdir}/<set>/raw/feats.scp (${nj} jobs)"
  for s in ${all_sets}; do
    src="${datadir}/${s}"; out="${dumpdir}/${s}/raw"
    [ -f "${src}/wav.scp" ] || die "${src}/wav.scp: missing (run stage 0)"
    table="${src}/wav.scp"; [ -f "${src}/segments" ] && table="${src}/segments"
    n_utt=$(wc -l < "${table}"); _nj=$(( nj < n_utt ? nj : n_utt ))
    rm -rf "${out}"; mkdir -p "${out}/split${_nj}"
    split_outs=(); for (( j = 1; j <= _nj; j++ )); do split_outs+=("${out}/split${_nj}/part.${j}"); done
    "${recipes_root}/utils/split_scp.sh" "${table}" "${split_outs[@]}"
    seg_opt=(); wav_opt=("--wav_scp" "${out}/split${_nj}/part.JOB")
    if [ -f "${src}/segments" ]; then seg_opt=(--segments "${out}/split${_nj}/part.JOB"); wav_opt=(--wav_scp "${src}/wav.scp"); fi
    ${train_cmd} JOB=1:"${_nj}" "${out}/log/extract.JOB.log" \
      "${python}" -m sqcodec.recipe_tools extract-feats --preset "${preset}" "${wav_opt[@]}" "${seg_opt[@]}" \
      --out "${out}/feats.JOB" || die "feature extraction of ${s} failed (logs: ${out}/log/extract.*.log)"
    for (( j = 1; j <= _nj; j++ )); do cat "${out}/feats.${j}.scp"; done | LC_ALL=C sort -k1,1 > "${out}/feats.scp"
    for (( j = 1; j <= _nj; j++ )); do cat "${out}/feats.${j}.utt2num_frames"; done | LC_ALL=C sort -k1,1 > "${out}/utt2num_frames"
    for f in utt2spk spk2utt text utt2category; do [ -f "${src}/${f}" ] && cp "${src}/${f}" "${out}/${f}"; done
    [ "$(wc -l < "${out}/feats.scp")" -eq "${n_utt}" ] || die "${out}/feats.scp: expected ${n_utt} utterances"
    log "  ${out}/feats.scp: ${n_utt} utterances"
  done
fi

if [ "${stage}" -le 2 ] && [ "${stop_stage}" -ge 2 ]; then
  stats="${dumpdir}/${train_set}/stats.json"
  log "Stage 2: train-set statistics -> ${stats}; normalisation: ${norm}"
  [ -f "${dumpdir}/${train_set}/raw/feats.scp" ] || die "${dumpdir}/${train_set}/raw/feats.scp: missing (run stage 1)"
  run1 "${dumpdir}/${train_set}/log/compute_stats.log" "${python}" -m sqcodec.recipe_tools compute-stats \
    --scp "${dumpdir}/${train_set}/raw/feats.scp" --out "${stats}" --preset "${preset}"
  if [ "${norm}" = standardise ]; then
    for s in ${all_sets}; do
      raw="${dumpdir}/${s}/raw"; out="${dumpdir}/${s}/norm"
      n_utt=$(wc -l < "${raw}/feats.scp"); _nj=$(( nj < n_utt ? nj : n_utt ))
      rm -rf "${out}"; mkdir -p "${out}/split${_nj}"
      split_outs=(); for (( j = 1; j <= _nj; j++ )); do split_outs+=("${out}/split${_nj}/feats.${j}.scp"); done
      "${recipes_root}/utils/split_scp.sh" "${raw}/feats.scp" "${split_outs[@]}"
      ${train_cmd} JOB=1:"${_nj}" "${out}/log/normalize.JOB.log" \
        "${python}" -m sqcodec.recipe_tools normalize --scp "${out}/split${_nj}/feats.JOB.scp" --stats "${stats}" \
        --out "${out}/feats.JOB" || die "normalisation of ${s} failed (logs: ${out}/log/normalize.*.log)"
      for (( j = 1; j <= _nj; j++ )); do cat "${out}/feats.${j}.scp"; done | LC_ALL=C sort -k1,1 > "${out}/feats.scp"
      for f in utt2spk spk2utt text utt2category utt2num_frames; do [ -f "${raw}/${f}" ] && cp "${raw}/${f}" "${out}/${f}"; done
      log "  ${out}/feats.scp: ${n_utt} utterances"
    done
  fi
fi

exp="${expdir}/${tag}"
if [ "${stage}" -le 3 ] && [ "${stop_stage}" -ge 3 ]; then
  log "Stage 3: training -> ${exp} (conf ${conf}, ngpu ${ngpu}, features ${feat_type})"
  train_scp="${dumpdir}/${train_set}/${feat_type}/feats.scp"
  [ -f "${train_scp}" ] || die "${train_scp}: missing (run stages 1-2)"
  mkdir -p "${exp}"
  args=(--config "${conf}" --out "${exp}" --set "data.train=${train_scp}")
  if [ -n "${valid_set}" ]; then args+=(--set "data.valid=${dumpdir}/${valid_set}/${feat_type}/feats.scp"); fi
  if [ "${ngpu}" -eq 0 ]; then args+=(--set train.device=cpu); fi
  case "${resume}" in ""|false) ;; true|latest) args+=(--resume) ;; *) args+=(--resume "${resume}") ;; esac
  [ "${norm}" = standardise ] && cp "${dumpdir}/${train_set}/stats.json" "${exp}/feature_stats.json"
  if [ "${ngpu}" -gt 1 ]; then
    launcher=(torchrun --standalone --nproc_per_node="${ngpu}" -m sqcodec.train)
  else
    launcher=("${python}" -m sqcodec.train)
  fi
  # shellcheck disable=SC2086
  ${cuda_cmd} --gpu "${ngpu}" "${exp}/train.log" "${launcher[@]}" "${args[@]}" ${train_args} \
    || die "training failed, see ${exp}/train.log"
  log "  trained: ${exp} (checkpoints, config.yaml, metrics; tensorboard --logdir ${exp})"
fi

voc_exp="${expdir}/${vocoder_tag}"
if [ "${stage}" -le 4 ] && [ "${stop_stage}" -ge 4 ]; then
  log "Stage 4: HiFi-GAN ${vocoder_size} vocoder on preset ${preset} -> ${voc_exp} (${vocoder_steps} steps, GAN from step ${vocoder_gan_start})"
  [ -f "${datadir}/${train_set}/wav.scp" ] || die "${datadir}/${train_set}/wav.scp: missing (run stage 0)"
  mkdir -p "${voc_exp}/log"
  run1 "${voc_exp}/log/lists.log" "${python}" -m sqcodec.recipe_tools wav-list \
    --wav_scp "${datadir}/${train_set}/wav.scp" --out "${voc_exp}/train.txt"
  args=(--train "${voc_exp}/train.txt" --out "${voc_exp}" --preset "${preset}" --size "${vocoder_size}" \
    --steps "${vocoder_steps}" --gan-start "${vocoder_gan_start}")
  if [ -n "${valid_set}" ]; then  # a few whole validation files, scored every --val-every steps
    run1 "${voc_exp}/log/lists.log" "${python}" -m sqcodec.recipe_tools wav-list \
      --wav_scp "${datadir}/${valid_set}/wav.scp" --out "${voc_exp}/valid.txt" --max 16
    args+=(--valid "${voc_exp}/valid.txt")
  fi
  if [ "${ngpu}" -eq 0 ]; then args+=(--device cpu); fi
  case "${resume}" in
    ""|false) rm -rf "${voc_exp}/checkpoints" "${voc_exp}/train.jsonl" "${voc_exp}/vocoder" ;;  # a fresh run
    true|latest) args+=(--resume) ;;
    *) die "stage 4 resumes from the newest checkpoint of ${voc_exp} only: use --resume true" ;;
  esac
  # shellcheck disable=SC2086
  ${cuda_cmd} --gpu "$(( ngpu > 0 ? 1 : 0 ))" "${voc_exp}/log/train.log" \
    "${python}" -m sqcodec.vocoder.train "${args[@]}" ${vocoder_args} \
    || die "vocoder training failed, see ${voc_exp}/log/train.log"
  run1 "${voc_exp}/log/export.log" "${python}" -m sqcodec.vocoder.train --out "${voc_exp}" --export "${voc_exp}/vocoder"
  log "  vocoder: ${voc_exp}/vocoder (training record in ${voc_exp}/train.jsonl)"
fi

if [ "${stage}" -le 5 ] && [ "${stop_stage}" -ge 5 ]; then
  log "Stage 5: decode [${decode_sets}] with ${exp} (layers: ${decode_layers:-1 2 4 .. L}), vocoder ${vocoder} (${nj} jobs)"
  [ -n "${decode_sets}" ] || die "no set to decode: give --test_sets, --valid_set or --decode_sets"
  if [ "${vocoder}" != griffinlim ] && [ ! -f "${vocoder}/vocoder.json" ]; then
    die "--vocoder ${vocoder}: not a vocoder folder (run stage 4, or pass --vocoder griffinlim or a folder such as sqcodec/pretrained/default)"
  fi
  dev=auto; [ "${ngpu}" -eq 0 ] && dev=cpu
  for s in ${decode_sets}; do
    scp="${dumpdir}/${s}/${feat_type}/feats.scp"
    [ -f "${scp}" ] || die "${scp}: missing (run stages 1-2 with ${s} in --test_sets)"
    opt=(); [ "${feat_type}" = norm ] && opt+=(--feat_stats "${dumpdir}/${train_set}/stats.json")
    [ -f "${dumpdir}/${s}/${feat_type}/utt2spk" ] && opt+=(--utt2spk "${dumpdir}/${s}/${feat_type}/utt2spk")
    [ -n "${decode_ckpt}" ] && opt+=(--ckpt "${decode_ckpt}")
    jobs="${exp}/decode_${s}_jobs"
    rm -rf "${exp}/decode_${s}_ref" "${exp}/decode_${s}_resyn" "${jobs}" "${exp}/decode_${s}_L"[0-9]*
    mkdir -p "${jobs}"
    if [ "${decode_max_utts}" -gt 0 ]; then head -n "${decode_max_utts}" "${scp}" > "${jobs}/feats.scp"; else cp "${scp}" "${jobs}/feats.scp"; fi
    n_utt=$(wc -l < "${jobs}/feats.scp"); _nj=$(( nj < n_utt ? nj : n_utt ))
    mkdir -p "${jobs}/split${_nj}"
    split_outs=(); for (( j = 1; j <= _nj; j++ )); do split_outs+=("${jobs}/split${_nj}/feats.${j}.scp"); done
    "${recipes_root}/utils/split_scp.sh" "${jobs}/feats.scp" "${split_outs[@]}"
    ${train_cmd} JOB=1:"${_nj}" "${jobs}/log/decode.JOB.log" \
      "${python}" -m sqcodec.recipe_tools decode --exp "${exp}" --set "${s}" --scp "${jobs}/split${_nj}/feats.JOB.scp" \
      --raw_scp "${dumpdir}/${s}/raw/feats.scp" --data "${datadir}/${s}" --preset "${preset}" \
      --vocoder "${vocoder}" --layers "${decode_layers}" --device "${dev}" --job JOB "${opt[@]}" \
      || die "decoding of ${s} failed (logs: ${jobs}/log/decode.*.log)"
    for d in "${exp}/decode_${s}_L"*; do
      for t in feats codes; do
        for (( j = 1; j <= _nj; j++ )); do cat "${d}/${t}.${j}.scp"; done | LC_ALL=C sort -k1,1 > "${d}/${t}.scp"
        [ "$(wc -l < "${d}/${t}.scp")" -eq "${n_utt}" ] || die "${d}/${t}.scp: expected ${n_utt} utterances"
      done
      log "  ${d}: ${n_utt} utterances (codes.scp, feats.scp, wav/)"
    done
    log "  ${exp}/decode_${s}_resyn/wav, ${exp}/decode_${s}_ref/wav: vocoder resynthesis, references"
  done
fi

if [ "${stage}" -le 6 ] && [ "${stop_stage}" -ge 6 ]; then
  log "Stage 6: scoring [${decode_sets}] -> ${exp}/scores"
  [ -n "${decode_sets}" ] || die "no set to score: give --test_sets, --valid_set or --decode_sets"
  ref_scps=""
  for s in ${decode_sets}; do
    ref_scps="${ref_scps:+${ref_scps} }${dumpdir}/${s}/raw/feats.scp"
    mkdir -p "${exp}/scores"; rm -f "${exp}/scores/${s}_L"[0-9]*.{json,md} "${exp}/scores/${s}_resyn".{json,md}
  done
  opt=(); [ -f "${dumpdir}/${train_set}/stats.json" ] && opt+=(--stats "${dumpdir}/${train_set}/stats.json")
  [ -n "${score_metrics}" ] && opt+=(--metrics "${score_metrics}")
  run1 "${exp}/scores/log/score.log" "${python}" -m sqcodec.recipe_tools score-decode --exp "${exp}" \
    --sets "${decode_sets}" --ref_scps "${ref_scps}" --preset "${preset}" --out "${exp}/scores" "${opt[@]}"
  log "  ${exp}/scores/summary.md:"
  cat "${exp}/scores/summary.md"
fi

if [ "${stage}" -le 7 ] && [ "${stop_stage}" -ge 7 ]; then
  log "Stage 7: ABX (${abx_representation}) on ${abx_set:-?} with ${abx_item:-?} -> ${exp}/abx"
  [ -n "${abx_item}" ] && [ -f "${abx_item}" ] || die "--abx_item '${abx_item}': no such file (an item file, docs/abx.md)"
  [ -n "${abx_set}" ] && [ -f "${datadir}/${abx_set}/wav.scp" ] || die "--abx_set '${abx_set}': no ${datadir}/${abx_set}/wav.scp"
  ckpt="${decode_ckpt:-${exp}/best.pt}"
  [ -f "${ckpt}" ] || die "no checkpoint ${ckpt} (run stage 3, or give --decode_ckpt)"
  mkdir -p "${exp}/abx/log"
  run1 "${exp}/abx/log/audio_${abx_set}.log" "${python}" -m sqcodec.recipe_tools abx-audio \
    --wav_scp "${datadir}/${abx_set}/wav.scp" --out "${exp}/abx/audio_${abx_set}"
  opt=(); [ "${feat_type}" = norm ] && opt+=(--stats "${dumpdir}/${train_set}/stats.json")
  out="${exp}/abx/${abx_set}_${abx_representation}"
  # shellcheck disable=SC2086
  run1 "${exp}/abx/log/abx_${abx_set}_${abx_representation}.log" "${python}" -m sqcodec abx "${abx_item}" \
    --audio "${exp}/abx/audio_${abx_set}" --model "${ckpt}" --representation "${abx_representation}" \
    --no-progress --json "${out}.json" --markdown "${out}.md" "${opt[@]}" ${abx_args}
  log "  ${out}.md:"
  cat "${out}.md"
fi
log "done (stages ${stage}..${stop_stage})"
