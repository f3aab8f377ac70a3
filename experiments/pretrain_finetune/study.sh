#!/usr/bin/env bash
# Issue 3's pretrain → fine-tune study as it ran on 2 CPU cores (2026-11-28): one pretraining per dataset (seed 0),
# fine-tuned with seeds 0, 1, 2, against the same fine-tune config from scratch (seeds 0, 1, 2); Beauty also in the
# low-data regime (fine-tuning on 10% / 25% of users, pretraining on all), and Last.fm also with a causal pretraining
# (kept for seeds 1, 2 only if better on seed 0's VALIDATION NDCG@10). Then summarize.py builds the tables.
#   experiments/pretrain_finetune/study.sh        # from the repository root; RUNS=outputs/ptf; ~4.5 h of 1-thread jobs
# Jobs run two at a time, one thread each (OMP_NUM_THREADS=1); `jobs.sh` is the per-seed-pretraining GPU variant.
set -euo pipefail
R=${RUNS:-outputs/ptf}
divrec=${DIVREC:-.venv/bin/divrec}
py=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=1
t() { local dir=$1; shift; mkdir -p "$(dirname "$dir")"; "$divrec" train callbacks.progress_bar.refresh_rate=0 "$@" \
  hydra.run.dir="$dir" >"$dir.log" 2>&1; }
pre=$R/beauty/all/pretrain_s0/backbone.pt
beauty_finetuned() {
  t "$R/beauty/all/pretrain_s0" experiment=pretrain_beauty seed=0 trainer.max_epochs=20
  for s in 0 1 2; do t "$R/beauty/all/finetune_s$s" experiment=finetune_beauty seed=$s init_from="$pre"; done
  for f in 10 25; do
    t "$R/beauty/users$f/finetune_s0" experiment=finetune_beauty seed=0 data.train_users_fraction=0.$f \
      trainer.max_epochs=100 init_from="$pre"
  done
  # the same 10% fine-tune without early stopping: both arms then get the full 100 epochs (best-val checkpoint)
  t "$R/beauty/users10long/finetune_s0" experiment=finetune_beauty seed=0 data.train_users_fraction=0.10 \
    trainer.max_epochs=100 callbacks.early_stopping.patience=100 init_from="$pre"
}
beauty_scratch() {
  for s in 0 1 2; do t "$R/beauty/all/scratch_s$s" experiment=finetune_beauty seed=$s; done
  for f in 10 25; do
    t "$R/beauty/users$f/scratch_s0" experiment=finetune_beauty seed=0 data.train_users_fraction=0.$f trainer.max_epochs=100
  done
}
lastfm() {
  t "$R/lastfm/all/pretrain_s0" experiment=pretrain_lastfm seed=0 trainer.max_epochs=30
  for s in 0 1 2; do
    t "$R/lastfm/all/finetune_s$s" experiment=finetune_lastfm seed=$s init_from="$R/lastfm/all/pretrain_s0/backbone.pt"
  done
}
lastfm_causal() {
  # a second pretraining tried on Last.fm: causal (model=sasrec), cloze off (AAP + MAP + contrastive); seeds 1, 2
  # only if its seed-0 fine-tune beats the bidirectional one on VALIDATION NDCG@10
  t "$R/lastfm/causal/pretrain_s0" experiment=pretrain_lastfm model=sasrec task.parts.cloze.weight=0 seed=0 \
    trainer.max_epochs=30
  t "$R/lastfm/causal/finetune_s0" experiment=finetune_lastfm seed=0 init_from="$R/lastfm/causal/pretrain_s0/backbone.pt"
  wait_for "$R/lastfm/all/finetune_s0/metrics.json"
  better=$($py - "$R" <<'P'
import json, sys
val = {r: json.load(open(f"{sys.argv[1]}/lastfm/{r}/finetune_s0/metrics.json"))["val/ndcg@10"] for r in ("all", "causal")}
print(int(val["causal"] > val["all"]))
P
)
  if [ "$better" = 1 ]; then
    for s in 1 2; do
      t "$R/lastfm/causal/finetune_s$s" experiment=finetune_lastfm seed=$s \
        init_from="$R/lastfm/causal/pretrain_s0/backbone.pt"
    done
  fi
}
wait_for() { until [ -f "$1" ]; do sleep 30; done; }
lastfm_scratch() { for s in 0 1 2; do t "$R/lastfm/all/scratch_s$s" experiment=finetune_lastfm seed=$s; done; }
beauty_finetuned & beauty_scratch & wait
lastfm & lastfm_scratch & wait
lastfm_causal
$py experiments/pretrain_finetune/summarize.py "$R" > experiments/pretrain_finetune/results.md
