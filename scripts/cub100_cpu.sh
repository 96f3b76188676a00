#!/usr/bin/env bash
# Issue "model, training": Multi-FusNet vs the Table 6 row-1 baseline on the CUB subset, CPU
# only, same budget: the cpu profile's recipe (fusnet.experiments.recipes.RECIPES["cpu"]: frozen
# efficientnet_lite0 with its bundled ImageNet weights at 224 px, head widths 32/128/64, SGD
# lr 0.05, batch 32, 12 epochs, validation-split selection, seed 0), both models at 12, 24,
# 32 and 48 bits. The runs are built from the profile by scripts/regime_runs.py (its "frozen"
# arm is the recipe itself), so they are the notebooks' runs, shared and read back once
# finished: results/runs/cpu/cub200/<tag>-<bits>b-<hash>/ (notebook 01 trains the full model
# at every length, notebook 03 the baseline at 12 and 48). One RESULT line per run.
#   bash scripts/cub100_cpu.sh                              # the profile's 12 epochs
#   bash scripts/cub100_cpu.sh --set optim.epochs=20        # another budget: runs of their own
# Arguments go to regime_runs.py (--seeds 0 1, --set KEY=JSON ..., --threads N).
# results/cub100-cpu*/ came from this script's first form (its own flags; 6 and 20 epochs,
# validation every 2): their READMEs name the commits.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-.venv/bin/python}" scripts/regime_runs.py --profile cpu --dataset cub200 \
    --arms frozen --configurations baseline full --bits 12 24 32 48 "$@"
