#!/usr/bin/env bash
# sqcodec: the shared staged pipeline of the image recipes (egs/{mnist,fashion_mnist,cifar10,celeba,
# celeba_mask}/run.sh call it; the SQ-VAE / HQ-VAE image experiments as secondary recipes).
#
#   recipes/image.sh --recipe_dir egs/mnist --corpus mnist --conf conf/sqvae_gauss1.yaml [options]
#
# Stages (run --stage A --stop_stage B; each is re-runnable and logs under data/log or exp/<tag>/; a
# failing stage stops the recipe naming its log):
#   -1  download the corpus into --db_root                  (local/data_download.sh; needs internet)
#    0  split files data/{train,valid,test}.npz from --db_root (python -m sqcodec.data.images prepare)
#    1  training: python -m sqcodec.train --config <conf> (torchrun when --ngpu > 1) -> exp/<tag>/
#    2  evaluation of exp/<tag> on data/<eval_set>.npz: MSE, RMSE, SSIM (LPIPS when its weights are on
#       this machine), accuracy / mIoU for class maps, codebook perplexity per layer, and a grid of
#       reconstructions -> exp/<tag>/eval_<eval_set>/{metrics.json,metrics.md,recon.png}
#    3  one table of every evaluated experiment: exp/summary_<eval_set>.md
set -euo pipefail

recipes_root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck disable=SC1091
. "${recipes_root}/utils/log.sh"

# ------------------------------------------------------------------------------------------ options
stage=0            # first stage to run
stop_stage=3       # last stage to run
ngpu=1             # GPUs for training (0 = CPU; > 1 = torchrun DDP on this node)
conf=""            # model/training YAML (relative paths are tried in the recipe dir too)
tag=""             # experiment name (default: the conf file's stem)
corpus=""          # mnist | fashion_mnist | cifar10 | celeba | celeba_mask | digits
db_root=""         # where the corpus is (or is downloaded to by stage -1)
resume=""          # stage 1: "true" = the newest checkpoint in exp/<tag>, or a checkpoint path
recipe_dir=""      # the egs/<corpus> folder (holds local/, conf/, cmd.sh, path.sh)
datadir=data       # split files
expdir=exp         # experiments
eval_set=test      # stages 2-3: the split to evaluate (test | valid)
prep_args=""       # stage 0: extra arguments to sqcodec.data.images prepare (e.g. "--max_images 1000")
train_args=""      # stage 1: extra arguments to python -m sqcodec.train (e.g. "--set train.steps=100")
eval_args=""       # stage 2: extra arguments to sqcodec.eval.image_metrics evaluate (e.g. "--grid 32")
help_message="Usage: $0 [--stage N] [--stop_stage N] [--ngpu N] [--conf X.yaml] [--tag T] [--corpus NAME] \
[--db_root DIR] [--resume true|CKPT] [--datadir data] [--expdir exp] [--eval_set test|valid] \
[--prep_args '...'] [--train_args '...'] [--eval_args '...']"

. "${recipes_root}/utils/recipe_setup.sh"
[ -n "${corpus}" ] || die "--corpus is required"
[ -n "${tag}" ] || tag="$(basename "${conf:-none}" .yaml)"
exp="${expdir}/${tag}"
log "image recipe ${recipe_dir##*/}: corpus ${corpus}, conf ${conf:-none}, exp ${exp}"

# ------------------------------------------------------------------------------------------ stages
if [ "${stage}" -le -1 ] && [ "${stop_stage}" -ge -1 ]; then
  log "Stage -1: download ${corpus} into ${db_root}"
  [ -n "${db_root}" ] || die "--db_root is required"
  mkdir -p "${db_root}"
  run1 "${datadir}/log/data_download.log" "${recipe_dir}/local/data_download.sh" "${db_root}"
fi

if [ "${stage}" -le 0 ] && [ "${stop_stage}" -ge 0 ]; then
  log "Stage 0: split files ${datadir}/{train,valid,test}.npz from ${db_root:-scikit-learn}"
  if [ "${corpus}" != digits ]; then
    [ -n "${db_root}" ] && [ -d "${db_root}" ] || die "--db_root '${db_root}': no such directory (run stage -1?)"
  fi
  db_opt=(); [ -n "${db_root}" ] && db_opt=(--db_root "${db_root}")
  # shellcheck disable=SC2086
  run1 "${datadir}/log/prepare.log" "${python}" -m sqcodec.data.images prepare --corpus "${corpus}" \
    "${db_opt[@]}" --out "${datadir}" ${prep_args}
  log "  $(tail -n 1 "${datadir}/log/prepare.log" | grep -o 'train=.*' || true)"
fi

if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
  log "Stage 1: training -> ${exp} (conf ${conf}, ngpu ${ngpu})"
  [ -n "${conf}" ] && [ -f "${conf}" ] || die "--conf '${conf}': no such file"
  for s in train valid; do [ -f "${datadir}/${s}.npz" ] || die "${datadir}/${s}.npz: missing (run stage 0)"; done
  mkdir -p "${exp}"
  args=(--config "${conf}" --out "${exp}" --set "data.train=${datadir}/train.npz" "data.valid=${datadir}/valid.npz")
  if [ "${ngpu}" -eq 0 ]; then args+=(--set train.device=cpu); fi
  case "${resume}" in ""|false) ;; true|latest) args+=(--resume) ;; *) args+=(--resume "${resume}") ;; esac
  if [ "${ngpu}" -gt 1 ]; then
    launcher=(torchrun --standalone --nproc_per_node="${ngpu}" -m sqcodec.train)
  else
    launcher=("${python}" -m sqcodec.train)
  fi
  # shellcheck disable=SC2086
  ${cuda_cmd} --gpu "${ngpu}" "${exp}/train.log" "${launcher[@]}" "${args[@]}" ${train_args} \
    || die "training failed, see ${exp}/train.log"
  log "  trained: ${exp} (checkpoints, config.yaml, train.jsonl; tensorboard --logdir ${exp})"
fi

if [ "${stage}" -le 2 ] && [ "${stop_stage}" -ge 2 ]; then
  out="${exp}/eval_${eval_set}"
  log "Stage 2: evaluate ${exp} on ${datadir}/${eval_set}.npz -> ${out}"
  [ -f "${datadir}/${eval_set}.npz" ] || die "${datadir}/${eval_set}.npz: missing (run stage 0)"
  dev=cpu; [ "${ngpu}" -gt 0 ] && dev=cuda
  # shellcheck disable=SC2086
  run1 "${out}/log/evaluate.log" "${python}" -m sqcodec.eval.image_metrics evaluate --exp "${exp}" \
    --split "${datadir}/${eval_set}.npz" --out "${out}" --device "${dev}" ${eval_args}
  grep -h "^skipped:" "${out}/log/evaluate.log" || true
  cat "${out}/metrics.md"
fi

if [ "${stage}" -le 3 ] && [ "${stop_stage}" -ge 3 ]; then
  log "Stage 3: summary of ${expdir}/*/eval_${eval_set} -> ${expdir}/summary_${eval_set}.md"
  dirs=(); for d in "${expdir}"/*/eval_"${eval_set}"; do [ -f "${d}/metrics.json" ] && dirs+=("${d}"); done
  [ "${#dirs[@]}" -gt 0 ] || die "no ${expdir}/*/eval_${eval_set}/metrics.json: run stage 2 first"
  run1 "${expdir}/log/summary_${eval_set}.log" "${python}" -m sqcodec.eval.image_metrics summary \
    --out "${expdir}/summary_${eval_set}.md" "${dirs[@]}"
  cat "${expdir}/summary_${eval_set}.md"
fi
log "done (stages ${stage}..${stop_stage})"
