#!/usr/bin/env bash
# The reference's scripts/generate_SHEandHE_feature.sh: extract the features of the trained backbones
# once and fit the stored patterns of SHE and HE (and ReAct) for CIFAR-10 and CIFAR-100 with ResNet18,
# ResNet34 and WRN-40-2. Extra arguments go to every call, e.g.
#   bash scripts/generate_SHEandHE_feature.sh --dataset_path /data/ood --device cuda:0
# Outputs go to ./checkpoints, ./stored_pattern of the current directory, as with the Python scripts.
# Override the sets with DATASETS="cifar10" MODELS="wrn" bash scripts/generate_SHEandHE_feature.sh
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON=${PYTHON:-python3}
for dataset in ${DATASETS:-cifar10 cifar100}; do
  for model in ${MODELS:-resnet18 resnet34 wrn}; do
    echo "== $dataset / $model"
    "$PYTHON" "$REPO/generate_stored_pattern.py" --dataset "$dataset" --model "$model" --score HE SHE ReAct "$@"
  done
done
