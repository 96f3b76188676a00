#!/usr/bin/env bash
# Issue "model, training": Multi-FusNet vs the Table 6 row-1 baseline on the CUB subset,
# CPU only, same budget, efficientnet_lite0 with its bundled ImageNet weights.
# Frozen-backbone mode (features cached once, 224 px test transform, no augmentation),
# head widths reduced for 2 CPU cores (level block 32 -> 128 instead of 512 -> 1024,
# transformer width 64) and 6 epochs: the paper's widths cost ~25 min per epoch here.
# Results: ${OUT_DIR:-results/cub100-cpu}/{full,baseline}/bits{12,24,32,48}/ (EPOCHS=20 OUT_DIR=... for longer)
set -euo pipefail
cd "$(dirname "$0")/.."
root="${CUB_ROOT:-../shared/data/cub100}"
cache="${FUSNET_CACHE:-$HOME/.cache/fusnet}"
common=(--dataset cub200 --root "$root" --backbone efficientnet_lite0 --pretrained default
        --image-size 224 --mode frozen --block-mid 32 --level-dim 128 --transformer-dim 64
        --epochs "${EPOCHS:-6}" --batch-size 32 --lr 0.05 --select val --eval-every 2 --seed 0
        --bits 12 24 32 48 --cache-dir "$cache")
${FUSNET:-.venv/bin/fusnet} train "${common[@]}" --no-cascade --no-fusion --no-transformer \
    --output-dir "${OUT_DIR:-results/cub100-cpu}/baseline" "$@"
${FUSNET:-.venv/bin/fusnet} train "${common[@]}" --output-dir "${OUT_DIR:-results/cub100-cpu}/full" "$@"
