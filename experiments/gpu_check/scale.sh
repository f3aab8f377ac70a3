#!/usr/bin/env bash
# Scale-out check on one lent GPU (< 6 min on an H100, machine start not counted): the code paths that never ran on a
# GPU. Short SASRec Beauty runs (seed 0, 3 epochs) with trainer=gpu fp32, trainer=ddp (NCCL, 1 device), trainer=fsdp
# (1 device) and compile=true; `divrec eval` of the FSDP checkpoint on one device (same test NDCG@10?); bf16-mixed vs
# fp32 on a wide SASRec (512 wide, 4 layers, batch 1024); re-ranker throughput on cuda (8192 users per batch).
# Every step is capped with `timeout` and a global budget; a failing step is recorded (rc, log tail), never fatal.
#   OUT=/tmp/out experiments/gpu_check/scale.sh         # on the device, repo root (wheels in .whl/, data in .device-data/)
#   DRY_RUN=1 PYTHON=.venv/bin/python OUT=/tmp/out experiments/gpu_check/scale.sh   # the same steps on the CPU, tiny
# Writes $OUT/scale.md (the summary, also printed), runs.json, rerank.json, tails.txt, console.log (flat, <= 8 files).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
: "${OUT:?set OUT to the folder that receives the results}"
mkdir -p "$OUT"
python=${PYTHON:-python3}
dry=${DRY_RUN:-0}
work=${SCALE_WORK:-/tmp/divrec-scale}
rm -rf "$work" && mkdir -p "$work"
start=$(date +%s)
if [ "$dry" = 1 ]; then budget=${SCALE_BUDGET_S:-1500}; else budget=${SCALE_BUDGET_S:-330}; fi
reserve=12  # seconds kept for the summary

main() {
if [ -d .whl ] && [ "$dry" != 1 ]; then  # offline image: hydra-core, omegaconf, antlr4 travel as wheels
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || echo "wheel install failed (rc $?)"
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=${PYTHONPATH:-$PWD/src}
fi
[ -d .device-data ] && export DIVREC_DATA_MIRROR=${DIVREC_DATA_MIRROR:-$PWD/.device-data}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$python" -c "import torch, pytorch_lightning as pl; print('torch', torch.__version__, 'cuda', torch.version.cuda,
  torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU', '| lightning', pl.__version__)"

printf 'step\trc\twall_s\n' >"$work/steps.tsv"
# step NAME CAP_S COMMAND...: runs COMMAND under timeout min(CAP_S, budget left), log in $work/NAME.log.
step() {
  local name=$1 cap=$2
  shift 2
  local left=$((start + budget - reserve - $(date +%s)))
  if [ "$left" -lt 20 ]; then
    printf '%s\tskipped\t0\n' "$name" >>"$work/steps.tsv"
    echo "== $name: skipped (budget spent)"
    return
  fi
  local limit=$((cap < left ? cap : left)) t0 rc
  echo "== $name (limit ${limit}s): $*"
  t0=$EPOCHREALTIME
  timeout -k 10 "$limit" "$@" >"$work/$name.log" 2>&1
  rc=$?
  awk -v n="$name" -v rc="$rc" -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%s\t%s\t%.1f\n", n, rc, b - a }' \
    >>"$work/steps.tsv"
  echo "   rc=$rc  $(tail -1 "$work/$name.log")"
  [ "$rc" = 0 ] || tail -15 "$work/$name.log"
}

divrec=("$python" -m divrec)
quiet=(seed=0 callbacks.progress_bar.refresh_rate=0)
beauty=(experiment=sasrec_beauty trainer.max_epochs=3 "${quiet[@]}")
wide=(model.hidden_size=512 model.n_heads=8 model.n_layers=4 model.ffn_size=2048 data.batch_size=1024)
if [ "$dry" = 1 ]; then  # CPU stand-ins: same commands, CPU trainers, two batches per stage
  limits=(+trainer.limit_train_batches=2 +trainer.limit_val_batches=2 +trainer.limit_test_batches=2)
  beauty=(experiment=sasrec_beauty trainer.max_epochs=2 "${quiet[@]}" "${limits[@]}")
  wide=(model.hidden_size=32 model.n_heads=4 model.n_layers=2 model.ffn_size=64 data.batch_size=64)
  gpu=(trainer=cpu) ddp=(trainer=ddp_cpu trainer.devices=1) fsdp=(trainer=ddp_cpu trainer.devices=1)  # no CPU FSDP
  rerank=(--device cpu --users 256 --repeats 1)
else
  limits=()
  gpu=(trainer=gpu) ddp=(trainer=ddp trainer.devices=1) fsdp=(trainer=fsdp trainer.devices=1)
  rerank=(--device cuda --users 8192 --repeats 5)
fi

# Priority order: the budget runs out at the end, not in the middle.
step fp32 90 "${divrec[@]}" train "${beauty[@]}" "${gpu[@]}" trainer.precision=32-true hydra.run.dir="$work/fp32"
step ddp 90 "${divrec[@]}" train "${beauty[@]}" "${ddp[@]}" hydra.run.dir="$work/ddp"
step fsdp 90 "${divrec[@]}" train "${beauty[@]}" "${fsdp[@]}" hydra.run.dir="$work/fsdp"
# Read a distributed run's checkpoint back on one device: FSDP's, or DDP's when FSDP left none.
from=fsdp
[ -f "$work/fsdp/checkpoints/best.ckpt" ] || from=ddp
step "${from}_eval" 60 "${divrec[@]}" eval ckpt_path="$work/$from/checkpoints/best.ckpt" "${gpu[@]}" \
  trainer.precision=32-true "${quiet[@]}" "${limits[@]}" hydra.run.dir="$work/${from}_eval"
step wide_fp32 75 "${divrec[@]}" train "${beauty[@]}" "${wide[@]}" "${gpu[@]}" trainer.precision=32-true \
  hydra.run.dir="$work/wide_fp32"
step wide_bf16 75 "${divrec[@]}" train "${beauty[@]}" "${wide[@]}" "${gpu[@]}" trainer.precision=bf16-mixed \
  hydra.run.dir="$work/wide_bf16"
step rerank 60 "$python" experiments/rerank_speed/bench.py "${rerank[@]}"
step compile 150 "${divrec[@]}" train "${beauty[@]}" "${gpu[@]}" trainer.precision=32-true compile=true \
  hydra.run.dir="$work/compile"

"$python" experiments/gpu_check/scale_summary.py "$work" --out "$OUT" --dry-run "$dry" || echo "summary failed (rc $?)"
echo "total wall s: $(($(date +%s) - start))"
}

main 2>&1 | tee "$OUT/console.log"
