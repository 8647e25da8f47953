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
#    4  vocoder training           NOT YET AVAILABLE (needs sqcodec's vocoder trainer)
#    5  encode/decode the test sets NOT YET AVAILABLE
#    6  scoring (mel dB² / RMSE, ABX, MUSHRA packaging) NOT YET AVAILABLE
set -euo pipefail

log() { echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${BASH_SOURCE[0]##*/}:${BASH_LINENO[0]}) $*"; }
die() { log "ERROR: $*" 1>&2; exit 1; }

recipes_root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# ------------------------------------------------------------------------------------------ options
stage=0              # first stage to run
stop_stage=3         # last stage to run (stages 4-6 are not available yet)
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
help_message="Usage: $0 [--stage N] [--stop_stage N] [--nj N] [--ngpu N] [--conf X.yaml] [--tag T] \
[--db_root DIR] [--resume true|CKPT] [--datadir data] [--dumpdir dump] [--expdir exp] [--norm auto|standardise|none] \
[--train_args '...'] [--prep_args '...']"

. "${recipes_root}/utils/parse_options.sh"
[ $# -eq 0 ] || die "unexpected arguments: $*"
[ -n "${recipe_dir}" ] || die "--recipe_dir is required (egs/<corpus>)"
recipe_dir="$(cd "${recipe_dir}" && pwd)"
[ -n "${train_set}" ] || die "--train_set is required"

# shellcheck disable=SC1091
. "${recipe_dir}/path.sh"
# shellcheck disable=SC1091
. "${recipe_dir}/cmd.sh"

if [ -n "${conf}" ] && [ ! -f "${conf}" ] && [ -f "${recipe_dir}/${conf}" ]; then conf="${recipe_dir}/${conf}"; fi
[ -n "${conf}" ] && [ -f "${conf}" ] || die "--conf '${conf}': no such file"
[ -n "${tag}" ] || tag="$(basename "${conf}" .yaml)"

python="${PYTHON:-python}"
tools() { "${python}" -m sqcodec.recipe_tools "$@"; }
preset="$(tools conf-get "${conf}" data.preset)"
[ -n "${preset}" ] || die "${conf}: data.preset is not set"
if [ "${norm}" = auto ]; then
  norm="$("${python}" -c "from sqcodec.audio import get_preset; print(get_preset('${preset}').normalisation)")" \
    || die "unknown mel preset ${preset}"
fi
case "${norm}" in standardise|none) ;; *) die "--norm must be auto, standardise or none (got ${norm})" ;; esac
feat_type=raw; [ "${norm}" = standardise ] && feat_type=norm

all_sets=""
for s in ${train_set} ${valid_set} ${test_sets}; do
  case " ${all_sets} " in *" ${s} "*) ;; *) all_sets="${all_sets:+${all_sets} }${s}" ;; esac
done
log "recipe ${recipe_dir##*/}: sets [${all_sets}], preset ${preset}, normalisation ${norm}, conf ${conf}"

# run a single logged command; on failure the runner names the log and we stop
run1() { local logf="$1"; shift; ${train_cmd} "${logf}" "$@" || die "failed, see ${logf}"; }

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

for n in 4 5 6; do
  if [ "${stage}" -le "${n}" ] && [ "${stop_stage}" -ge "${n}" ]; then
    case "${n}" in
      4) what="vocoder training (needs sqcodec's vocoder trainer, not yet available)" ;;
      5) what="encode/decode of the test sets with the trained model + vocoder (not yet available)" ;;
      6) what="scoring: mel dB²/RMSE, ABX, MUSHRA packaging (not yet available)" ;;
    esac
    die "Stage ${n}: NOT YET AVAILABLE: ${what}. Run with --stop_stage 3."
  fi
done
log "done (stages ${stage}..${stop_stage})"
