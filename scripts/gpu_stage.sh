# Sourced by the lent-GPU drivers (scripts/baselines_gpu.sh, scripts/regimes_gpu.sh), first
# argument "stage" or "run": merges the carried parts .gpu/p*/ into /tmp/fusnet-stage (the
# machine keeps /tmp while warm) and, for "stage", stops there; for "run" it puts the photos
# where the cpu profile expects them (../shared/data), sets the environment and $out, and
# writes the machine description to $out/machine.txt.
set -uo pipefail
stage=/tmp/fusnet-stage
mkdir -p "$stage"
for part in .gpu/p*; do [ -d "$part" ] && cp -r "$part"/. "$stage"/; done
du -sh "$stage"
[ "${1:-stage}" = stage ] && exit 0
for dataset in "$stage"/data/*; do  # never over a folder that is already there
  [ -e "../shared/data/$(basename "$dataset")" ] || { mkdir -p ../shared/data && cp -r "$dataset" ../shared/data/; }
done
export PYTHONPATH="$PWD:$stage/site" PYTHONUNBUFFERED=1 FUSNET_CACHE_DIR=/tmp/fusnet-cache
out="${OUT:-/tmp/fusnet-out}"; mkdir -p "$out"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  python3 -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__)"
  nproc; } | tee "$out/machine.txt"
