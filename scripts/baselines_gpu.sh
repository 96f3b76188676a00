#!/usr/bin/env bash
# Notebook 09's SEMICON and ExchNet runs on a lent GPU machine (no network, 64 MiB a call).
#
# Here, once:  python scripts/device_carry.py --out .gpu --part-mb 45.5 site=<weights pkg> \
#                  site=<its dist-info> data=../shared/data/cub100 data=../shared/data/flowers17
# There, one call per part (carry .gpu/p1, then .gpu/p2, ...; the machine keeps /tmp between
# calls while it is warm):   bash scripts/baselines_gpu.sh stage
# and with the last part:    FUSNET_GIT_COMMIT=<commit> bash scripts/baselines_gpu.sh run [args]
# `run` puts the photos where the cpu profile expects them (../shared/data), then runs
# scripts/baselines_parallel.py (lr sweep on the validation split, then the grid) and packs
# the runs' config/metrics/manifest (no weights, no codes) into $OUT/runs.tar.gz.
cd "$(dirname "$0")/.."
source scripts/gpu_stage.sh "${1:-stage}"
shift
root=/tmp/fusnet-results
timeout "${LIMIT_S:-540}" python3 scripts/baselines_parallel.py --output-root "$root" \
  --device "${DEVICE:-cuda}" "$@" 2>&1 | grep -vE "it/s|s/it|attention trunk" | tee "$out/baselines_gpu.log"
tar -czf "$out/runs.tar.gz" -C "$root" --exclude=model.pt --exclude=codes.npz \
  --exclude=checkpoints --exclude=cache .
ls -la "$out"
