#!/usr/bin/env bash
# The whole pipeline on real data on a laptop CPU, offline: train a small CNN on Fashion-MNIST, extract
# the features once, fit the stored patterns, and score the paper's six scores (MSP, Energy, ReAct, HE,
# SHE, RecLag) against OOD sets of real images that ship inside Python packages (handwritten digits,
# photo crops, faces) and two noise sets, then every registered score from the same cache. Prints the
# tables and writes results/fashionmnist/<model>/ (results.{json,csv,md,tex}, scores.npz, plots/) and
# results/fashionmnist/<model>/extended/. Another EPOCHS or SUBSET than the defaults is another run with
# its own checkpoint, caches and results, named after it (checkpoints/fashionmnist/<model>_epochs1_subset600.pt,
# stored_pattern_epochs1_subset600/, results/fashionmnist/<model>_epochs1_subset600/): a quick run neither
# blocks the full one (a checkpoint resumes only with its own settings) nor mixes its rows with it.
#
#   bash scripts/demo.sh                     # the full demo (about 6 minutes on 2 CPU cores)
#   EPOCHS=1 SUBSET=600 bash scripts/demo.sh # a quick run on fewer images (its backbone is near chance)
#   MODEL=timm:resnet10t bash scripts/demo.sh --resize_val 28   # another backbone, e.g. one of timm's
#
# Environment: DATA (data root, default ./data), OUT (output root, default .), MODEL (cnn), EPOCHS (2),
# SUBSET (0: all images), PYTHON (python3), DEVICE (default: cuda if available). Extra arguments go to
# every script.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON=${PYTHON:-python3}
DATA=${DATA:-./data}
OUT=${OUT:-.}
FULL_EPOCHS=2 FULL_SUBSET=0  # the full demo's settings
EPOCHS=${EPOCHS:-$FULL_EPOCHS}
SUBSET=${SUBSET:-$FULL_SUBSET}
MODEL=${MODEL:-cnn}
NAME=${MODEL//[^A-Za-z0-9_.-]/_}  # the folder name of its checkpoint and results (tv:resnet50 -> tv_resnet50)
# the run's settings in the names of its checkpoint, caches and results, unless they are the full demo's
TAG=""
if [ "$EPOCHS" != "$FULL_EPOCHS" ] || [ "$SUBSET" != "$FULL_SUBSET" ]; then
  TAG="_epochs${EPOCHS}_subset${SUBSET}"
  TAG=${TAG//[^A-Za-z0-9_.-]/_}
fi

# Python packages (the locked versions of requirements-lock.txt), unless they are already importable.
if ! "$PYTHON" -c "import torch, torchvision, sklearn, skimage, tqdm, matplotlib" 2>/dev/null; then
  "$PYTHON" -m pip install -q -r "$REPO/requirements-lock.txt"
fi

# Fashion-MNIST: torchvision's folder under $DATA, else Debian's package (installed here when apt-get
# can), else torchvision's download.
DOWNLOAD=()
if [ ! -f "$DATA/FashionMNIST/raw/train-images-idx3-ubyte" ] && [ ! -d /usr/share/datasets/fashion-mnist ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "installing Debian's dataset-fashion-mnist"
    apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; } \
      || DOWNLOAD=(--download)
  else
    DOWNLOAD=(--download)
  fi
fi

COMMON=(--dataset fashionmnist --model "$MODEL" --dataset_path "$DATA" --subset "$SUBSET"
        --checkpoint "$OUT/checkpoints/fashionmnist/$NAME$TAG.pt" --workers 2 ${DEVICE:+--device "$DEVICE"})
OODS=(Digits Photos Faces GaussianNoise UniformNoise)
start=$(date +%s)
t=$start
lap() { local now; now=$(date +%s); LAPS+="$1 $(( now - t )) s, "; t=$now; }
LAPS=""
"$PYTHON" "$REPO/train_model.py" "${COMMON[@]}" "${DOWNLOAD[@]}" --epochs "$EPOCHS" --lr 0.1 --augment flip \
  --batch_size 128 --resume "$@"
lap training
"$PYTHON" "$REPO/generate_stored_pattern.py" "${COMMON[@]}" --ood "${OODS[@]}" --score extended \
  --stored_pattern_dir "$OUT/stored_pattern$TAG" --batch_size 500 "$@"
lap "features and stored patterns"
"$PYTHON" "$REPO/test_score_ood_detection.py" "${COMMON[@]}" --ood "${OODS[@]}" --score all \
  --stored_pattern_dir "$OUT/stored_pattern$TAG" --results_dir "$OUT/results/fashionmnist/$NAME$TAG" --batch_size 500 \
  --save_scores --plot "$@"
# the same cached features, every registered score (the paper's six and the later post-hoc scores)
"$PYTHON" "$REPO/test_score_ood_detection.py" "${COMMON[@]}" --ood "${OODS[@]}" --score extended \
  --stored_pattern_dir "$OUT/stored_pattern$TAG" --results_dir "$OUT/results/fashionmnist/$NAME$TAG/extended" \
  --batch_size 500 "$@"
lap scoring
echo "demo finished in $(( $(date +%s) - start )) s (${LAPS%, })"
