#!/usr/bin/env bash
# Side features on vs off (issue 3, acceptance 3): SASRec (full-softmax CE, full ranking, seen items excluded) with
# and without item attributes / user features in the input layer, 3 seeds each, then one comparison table per dataset
# (mean ± std over seeds, paired test over users between the best two arms) via `divrec compare`.
#   experiments/side_features/run.sh                     # from the repository root; RUNS=outputs/side, SEEDS="0 1 2"
# Arms: off; both (ml-100k) / item (Beauty), i.e. every side feature the dataset has: model.item_attribute_fusion=gate
# (genres on ml-100k, S3-Rec attributes on Beauty) and, on ml-100k, model.user_features=token (age bucket, gender,
# occupation; token was chosen over add on a 2-epoch val smoke check).
# ARMS="off both item user" also runs item-only and user-only on ml-100k (not part of the recorded results).
# Beauty runs experiment=finetune_beauty without init_from: the scratch arm of experiments/pretrain_finetune.
set -euo pipefail
runs=${RUNS:-outputs/side}
divrec=${DIVREC:-.venv/bin/divrec}
q=(callbacks.progress_bar.refresh_rate=0)
declare -A ml100k=([off]="" [item]="model.item_attribute_fusion=gate" [user]="model.user_features=token"
  [both]="model.item_attribute_fusion=gate model.user_features=token")
declare -A beauty=([off]="" [item]="model.item_attribute_fusion=gate")
for seed in ${SEEDS:-0 1 2}; do
  for arm in ${ARMS:-off both}; do
    # shellcheck disable=SC2086
    $divrec train experiment=sasrec_ml100k seed="$seed" ${ml100k[$arm]} "${q[@]}" \
      hydra.run.dir="$runs/ml100k/${arm}_s$seed"
  done
  for arm in off item; do
    # shellcheck disable=SC2086
    $divrec train experiment=finetune_beauty seed="$seed" ${beauty[$arm]} "${q[@]}" \
      hydra.run.dir="$runs/beauty/${arm}_s$seed"
  done
done
for dataset in ml100k beauty; do
  $divrec compare "$runs/$dataset" --out "experiments/side_features/$dataset"
done
