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
set -uo pipefail
cd "$(dirname "$0")/.."
stage=/tmp/fusnet-stage
mkdir -p "$stage"
for part in .gpu/p*; do [ -d "$part" ] && cp -r "$part"/. "$stage"/; done
du -sh "$stage"
[ "${1:-stage}" = stage ] && exit 0
shift
for dataset in "$stage"/data/*; do  # never over a folder that is already there
  [ -e "../shared/data/$(basename "$dataset")" ] || { mkdir -p ../shared/data && cp -r "$dataset" ../shared/data/; }
done
export PYTHONPATH="$PWD:$stage/site" PYTHONUNBUFFERED=1 FUSNET_CACHE_DIR=/tmp/fusnet-cache
out="${OUT:-/tmp/fusnet-out}"; root=/tmp/fusnet-results; mkdir -p "$out"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  python3 -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__)"; } \
  | tee "$out/machine.txt"
timeout "${LIMIT_S:-540}" python3 scripts/baselines_parallel.py --output-root "$root" \
  --device "${DEVICE:-cuda}" "$@" 2>&1 | grep -vE "it/s|s/it|attention trunk" | tee "$out/baselines_gpu.log"
tar -czf "$out/runs.tar.gz" -C "$root" --exclude=model.pt --exclude=codes.npz \
  --exclude=checkpoints --exclude=cache .
ls -la "$out"
