#!/usr/bin/env bash
# Quality of SASRec (64 hidden, 2 layers, 2 heads, max length 50, full-softmax CE) on ml-100k and Beauty:
# leave-one-out, full ranking over all items, the user's history excluded; three seeds each.
#   experiments/quality/run.sh                # ≈ 25 min on 2 CPU cores → experiments/quality/results.md
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
export DIVREC_DATA_MIRROR=${DIVREC_DATA_MIRROR:-$(cd ../shared/data && pwd)}
for experiment in sasrec_ml100k sasrec_beauty; do
  .venv/bin/divrec train -m experiment=$experiment seed=0,1,2 task_name=quality-$experiment \
    callbacks.progress_bar.refresh_rate=0
done
.venv/bin/python experiments/quality/summarize.py outputs/quality-sasrec_ml100k/multiruns outputs/quality-sasrec_beauty/multiruns \
  --out experiments/quality/results.md
