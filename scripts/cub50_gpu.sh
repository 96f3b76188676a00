#!/usr/bin/env bash
# GPU companion of scripts/cub100_cpu.sh: full training (backbone fine-tuned, augmentation on,
# the paper's head widths, 336 px, AMP) of Multi-FusNet and the Table 6 row-1 baseline under
# the same short budget, on the 50-class CUB subset that benchmarks/prepare_gpu_carry.sh
# writes to .gpu/ (the lent GPU machine has no network and a 64 MiB carry limit).
# Output: $OUT/cub50_gpu_runs.tar.gz (config, metrics, manifest, codes of each run) and the log.
# Kept as it ran for results/cub50-gpu/ (its flags, not a profile's recipe): no profile
# trains this way (EfficientNet-Lite0 fine-tuned end to end at 336 px for 5 epochs, one lr for
# backbone and head, last epoch selected), so taking a recipe would change what it computes.
# The GPU comparison built from the profiles is scripts/regimes_gpu.sh (regime_runs.py).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-results/cub50-gpu}"; runs=/tmp/cub50-gpu; mkdir -p "$out" "$runs"
export PYTHONPATH="$PWD:$PWD/.gpu/site" PYTHONUNBUFFERED=1
common=(--dataset cub200 --root .gpu/cub --backbone efficientnet_lite0 --pretrained default
        --image-size 336 --mode full --epochs "${EPOCHS:-5}" --batch-size 32 --lr 0.01
        --select last --seed 0 --num-workers 12 --eval-batch-size 128 --device cuda --amp)
for bits in 12 24 32 48; do
  python3 -m fusnet train "${common[@]}" --bits "$bits" --no-cascade --no-fusion --no-transformer \
      --output-dir "$runs/baseline" --resume || echo "baseline $bits failed"
  python3 -m fusnet train "${common[@]}" --bits "$bits" --output-dir "$runs/full" --resume \
      || echo "full $bits failed"
done 2>&1 | grep -vE "it/s|s/it" | tee "$out/cub50_gpu.log"
tar -czf "$out/cub50_gpu_runs.tar.gz" -C "$runs" --exclude='*.pt' --exclude='checkpoints' .
