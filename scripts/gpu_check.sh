#!/usr/bin/env bash
# The prepared check for a GPU machine (about 9 minutes on one H100 or H200): throughput side by side, the input
# pipeline, Fashion-MNIST at the paper's resolutions through the project's scripts, ImageNet-scale
# scoring, the CPU demo's training step and the GPU-hours of the reproduction grid (scripts/gpu_check.py).
#   bash scripts/gpu_check.sh [OUT_DIR] [extra options of gpu_check.py]
# Data: Fashion-MNIST under $DATA (default ./data) as FashionMNIST/raw/ idx files, or its .gz files in
# $FASHION_MNIST_GZ (Debian's /usr/share/datasets/fashion-mnist layout), unpacked on first use.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
OUT=${1:-results/gpu_check}
shift || true
DATA=${DATA:-./data}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"${PYTHON:-python3}" "$REPO/scripts/gpu_check.py" --out "$OUT" --data "$DATA" "$@"
