#!/usr/bin/env bash
# One GPU call for the runs that need more compute than 2 CPU cores give in a session: issue 3's pretrain → fine-tune
# study (Beauty and Last.fm, 3 seeds, plus Beauty with 10% / 25% of users), the feedback loop and the CTR run on
# ml-100k. Jobs run in parallel on the one GPU (xargs -P); a time cap leaves time to summarise and pack the results.
#   OUT=/tmp/out experiments/gpu_batch/device.sh          # on the lent machine (see experiments/gpu_check/device.sh)
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src DIVREC_DATA_MIRROR=$PWD/.device-data PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
export DIVREC="python3 -m divrec"
runs=/tmp/runs
gpu="trainer.accelerator=gpu"
{
  echo "mkdir -p $runs/feedback; $DIVREC feedback seed=0 $gpu feedback.progress_bars=false hydra.run.dir=$runs/feedback/ml100k >$runs/feedback/ml100k.log 2>&1"
  echo "mkdir -p $runs/ctr; $DIVREC train experiment=sasrec_ctr_ml100k seed=0 $gpu callbacks.progress_bar.refresh_rate=0 hydra.run.dir=$runs/ctr/ml100k >$runs/ctr/ml100k.log 2>&1"
  experiments/pretrain_finetune/jobs.sh "$runs/ptf" "$gpu"
} >/tmp/jobs.txt
wc -l /tmp/jobs.txt
start=$(date +%s)
timeout "${CAP_S:-470}" xargs -d '\n' -P "${PARALLEL:-14}" -I{} bash -c {} </tmp/jobs.txt
echo "jobs ended after $(( $(date +%s) - start )) s (rc $?)"
python3 experiments/pretrain_finetune/summarize.py $runs/ptf | tee "$OUT/pretrain_finetune.md"
cp $runs/feedback/ml100k/feedback.md "$OUT/" 2>/dev/null; cp $runs/feedback/ml100k/feedback.png "$OUT/" 2>/dev/null
cp $runs/ctr/ml100k/metrics.json "$OUT/ctr_metrics.json" 2>/dev/null
tar czf "$OUT/runs.tgz" --exclude='*.ckpt' --exclude='backbone.pt' -C /tmp runs
ls -la "$OUT"
