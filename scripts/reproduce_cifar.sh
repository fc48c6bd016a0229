#!/usr/bin/env bash
# Reproduce the paper's CIFAR tables for one ID data set: for every seed and backbone, train (or resume)
# the backbone, extract the features and fit the stored patterns once, score the paper's six scores
# (MSP, Energy, ReAct, HE, SHE, RecLag; --scores extended for every registered one) against the nine OOD sets in the full and the sampled protocol, then aggregate the seeds
# into mean ± std tables (Markdown, CSV, LaTeX) and a figure.
#
#   bash scripts/reproduce_cifar.sh DATASET [options] [-- options for every Python script]
#   bash scripts/reproduce_cifar10.sh [options]   (= reproduce_cifar.sh cifar10)
#   bash scripts/reproduce_cifar100.sh [options]  (= reproduce_cifar.sh cifar100)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON=${PYTHON:-python3}

usage() {
  cat <<EOF
usage: $(basename "$0") DATASET [options] [-- extra options for all three Python scripts]

DATASET is cifar10 or cifar100 (reproduce_cifar10.sh / reproduce_cifar100.sh set it for you).

For each seed k and backbone M it runs, from the current directory (outputs under --out):
  verify_data.py                  the needed data sets are complete (once, before anything else)
  train_model.py --resume         OUT/checkpoints/DATASET/seed<k>/M.pt   (a finished checkpoint is kept)
  generate_stored_pattern.py      OUT/stored_pattern/seed<k>/DATASET/M/  (features and stored patterns)
  test_score_ood_detection.py     OUT/results/DATASET/seed<k>/M/<protocol>/results.{json,md,csv,tex}
                                  (once per protocol, every score against every OOD set)
  aggregate_results.py            OUT/results/DATASET/aggregate/  mean ± std over the seeds:
                                  aggregate.{md,csv,tex,json,png}, tables/DATASET_M_<protocol>.*

options (defaults in brackets):
  --dataset_path DIR   data root with every data set, see README "Data" [./data]
  --out DIR            where checkpoints/, stored_pattern/ and results/ go [.]
  --models M ...       backbones [resnet18 resnet34 wrn]
  --seeds K ...        seeds; each one trains and scores its own backbone [1]
  --epochs N           training epochs [100]
  --scores S ...       scores: names, all (the paper's six) or extended (every registered score) [all]
  --ood O ...          OOD sets [SVHN LSUN_C LSUN_R iSUN Places Textures TinyImageNet SUN iNaturalist]
  --protocols P ...    evaluation protocols: full, sampled, paper (each score as its published row
                       was produced) [full sampled]
  --learner-seeds N    RecLag is fitted with learner seeds 1..N and reported as mean ± std over them
                       (on top of the backbone seeds) [5]
  --download           let torchvision fetch the ID set and SVHN when missing (verify_data.py --download fetches every set)
  --no-verify          skip the data check (verify_data.py) at the start
  --train-args "..."   extra options for train_model.py only (e.g. "--lr 0.1")
  --score-args "..."   extra options for generate_stored_pattern.py and test_score_ood_detection.py
                       (score hyper-parameters, e.g. "--react_percentile 98 --reclag_init kmeans")
  --eval-args "..."    extra options for test_score_ood_detection.py only (e.g. "--fpr_variant strict --plot")
  --dry-run            print the commands, one per line (with --launcher: the jobs), and run nothing
  --launcher L         slurm or local: each (seed, backbone) chain is one job submitted through submitit
                       (pip install submitit), the aggregation a job that waits for all of them; local runs
                       the jobs one after another on this machine. A job submitted again skips its finished
                       steps. Logs and markers in OUT/jobs/DATASET/
  --partition P, --account A, --gpus N [1], --cpus N, --time MINUTES [1440]
                       SLURM resources per job;  --retries N [1]: local resubmissions of a failed job
  -h, --help           this help
Options of this script alone are dashed (--learner-seeds); with underscores they work too (--learner_seeds).
Any other option (e.g. --device cuda:0 --workers 8 --batch_size 256) goes to all three Python scripts,
as does everything after "--". The quoted *-args strings are split on white space.
Environment: PYTHON (python3).

examples:
  bash scripts/reproduce_cifar10.sh --dataset_path /data/ood --device cuda:0 --workers 8
  bash scripts/reproduce_cifar100.sh --dataset_path /data/ood --seeds 1 2 3 --models wrn
  bash scripts/reproduce_cifar10.sh --dry-run --seeds 1 2 3 | grep test_score
EOF
}

case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  cifar10|cifar100) DATASET=$1; shift ;;
  ""|-*) echo "$(basename "$0"): error: give the data set first (cifar10 or cifar100); --help for usage" >&2; exit 2 ;;
  *) echo "$(basename "$0"): error: unknown data set '$1' (cifar10 or cifar100); --help for usage" >&2; exit 2 ;;
esac

DATA=./data
OUT=.
MODELS=(resnet18 resnet34 wrn)
SEEDS=(1)
EPOCHS=100
SCORES=(all)
OODS=(SVHN LSUN_C LSUN_R iSUN Places Textures TinyImageNet SUN iNaturalist)
PROTOCOLS=(full sampled)
LEARNER_SEEDS=5
DOWNLOAD=()
VERIFY=1
DRY=0
TRAIN_ARGS=()
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
    --epochs) need_value "$@"; EPOCHS=$2; shift 2 ;;
    --models) take_list "$@"; MODELS=("${LIST[@]}"); shift $((${#LIST[@]} + 1)) ;;
    --seeds) take_list "$@"; SEEDS=("${LIST[@]}"); shift $((${#LIST[@]} + 1)) ;;
    --scores) take_list "$@"; SCORES=("${LIST[@]}"); shift $((${#LIST[@]} + 1)) ;;
    --ood) take_list "$@"; OODS=("${LIST[@]}"); shift $((${#LIST[@]} + 1)) ;;
    --protocols) take_list "$@"; PROTOCOLS=("${LIST[@]}"); shift $((${#LIST[@]} + 1)) ;;
    --learner-seeds|--learner_seeds) need_value "$@"; LEARNER_SEEDS=$2; shift 2 ;;
    --download) DOWNLOAD=(--download); shift ;;
    --no-verify|--no_verify) VERIFY=0; shift ;;
    --dry-run|--dry_run) DRY=1; shift ;;
    --train-args|--train_args) [ $# -ge 2 ] || die "$1 needs a value"; read -r -a TRAIN_ARGS <<< "$2"; shift 2 ;;
    --score-args|--score_args) [ $# -ge 2 ] || die "$1 needs a value"; read -r -a SCORE_ARGS <<< "$2"; shift 2 ;;
    --eval-args|--eval_args) [ $# -ge 2 ] || die "$1 needs a value"; read -r -a EVAL_ARGS <<< "$2"; shift 2 ;;
    --seed|--model|--dataset|--checkpoint|--stored_pattern_dir|--results_dir|--protocol|--score)
      die "$1 is set by this script for each step; use --seeds, --models, DATASET, --out, --protocols or --scores" ;;
    --) shift; EXTRA+=("$@"); break ;;
    *) EXTRA+=("$1"); shift ;;
  esac
done
[[ "$EPOCHS" =~ ^[1-9][0-9]*$ ]] || die "--epochs must be a positive integer, not '$EPOCHS'"
for k in "${SEEDS[@]}"; do [[ "$k" =~ ^[0-9]+$ ]] || die "--seeds takes integers, not '$k'"; done
for p in "${PROTOCOLS[@]}"; do [[ "$p" =~ ^(full|sampled|paper)$ ]] || die "--protocols: full, sampled or paper, not '$p'"; done
[[ "$LEARNER_SEEDS" =~ ^[1-9][0-9]*$ ]] || die "--learner-seeds must be a positive integer, not '$LEARNER_SEEDS'"
# RecLag's learner seeds: one fit each, pooled into mean ± std (the other scores ignore the flag)
read -r -a RECLAG_SEEDS <<< "--reclag_seed $(seq -s ' ' 1 "$LEARNER_SEEDS")"


# an NVIDIA GPU that this PyTorch cannot use stops the script here, before any work (--device cpu on purpose)
[ "$DRY" = 1 ] || [ -n "$LAUNCHER" ] || "$PYTHON" "$REPO/scripts/check_device.py" "${EXTRA[@]}"
launcher_ready
start=$(date +%s)
if [ "$VERIFY" = 1 ]; then
  step "$PYTHON" "$REPO/verify_data.py" --dataset_path "$DATA" --for "$DATASET" --ood "${OODS[@]}" "${DOWNLOAD[@]}"
fi
start_plan "$OUT/jobs/$DATASET"
for seed in "${SEEDS[@]}"; do
  for model in "${MODELS[@]}"; do
    safe=${model//[:\/]/_}
    ckpt="$OUT/checkpoints/$DATASET/seed$seed/$safe.pt"
    store="$OUT/stored_pattern/seed$seed"
    common=(--dataset "$DATASET" --model "$model" --dataset_path "$DATA" --seed "$seed" --checkpoint "$ckpt")
    job "$DATASET-seed$seed-$safe"
    [ "$DRY" = 1 ] || [ -n "$LAUNCHER" ] || echo "== $DATASET, $model, seed $seed"
    step "$PYTHON" "$REPO/train_model.py" "${common[@]}" --epochs "$EPOCHS" --resume "${DOWNLOAD[@]}" \
      "${TRAIN_ARGS[@]}" "${EXTRA[@]}"
    step "$PYTHON" "$REPO/generate_stored_pattern.py" "${common[@]}" --stored_pattern_dir "$store" \
      --score "${SCORES[@]}" --ood "${OODS[@]}" "${DOWNLOAD[@]}" "${RECLAG_SEEDS[@]}" "${SCORE_ARGS[@]}" "${EXTRA[@]}"
    for protocol in "${PROTOCOLS[@]}"; do
      step "$PYTHON" "$REPO/test_score_ood_detection.py" "${common[@]}" --stored_pattern_dir "$store" \
        --protocol "$protocol" --score "${SCORES[@]}" --ood "${OODS[@]}" \
        --results_dir "$OUT/results/$DATASET/seed$seed/$safe/$protocol" "${RECLAG_SEEDS[@]}" "${SCORE_ARGS[@]}" \
        "${EVAL_ARGS[@]}" "${EXTRA[@]}"
    done
  done
done
RESULT_DIRS=()
for seed in "${SEEDS[@]}"; do
  for model in "${MODELS[@]}"; do RESULT_DIRS+=("$OUT/results/$DATASET/seed$seed/${model//[:\/]/_}"); done
done
job aggregate
step "$PYTHON" "$REPO/aggregate_results.py" "${RESULT_DIRS[@]}" --out "$OUT/results/$DATASET/aggregate"
if [ -n "$LAUNCHER" ]; then launch; exit; fi
[ "$DRY" = 1 ] || echo "$DATASET finished in $(( $(date +%s) - start )) s; tables in $OUT/results/$DATASET/aggregate/"
