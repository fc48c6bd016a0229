#!/usr/bin/env bash
# One check for a GPU machine (about 5 minutes on one H100): trains ResNet18 at 112x112 for a fixed
# number of steps in the reference setting (fp32, contiguous) and in ours (bf16 + channels-last, and
# + torch.compile), extracts features through the pipeline and the bare forward, times HE scoring,
# and writes img/s for each to a JSON file (default results/gpu_check.json).
#   bash scripts/gpu_check.sh [PATH.json]
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
OUT=${1:-results/gpu_check.json}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout 480 "${PYTHON:-python3}" "$REPO/scripts/benchmark.py" --device cuda --json "$OUT"
