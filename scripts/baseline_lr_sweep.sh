#!/usr/bin/env bash
# Learning rate of each baseline for the cpu profile's notebook 09, chosen on the CUB
# subset's VALIDATION split (never the test split): 6 epochs, 48 bits, seed 0, frozen
# efficientnet_lite0 at 224 px, batch 32, one run per (method, lr). Prints a markdown
# table of the validation mAP per epoch and the best epoch's value.
#
#   bash scripts/baseline_lr_sweep.sh                  # into results/09_baselines/cpu/lr_sweep
#   OUT_DIR=/tmp/sweep METHODS="dpsh" LRS="0.001 0.01" bash scripts/baseline_lr_sweep.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT_DIR:-results/09_baselines/cpu/lr_sweep}"
cache="${FUSNET_CACHE:-results/cache}"
common=(--dataset cub200 --root "${CUB_ROOT:-../shared/data/cub100}" --backbone efficientnet_lite0
        --pretrained default --image-size 224 --mode frozen --epochs 6 --batch-size 32
        --block-mid 32 --level-dim 128 --transformer-dim 64
        --select val --eval-every 1 --seed 0 --bits 48 --cache-dir "$cache")
for method in ${METHODS:-dpsh hashnet adsh semicon exchnet}; do
  for lr in ${LRS:-0.001 0.01 0.05}; do
    run="$out/$method-$lr"
    [ -f "$run/bits48/metrics.json" ] && continue
    case "$method" in  # each method's own options (flags of another method are refused)
      dpsh) extra=(--momentum 0) ;;  # DPSH diverges with momentum (fusnet.baselines.dpsh)
      adsh) extra=(--adsh-inner-epochs 3) ;;
      semicon) extra=(--semicon-inner-epochs 3 --semicon-num-samples 500) ;;
      exchnet) extra=(--exchnet-inner-epochs 3 --exchnet-num-samples 500 --exchnet-align-start 2) ;;
      *) extra=() ;;
    esac
    ${FUSNET:-.venv/bin/fusnet} train "${common[@]}" --method "$method" --lr "$lr" "${extra[@]}" \
        --output-dir "$run"
  done
done
${PYTHON:-.venv/bin/python} - "$out" <<'PY'
import json, sys
from pathlib import Path

rows = []
for metrics in sorted(Path(sys.argv[1]).glob("*/bits48/metrics.json")):
    m = json.loads(metrics.read_text())
    lr = json.loads((metrics.parent / "config.json").read_text())["optim"]["lr"]
    val = [h["val_map"] for h in m["history"]]
    rows.append((m["method"], lr, max(val), val.index(max(val)) + 1, val))
print("| method | lr | best val mAP | at epoch | val mAP per epoch |\n|---|---:|---:|---:|---|")
for method, lr, best, epoch, val in sorted(rows):
    print(f"| {method} | {lr:g} | {best:.3f} | {epoch} | {' '.join(f'{v:.3f}' for v in val)} |")
PY
