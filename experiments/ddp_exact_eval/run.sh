#!/usr/bin/env bash
# Is multi-process evaluation exact? Train SASRec on ml-100k (943 users: odd, so a padding sampler would repeat a
# user), evaluate its best checkpoint with 1, 2 and 3 CPU processes (DDP, gloo), compare every metric; then check
# that a Hydra multirun with 2 processes per job yields exactly one folder per job.
#   experiments/ddp_exact_eval/run.sh        # ≈ 5 min on 2 CPU cores → results.md, results.json, metrics.png here
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
export DIVREC_DATA_MIRROR=${DIVREC_DATA_MIRROR:-$(cd ../shared/data && pwd)} OMP_NUM_THREADS=1
python=${PYTHON:-.venv/bin/python}
here=experiments/ddp_exact_eval
out=outputs/ddp_exact_eval
rm -rf "$out"
quiet=(logger=none callbacks.progress_bar.refresh_rate=0)
"$python" -m divrec train experiment=sasrec_ml100k trainer=cpu trainer.max_epochs=10 "${quiet[@]}" \
  hydra.run.dir=$out/train
ckpt=$out/train/checkpoints/best.ckpt
"$python" -m divrec eval ckpt_path=$ckpt trainer=cpu "${quiet[@]}" hydra.run.dir=$out/eval-1
for n in 2 3; do
  "$python" -m divrec eval ckpt_path=$ckpt trainer=ddp_cpu trainer.devices=$n "${quiet[@]}" hydra.run.dir=$out/eval-$n
done
"$python" -m divrec train -m data=synthetic trainer=ddp_cpu trainer.max_epochs=2 seed=0,1 "${quiet[@]}" \
  hydra.sweep.dir=$out/multirun
"$python" $here/compare.py $out --out $here
