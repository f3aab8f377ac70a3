#!/usr/bin/env bash
# Size-class recipes (src/divrec/recipes.py): SASRec with recipe=short vs recipe=long, seed 0, on the dataset whose
# class is nearest the threshold (Last.fm, median 17 training items per user) and on one the classes were not
# chosen on (Amazon Musical Instruments, median 4); model and epoch chosen on validation only. Resumable.
#   experiments/recipes/run.sh && .venv/bin/python experiments/recipes/summarize.py
set -uo pipefail
cd "$(dirname "$0")/../.."
export DIVREC_DATA_MIRROR=${DIVREC_DATA_MIRROR:-$(cd ../shared/data && pwd)}
out=${OUT:-outputs/recipes}
for data in ${DATASETS:-lastfm musical-instruments}; do
  for recipe in short long; do
    dir=$out/$data/$recipe
    [[ -f $dir/metrics.json ]] && { echo "skip $dir"; continue; }
    mkdir -p "$(dirname "$dir")"
    flock /tmp/divrec-timing.lock .venv/bin/divrec train data="$data" recipe=$recipe seed=${SEED:-0} \
      metrics.diversity=false callbacks.progress_bar.refresh_rate=0 hydra.run.dir="$dir" > "$dir.log" 2>&1 \
      || echo "FAIL $dir (see $dir.log)"
  done
done
