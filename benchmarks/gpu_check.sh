#!/usr/bin/env bash
# One short GPU check (issue: performance). Run on a lent GPU machine after
# `bash benchmarks/prepare_gpu_carry.sh` here, carrying .gpu/ along:
#   the CUB subset (first 50 classes of ../shared/data/cub100) and the
#   efficientnet-lite0 weights package, since that machine has no network.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-results/gpu}"
mkdir -p "$out"
export PYTHONPATH="$PWD:$PWD/.gpu/site" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/nvidia-smi.txt"
python3 -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__)" | tee -a "$out/nvidia-smi.txt"
python3 benchmarks/gpu_check.py --cub-root .gpu/cub --out "$out" "$@" 2>&1 | tee "$out/gpu_check.log"
