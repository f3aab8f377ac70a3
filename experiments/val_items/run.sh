#!/usr/bin/env bash
# Does validating on the last 3 items per user (data.split.val_items=3) make validation track test better than
# classic leave-one-out (val_items=1)? SASRec on ml-100k, seeds 0 1 2, both settings; the two settings of a seed run
# side by side (1 CPU thread each, niced), then analyze.py re-scores every best checkpoint per validation row and
# writes results.json / results.md.
#   experiments/val_items/run.sh            # from the repository root; RUNS=outputs/val_items SEEDS="0 1 2"
set -euo pipefail
runs=${RUNS:-outputs/val_items}
python=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
q=(callbacks.progress_bar.refresh_rate=0)
for seed in ${SEEDS:-0 1 2}; do
  for k in 1 3; do
    if [[ ! -f "$runs/k${k}_s$seed/metrics.json" ]]; then
      nice -n 10 "$python" -m divrec train experiment=sasrec_ml100k seed="$seed" data.split.val_items="$k" "${q[@]}" \
        hydra.run.dir="$runs/k${k}_s$seed" > "$runs.k${k}_s$seed.log" 2>&1 &
    fi
  done
  wait
done
nice -n 10 "$python" experiments/val_items/analyze.py "$runs" --out experiments/val_items
