#!/usr/bin/env bash
# Pretrain -> fine-tune vs the same fine-tune config from scratch, one seed (preliminary).
#   experiments/pretrain_finetune/run.sh                  # from the repository root; DATASET=ml100k (default) | beauty
# Env: SEED (0), PRE_EPOCHS (10), FT_EPOCHS (40), RUNS (outputs/pretrain_finetune), DIVREC (the divrec command);
# arguments: extra Hydra overrides for all three runs. The scratch run does not depend on the others.
set -euo pipefail
SEED=${SEED:-0}
DATASET=${DATASET:-ml100k}
RUNS=${RUNS:-outputs/pretrain_finetune}/$DATASET
DIVREC=${DIVREC:-divrec}
common=(seed="$SEED" callbacks.progress_bar.refresh_rate=0 "$@")
$DIVREC train experiment=pretrain_"$DATASET" trainer.max_epochs="${PRE_EPOCHS:-10}" \
  hydra.run.dir="$RUNS/pretrain_s$SEED" "${common[@]}"
$DIVREC train experiment=finetune_"$DATASET" trainer.max_epochs="${FT_EPOCHS:-40}" \
  init_from="$RUNS/pretrain_s$SEED/backbone.pt" hydra.run.dir="$RUNS/finetune_s$SEED" "${common[@]}"
$DIVREC train experiment=finetune_"$DATASET" trainer.max_epochs="${FT_EPOCHS:-40}" \
  hydra.run.dir="$RUNS/scratch_s$SEED" "${common[@]}"
