#!/usr/bin/env bash
# The feedback update loop on MovieLens-100K: SASRec trained on the first 70% of interactions (by time), then 4 windows
# of the remaining 30%; per window: no update vs incremental fine-tuning (3 epochs on the window's users) vs a full
# retrain (30 epochs on everything so far). Writes the table, PNG and TensorBoard curves into the run folder and
# copies the table and plot here.
#   experiments/feedback_loop/run.sh            # ≈ 10 min on 2 idle CPU cores
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
export DIVREC_DATA_MIRROR=${DIVREC_DATA_MIRROR:-$(cd ../shared/data && pwd)}
divrec=${DIVREC:-.venv/bin/divrec}
run=outputs/feedback-ml100k/$(date +%Y-%m-%d_%H-%M-%S)
$divrec feedback data=ml-100k seed=0 hydra.run.dir="$run"
cp "$run/feedback.md" "$run/feedback.csv" "$run/feedback.png" experiments/feedback_loop/
echo "tensorboard --logdir $run/tensorboard   # test/ndcg@10 per window, one curve per strategy"
