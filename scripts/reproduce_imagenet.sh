#!/usr/bin/env bash
# Reproduce the paper's ImageNet-1k table: torchvision's ResNet-50 (IMAGENET1K_V1), stored patterns from
# the ImageNet training set, the ImageNet validation set against iNaturalist, SUN, Places and Textures,
# six scores, full and sampled protocols; the seeds (if several) are aggregated into mean ± std tables.
#
#   bash scripts/reproduce_imagenet.sh [options] [-- options for both Python scripts]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON=${PYTHON:-python3}

usage() {
  cat <<EOF
usage: $(basename "$0") [options] [-- extra options for both Python scripts]

Runs, from the current directory (outputs under --out):
  verify_data.py                          the needed data sets are complete (once, before anything else)
  generate_stored_pattern_imagenet.py     OUT/stored_pattern/imagenet/MODEL/ (features of imagenet/train,
                                          imagenet/val and the OOD sets; stored patterns)
  test_score_ood_detection_imagenet.py    OUT/results/imagenet/seed<k>/MODEL/<protocol>/results.*
                                          (once per seed and protocol, every score against every OOD set)
  aggregate_results.py                    OUT/results/imagenet/aggregate/ (mean ± std over the seeds)
The backbone is fixed (pretrained), so the features are extracted once and shared by the seeds; a seed
changes RecLag's learner (refitted, cheap) and the sampled protocol's draws.

options (defaults in brackets):
  --dataset_path DIR   data root: imagenet/train, imagenet/val (ImageFolder) and the OOD sets [./data]
  --out DIR            where stored_pattern/ and results/ go [.]
  --model M            backbone [resnet50: torchvision's ResNet-50 with --pretrained IMAGENET1K_V1]
  --checkpoint FILE    weights of your own instead of torchvision's pretrained ones
  --seeds K ...        seeds [1]
  --scores S ...       scores: names, all (the paper's six) or extended (every registered score) [all]
  --ood O ...          OOD sets [iNaturalist SUN Places Textures]
  --protocols P ...    evaluation protocols: full, sampled, paper (each score as its published row
                       was produced) [full sampled]
  --learner-seeds N    RecLag is fitted with learner seeds 1..N and reported as mean ± std over them
                       (on top of the backbone seeds) [5]
  --no-verify          skip the data check (verify_data.py) at the start
  --score-args "..."   extra options for both Python scripts (score hyper-parameters)
  --eval-args "..."    extra options for test_score_ood_detection_imagenet.py only
  --dry-run            print the commands, one per line (with --launcher: the jobs), and run nothing
  --launcher L         slurm or local: each seed's steps one job through submitit (pip install submitit),
                       the aggregation a job after them; see reproduce_cifar.sh --help. Logs in OUT/jobs/imagenet/
  --partition P, --account A, --gpus N [1], --cpus N, --time MINUTES [1440], --retries N [1]
  -h, --help           this help
Options of this script alone are dashed (--learner-seeds); with underscores they work too (--learner_seeds).
Any other option (e.g. --device cuda:0 --workers 16 --batch_size 256) goes to both Python scripts, as
does everything after "--". Environment: PYTHON (python3).

examples:
  bash scripts/reproduce_imagenet.sh --dataset_path /data/ood --device cuda:0 --workers 16
  bash scripts/reproduce_imagenet.sh --dry-run
EOF
}

DATA=./data
OUT=.
MODEL=resnet50
CHECKPOINT=()
SEEDS=(1)
SCORES=(all)
OODS=(iNaturalist SUN Places Textures)
PROTOCOLS=(full sampled)
LEARNER_SEEDS=5
VERIFY=1
DRY=0
SCORE_ARGS=()
EVAL_ARGS=()
EXTRA=()

# shellcheck source=scripts/_args.sh
source "$(dirname "${BASH_SOURCE[0]}")/_args.sh"

while [ $# -gt 0 ]; do
  if launch_option "$@"; then shift 2; continue; fi
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --dataset_path) need_value "$@"; DATA=$2; shift 2 ;;
    --out) need_value "$@"; OUT=$2; shift 2 ;;
    --model) need_value "$@"; MODEL=$2; shift 2 ;;
    --checkpoint) need_value "$@"; CHECKPOINT=(--checkpoint "$2"); shift 2 ;;
    --seeds) take_list "$@"; SEEDS=("${LIST[@]}"); shift $((${#LIST[@]} + 1)) ;;
    --scores) take_list "$@"; SCORES=("${LIST[@]}"); shift $((${#LIST[@]} + 1)) ;;
    --ood) take_list "$@"; OODS=("${LIST[@]}"); shift $((${#LIST[@]} + 1)) ;;
    --protocols) take_list "$@"; PROTOCOLS=("${LIST[@]}"); shift $((${#LIST[@]} + 1)) ;;
    --learner-seeds|--learner_seeds) need_value "$@"; LEARNER_SEEDS=$2; shift 2 ;;
    --no-verify|--no_verify) VERIFY=0; shift ;;
    --dry-run|--dry_run) DRY=1; shift ;;
    --score-args|--score_args) [ $# -ge 2 ] || die "$1 needs a value"; read -r -a SCORE_ARGS <<< "$2"; shift 2 ;;
    --eval-args|--eval_args) [ $# -ge 2 ] || die "$1 needs a value"; read -r -a EVAL_ARGS <<< "$2"; shift 2 ;;
    --seed|--dataset|--stored_pattern_dir|--results_dir|--protocol|--score)
      die "$1 is set by this script for each step; use --seeds, --out, --protocols or --scores" ;;
    --) shift; EXTRA+=("$@"); break ;;
    *) EXTRA+=("$1"); shift ;;
  esac
done
for k in "${SEEDS[@]}"; do [[ "$k" =~ ^[0-9]+$ ]] || die "--seeds takes integers, not '$k'"; done
for p in "${PROTOCOLS[@]}"; do [[ "$p" =~ ^(full|sampled|paper)$ ]] || die "--protocols: full, sampled or paper, not '$p'"; done
[[ "$LEARNER_SEEDS" =~ ^[1-9][0-9]*$ ]] || die "--learner-seeds must be a positive integer, not '$LEARNER_SEEDS'"
# RecLag's learner seeds: one fit each, pooled into mean ± std (the other scores ignore the flag)
read -r -a RECLAG_SEEDS <<< "--reclag_seed $(seq -s ' ' 1 "$LEARNER_SEEDS")"


# an NVIDIA GPU that this PyTorch cannot use stops the script here, before any work (--device cpu on purpose)
[ "$DRY" = 1 ] || [ -n "$LAUNCHER" ] || "$PYTHON" "$REPO/scripts/check_device.py" "${EXTRA[@]}"
launcher_ready
start=$(date +%s)
safe=${MODEL//[:\/]/_}
store="$OUT/stored_pattern"
common=(--dataset imagenet --model "$MODEL" "${CHECKPOINT[@]}" --dataset_path "$DATA")
if [ "$VERIFY" = 1 ]; then
  step "$PYTHON" "$REPO/verify_data.py" --dataset_path "$DATA" --for imagenet --ood "${OODS[@]}"
fi
start_plan "$OUT/jobs/imagenet"
RESULT_DIRS=()
for seed in "${SEEDS[@]}"; do
  job "imagenet-seed$seed-$safe"
  [ "$DRY" = 1 ] || [ -n "$LAUNCHER" ] || echo "== imagenet, $MODEL, seed $seed"
  step "$PYTHON" "$REPO/generate_stored_pattern_imagenet.py" "${common[@]}" --seed "$seed" \
    --stored_pattern_dir "$store" --score "${SCORES[@]}" --ood "${OODS[@]}" "${RECLAG_SEEDS[@]}" "${SCORE_ARGS[@]}" "${EXTRA[@]}"
  for protocol in "${PROTOCOLS[@]}"; do
    step "$PYTHON" "$REPO/test_score_ood_detection_imagenet.py" "${common[@]}" --seed "$seed" \
      --stored_pattern_dir "$store" --protocol "$protocol" --score "${SCORES[@]}" --ood "${OODS[@]}" \
      --results_dir "$OUT/results/imagenet/seed$seed/$safe/$protocol" "${RECLAG_SEEDS[@]}" "${SCORE_ARGS[@]}" \
      "${EVAL_ARGS[@]}" "${EXTRA[@]}"
  done
  RESULT_DIRS+=("$OUT/results/imagenet/seed$seed/$safe")
done
job aggregate
step "$PYTHON" "$REPO/aggregate_results.py" "${RESULT_DIRS[@]}" --out "$OUT/results/imagenet/aggregate"
if [ -n "$LAUNCHER" ]; then launch; exit; fi
[ "$DRY" = 1 ] || echo "imagenet finished in $(( $(date +%s) - start )) s; tables in $OUT/results/imagenet/aggregate/"
