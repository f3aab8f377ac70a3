#!/usr/bin/env bash
# Million-item benchmark: 1M-item catalog, 1M / 3M / 10M synthetic interactions; per size the data pipeline, a
# training epoch (sampled softmax + log-Q), the chunked full-ranking test and peak RSS; plus chunked full CE steps.
#   PYTHON=.venv/bin/python experiments/million_items/run.sh     # → results/*.json, results.md, scaling.png
# Knobs (environment): TRAIN_BATCHES_1M / TRAIN_BATCHES / TRAIN_BATCHES_10M (steps timed at 1M / 3M / 10M,
# 0 = the whole epoch), EVAL_BATCHES (1024-user test batches timed, -1 = all users). Defaults = what results/ holds
# (about 75 min on the shared, loaded 2-core machine). Each timed run holds /tmp/BENCH_LOCK.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
here=experiments/million_items
py=${PYTHON:-.venv/bin/python}
export PYTHONPATH=$root/src${PYTHONPATH:+:$PYTHONPATH}
TRAIN_BATCHES=${TRAIN_BATCHES:-40}
TRAIN_BATCHES_1M=${TRAIN_BATCHES_1M:-0}
TRAIN_BATCHES_10M=${TRAIN_BATCHES_10M:-30}
EVAL_BATCHES=${EVAL_BATCHES:-2}
cache=/tmp/divrec-million-cache
rm -rf "$cache" && mkdir -p $here/results  # data time = generate + preprocess + split + windows + cache write
bench() { flock /tmp/BENCH_LOCK "$py" $here/bench.py --cache-dir "$cache" "$@"; }
bench --interactions 1000000 --train-batches "$TRAIN_BATCHES_1M" --test-batches "$EVAL_BATCHES" \
  --out $here/results/sampled-01M.json
bench --interactions 3000000 --train-batches "$TRAIN_BATCHES" --test-batches "$EVAL_BATCHES" \
  --out $here/results/sampled-03M.json
bench --interactions 10000000 --train-batches "$TRAIN_BATCHES_10M" --test-batches "$EVAL_BATCHES" \
  --out $here/results/sampled-10M.json
# exact full-softmax CE over all 1M items, chunked: a few small steps (a whole epoch would take hours on 2 cores)
bench --interactions 1000000 --mode chunked_ce --batch-size 16 --train-batches 2 --test-batches 0 \
  --out $here/results/chunked_ce-01M.json
"$py" $here/report.py $here/results --out $here
