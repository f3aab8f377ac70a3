#!/usr/bin/env bash
# One-GPU check (< 3 min on an H100): SASRec on Amazon Beauty with the CPU quality config (experiment=sasrec_beauty,
# seed 0, 30 epochs), once in bf16-mixed and once in fp32 on the same GPU; prints throughput and test metrics next to
# the CPU reference (experiments/quality: seed 0 test NDCG@10 0.0502, HR@10 0.0823).
#   experiments/gpu_check/run.sh [out_dir]            # PYTHON=python3 to use another interpreter than .venv's
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
python=${PYTHON:-.venv/bin/python}
out=${1:-outputs/gpu_check}
export DIVREC_DATA_MIRROR=${DIVREC_DATA_MIRROR:-$(cd ../shared/data && pwd)}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
for precision in bf16-mixed 32-true; do
  "$python" -m divrec train experiment=sasrec_beauty seed=0 trainer.accelerator=gpu trainer.precision=$precision \
    hydra.run.dir="$out/$precision" callbacks.progress_bar.refresh_rate=0 >"$out-$precision.log" 2>&1 \
    || { tail -30 "$out-$precision.log"; exit 1; }
done
"$python" experiments/gpu_check/summarize.py "$out/bf16-mixed" "$out/32-true"
