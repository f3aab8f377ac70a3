#!/usr/bin/env bash
# Ensembles of finished leaderboard cells, one per seed: seed s combines every MEMBERS model's seed-s run
# (each one's epoch chosen on its own validation), so the 3 ensemble seeds share no run. Resumable: a finished
# ensemble run is skipped. Then `divrec compare` over the ensembles and their members (mean ± std per configuration
# and a paired test over test users between the best two).
#   LB=outputs/lb-ml100k DATASET=ml-100k MEMBERS=sasrec,hstu,lrurec experiments/ensemble/run.sh
#   LB=outputs/lb-lastfm DATASET=lastfm MEMBERS=sasrec,ease NORMALIZE=zscore experiments/ensemble/run.sh
#   WEIGHTS=val ...   # member weights chosen on validation (name suffix +wval), e.g. sasrec+ease+zscore+wval
#   EXTRA="metrics.diversity=false" ...   # extra overrides of every ensemble run (Beauty with closed-form members:
#                                         # embedding ILD over their 12k-wide item-item rows costs minutes)
# (a closed-form member, e.g. ease, has one run for all seeds: its seed-s folder is still the one used)
set -euo pipefail
cd "$(dirname "$0")/../.."
LB=${LB:?the leaderboard out= folder whose runs/<dataset>/<model>/seed<k> are the members}
DATASET=${DATASET:?e.g. ml-100k}
MEMBERS=${MEMBERS:-sasrec,hstu,lrurec}
SEEDS=${SEEDS:-0,1,2}
DIVREC=${DIVREC:-.venv/bin/divrec}
NORMALIZE=${NORMALIZE:-log_softmax}  # model.normalize: zscore lets closed-form baselines join
WEIGHTS=${WEIGHTS:-null}  # model.weights: null = equal, val = the best simplex-grid point on validation NDCG@10
STEPS=${STEPS:-}  # WEIGHTS=val: model.weight_steps (empty = the YAML's 10; name suffix +s<STEPS> when set)
SUFFIX=$([[ $NORMALIZE == log_softmax ]] || echo "+$NORMALIZE")$([[ $WEIGHTS == null ]] || echo "+w$WEIGHTS")${STEPS:++s$STEPS}
NAME=${NAME:-${MEMBERS//,/+}$SUFFIX}
OUT=$LB/ensembles/$DATASET/$NAME
for seed in ${SEEDS//,/ }; do
  run=$OUT/seed$seed
  if [[ -f $run/metrics.json ]] && grep -q completed "$run/status.json" 2>/dev/null; then continue; fi
  runs=()
  for model in ${MEMBERS//,/ }; do runs+=("$LB/runs/$DATASET/$model/seed$seed"); done
  list=$(IFS=,; echo "${runs[*]}")
  flock /tmp/divrec-timing.lock "$DIVREC" train experiment=ensemble "data=$DATASET" "model.members=[$list]" \
    "model.normalize=$NORMALIZE" "model.weights=$WEIGHTS" ${STEPS:+"model.weight_steps=$STEPS"} "seed=$seed" callbacks.progress_bar.refresh_rate=0 "hydra.run.dir=$run" ${EXTRA:-}
done
member_dirs=()
for model in ${MEMBERS//,/ }; do member_dirs+=("$LB/runs/$DATASET/$model"); done
"$DIVREC" compare "$OUT" "${member_dirs[@]}" --metric val/ndcg@10 --out "$OUT/compare"
