#!/usr/bin/env bash
# Learning rate of each baseline for the cpu profile's notebook 09, chosen on the CUB
# subset's VALIDATION split (never the test split): every (method, lr) run as notebook 09
# would run it under the cpu profile (its recipe, fusnet.experiments.recipes.RECIPES["cpu"],
# and each method's changes, fusnet.experiments.profiles.CPU_METHOD_CHANGES: DPSH's plain
# SGD, the asymmetric methods' outer iterations), with 6 epochs instead of 12, at 48 bits,
# seed 0, one run after another in this process. Prints a markdown table of the validation
# mAP per epoch and the best epoch's value (scripts/baselines_parallel.py --sweep-only).
# The runs go where the profile's runs do (results/runs/cpu/cub200/<method>-48b-<hash>/, their
# own folders: 6 epochs), the report to results/09_baselines/cpu/lr_sweep.json.
#
#   bash scripts/baseline_lr_sweep.sh
#   METHODS="dpsh" LRS="0.001 0.01" bash scripts/baseline_lr_sweep.sh --output-root /tmp/sweep
# Arguments go to baselines_parallel.py (--output-root DIR, --workers N --threads T ...).
# results/09_baselines/cpu/lr_sweep/ came from this script's first form (its own flags, the
# same configs; runs in <method>-<lr>/bits48/): lr_sweep.md there names it.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC2086  # METHODS and LRS are lists
exec "${PYTHON:-.venv/bin/python}" scripts/baselines_parallel.py --profile cpu --sweep-only \
    --methods ${METHODS:-dpsh hashnet adsh semicon exchnet} --lrs ${LRS:-0.001 0.01 0.05} \
    --epochs 6 --bits 48 --device cpu --workers 0 "$@"
