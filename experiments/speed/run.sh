#!/usr/bin/env bash
# Speed on this CPU (issue 15): every figure a ratio of runs made one after another in this one invocation, each
# under the timing lock (one heavy job at a time, all cores). Resumable: a run whose metrics.json exists is skipped.
#   experiments/speed/run.sh                 # all parts (~15 min on 2 cores)
#   PARTS="gemm epoch" experiments/speed/run.sh
#   then: .venv/bin/python experiments/speed/summarize.py   → experiments/speed/results.md
# Parts: gemm (bf16 vs fp32 matrix-product peak at the logits shape), epoch (Beauty SASRec epoch and evaluation
# time: fp32 plain / fp32 fused / bf16 fused / bf16 fused + compile), sampled (ml-100k: time to val NDCG@10 for full
# CE, sampled softmax and gBCE at 256 / 1024 negatives; bf16, SAMPLED_PRECISIONS="32-true bf16-mixed" for both), ttq (ml-100k: process start to val
# NDCG@10 >= 0.060, fp32 vs bf16), ttq-beauty (Beauty SASRec: process start to val NDCG@10 >= 0.055), zoo (every zoo
# model's Beauty epoch and evaluation time next to SASRec's, each with its leaderboard recipe, default precision).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
export DIVREC_DATA_MIRROR=${DIVREC_DATA_MIRROR:-$(cd ../shared/data && pwd)}
out=${OUT:-outputs/speed}
parts=${PARTS:-gemm epoch ttq sampled}
mkdir -p "$out"
common="metrics.diversity=false callbacks.progress_bar.refresh_rate=0 task_name=speed"

run() {  # run <name> <overrides...>
  local name=$1; shift
  local dir="$out/$name"
  [[ -f "$dir/metrics.json" ]] && { echo "skip $name (done)"; return; }
  echo "run  $name: $*"
  mkdir -p "$(dirname "$dir")"
  # shellcheck disable=SC2086
  flock /tmp/divrec-timing.lock .venv/bin/divrec train "$@" $common hydra.run.dir="$dir" > "$dir.log" 2>&1 \
    || echo "FAIL $name (see $dir.log)"
}

for part in $parts; do
  case $part in
    gemm)
      flock /tmp/divrec-timing.lock .venv/bin/python experiments/speed/gemm_peak.py --out "$out/gemm.json" ;;
    epoch)
      e="experiment=sasrec_beauty trainer.max_epochs=3 callbacks.early_stopping.patience=100 seed=0"
      run epoch/fp32-plain $e trainer.precision=32-true task.fused=false
      run epoch/fp32-fused $e trainer.precision=32-true
      run epoch/bf16-fused $e trainer.precision=bf16-mixed
      run epoch/bf16-fused-compiled $e trainer.precision=bf16-mixed task.compile_output=true
      run epoch/bf16-plain $e trainer.precision=bf16-mixed task.fused=false ;;
    ttq)
      for p in 32-true bf16-mixed; do
        run ttq/ml-100k-$p experiment=sasrec_ml100k trainer.max_epochs=6 trainer.precision=$p seed=0
      done ;;
    ttq-beauty)
      run ttq-beauty/sasrec experiment=sasrec_beauty trainer.max_epochs=${BEAUTY_TTQ_EPOCHS:-15} seed=0 ;;
    zoo)
      z="data=beauty trainer.max_epochs=2 callbacks.early_stopping.patience=100 seed=0"
      run zoo/sasrec experiment=sasrec_beauty trainer.max_epochs=2 callbacks.early_stopping.patience=100 seed=0
      run zoo/bert4rec model=bert4rec $z data.batch_size=256
      run zoo/gru4rec model=gru4rec $z data.batch_size=256 optim.lr=1e-3
      run zoo/lrurec model=lrurec $z data.batch_size=128 optim=adamw optim.lr=1e-3 trainer.gradient_clip_val=5
      run zoo/hstu model=hstu $z data.batch_size=128 optim=adamw optim.lr=1e-3 optim.weight_decay=0
      run zoo/bsarec model=bsarec $z data.batch_size=256 optim.lr=5e-4
      run zoo/fmlp model=fmlp $z data.batch_size=256 optim.lr=1e-3 ;;
    sampled)
      s="experiment=sasrec_ml100k trainer.max_epochs=${SAMPLED_EPOCHS:-20} seed=0"
      for p in ${SAMPLED_PRECISIONS:-bf16-mixed}; do
        run sampled/$p/full-ce $s trainer.precision=$p
        for n in 256 1024; do
          run sampled/$p/ss-$n $s trainer.precision=$p task=sampled_softmax task.n_negatives=$n
          run sampled/$p/gbce-$n $s trainer.precision=$p task=gbce task.n_negatives=$n
        done
      done ;;
    *) echo "unknown part $part" >&2; exit 2 ;;
  esac
done
.venv/bin/python experiments/speed/summarize.py --runs "$out" --out "${RESULTS:-experiments/speed/results.md}"
