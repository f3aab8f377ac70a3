#!/usr/bin/env bash
# bf16-mixed vs fp32 quality parity (issue 15, point 1): the shipped recipes, 3 seeds each, ml-100k and Beauty,
# model and epoch chosen on validation (best.ckpt), test NDCG@10 compared with the seed spread. Resumable.
#   experiments/speed/parity.sh            # ~70 min on 2 cores (Beauty fp32 ~8 min a seed, bf16 ~5)
#   then: .venv/bin/python experiments/speed/parity.py → experiments/speed/parity.md
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
export DIVREC_DATA_MIRROR=${DIVREC_DATA_MIRROR:-$(cd ../shared/data && pwd)}
out=${OUT:-outputs/speed/parity}
mkdir -p "$out"
for recipe in sasrec_ml100k sasrec_beauty; do
  for seed in ${SEEDS:-0 1 2}; do
    for precision in bf16-mixed 32-true; do
      dir="$out/$recipe/$precision/seed$seed"
      [[ -f "$dir/metrics.json" ]] && { echo "skip $dir"; continue; }
      mkdir -p "$(dirname "$dir")"
      echo "run  $dir"
      flock /tmp/divrec-timing.lock .venv/bin/divrec train experiment=$recipe seed=$seed trainer.precision=$precision \
        metrics.diversity=false callbacks.progress_bar.refresh_rate=0 task_name=parity hydra.run.dir="$dir" \
        > "$dir.log" 2>&1 || echo "FAIL $dir (see $dir.log)"
    done
  done
done
.venv/bin/python experiments/speed/parity.py --runs "$out" --out experiments/speed/parity.md
