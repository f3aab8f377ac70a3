#!/usr/bin/env bash
# Accuracy–diversity trade-off of one trained model under many re-ranker settings, without retraining:
# MMR over λ and DPP over the temperature, on ml-100k and Beauty (the seed-0 checkpoints of experiments/quality/).
#   experiments/diversity_tradeoff/run.sh      # ≈ 5 min on 2 CPU cores → results.md + front-<dataset>.png here
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
export DIVREC_DATA_MIRROR=${DIVREC_DATA_MIRROR:-$(cd ../shared/data && pwd)}
here=experiments/diversity_tradeoff
folders=()
for experiment in sasrec_ml100k sasrec_beauty; do
  ckpt=$(ls -d outputs/quality-$experiment/multiruns/*/0/checkpoints/best.ckpt | sort | tail -1)
  [ -f "$ckpt" ] || { echo "no checkpoint for $experiment: run experiments/quality/run.sh first" >&2; exit 1; }
  common=(ckpt_path="$ckpt" logger=none callbacks.progress_bar.refresh_rate=0)
  for sweep in "rerank=none" \
      "rerank=mmr rerank.lambda_=0.0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,0.95,1.0" \
      "rerank=dpp rerank.temperature=0.02,0.05,0.1,0.2,0.3,0.5,1.0,2.0"; do
    name=tradeoff-$experiment-${sweep%% *}; name=${name//=/-}
    # shellcheck disable=SC2086
    .venv/bin/divrec eval -m ${common[@]} $sweep task_name=$name hydra.sweep.dir=outputs/$name
    folders+=("outputs/$name")
  done
done
.venv/bin/python $here/report.py "${folders[@]}" --out $here
