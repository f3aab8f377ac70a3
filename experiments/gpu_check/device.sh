#!/usr/bin/env bash
# How experiments/gpu_check/run.sh is run on a lent GPU machine that has torch/Lightning but no internet: the pure-Python
# wheels divrec needs beyond that image (hydra-core, omegaconf, antlr4) and the Beauty files travel with the checkout
# (.whl/ and .device-data/, both git-ignored); results are copied flat into $OUT.
#   OUT=/tmp/out experiments/gpu_check/device.sh
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src DIVREC_DATA_MIRROR=$PWD/.device-data PYTHONUNBUFFERED=1
PYTHON=python3 experiments/gpu_check/run.sh /tmp/gpu_check | tee "$OUT/summary.md"
for p in bf16-mixed 32-true; do
  cp /tmp/gpu_check/$p/metrics.json "$OUT/$p.metrics.json"; cp /tmp/gpu_check/$p/timeline.jsonl "$OUT/$p.timeline.jsonl"
  cp /tmp/gpu_check-$p.log "$OUT/$p.log"
done
