#!/usr/bin/env bash
# The leaderboard's full run (README "The full run"), resumable: rerun the same command after an interruption and
# finished cells are skipped. Breadth first: every cell's seed 0, then seeds 0-2 (only the missing seeds run).
#   experiments/leaderboard/run.sh                                   # all models x ml-100k, beauty, lastfm
#   MODELS=sasrec,hstu DATASETS=ml-100k SEEDS="0 0,1,2" experiments/leaderboard/run.sh   # a subset
#   MODELS=sasrec DATASETS=ml-100k,beauty SEEDS=0 CONTROLS=shuffled experiments/leaderboard/run.sh
# Each invocation holds /tmp/divrec-timing.lock (one timed job at a time on the machine).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-outputs/leaderboard}
MODELS=${MODELS:-sasrec,hstu,lrurec,gru4rec,bert4rec,fmlp,bsarec,pop,itemknn,ease}
DATASETS=${DATASETS:-ml-100k,beauty,lastfm}
SEEDS=${SEEDS:-"0 0,1,2"}
CONTROLS=${CONTROLS:-}  # e.g. CONTROLS=shuffled: + a <model>+shuffled row per model (README "protocol honesty")
DIVREC=${DIVREC:-.venv/bin/divrec}
RECIPE=(
  callbacks.progress_bar.refresh_rate=0 trainer.max_epochs=60
  bsarec:optim.lr=5e-4 fmlp:optim.lr=1e-3 gru4rec:optim.lr=1e-3
  lrurec:optim=adamw lrurec:optim.lr=1e-3 lrurec:trainer.gradient_clip_val=5
  hstu:optim=adamw hstu:optim.lr=1e-3 hstu:optim.weight_decay=0
  ml-100k/bsarec:trainer.max_epochs=40 ml-100k/fmlp:trainer.max_epochs=40
  lastfm/bsarec:trainer.max_epochs=40 lastfm/fmlp:trainer.max_epochs=40
  beauty:data.batch_size=256 beauty/lrurec:data.batch_size=128 beauty/hstu:data.batch_size=128
  beauty/sasrec:optim.lr=1e-3 beauty/sasrec:model.dropout=0.5 beauty/sasrec:model.attn_dropout=0.5
  beauty/sasrec:trainer.max_epochs=30 beauty/bert4rec:trainer.max_epochs=30 beauty/bsarec:trainer.max_epochs=60
  beauty/fmlp:trainer.max_epochs=6 beauty/gru4rec:trainer.max_epochs=20 beauty/lrurec:trainer.max_epochs=20
  beauty/hstu:trainer.max_epochs=20 beauty/itemknn:metrics.diversity=false beauty/ease:metrics.diversity=false
)
# Scoped overrides reach only the models / datasets of this invocation (the command refuses others).
in_list() { [[ ",$2," == *",$1,"* ]]; }
ARGS=()
for entry in "${RECIPE[@]}"; do
  key=${entry%%=*}
  if [[ $key == *:* ]]; then
    scope=${key%%:*}
    if [[ $scope == */* ]]; then
      in_list "${scope%%/*}" "$DATASETS" && in_list "${scope#*/}" "$MODELS" || continue
    else
      in_list "$scope" "$MODELS" || in_list "$scope" "$DATASETS" || continue
    fi
  fi
  ARGS+=("$entry")
done
for seeds in $SEEDS; do
  flock /tmp/divrec-timing.lock "$DIVREC" leaderboard "models=[$MODELS]" "datasets=[$DATASETS]" "seeds=[$seeds]" \
    "out=$OUT" ${CONTROLS:+"controls=[$CONTROLS]"} "${ARGS[@]}"
done
