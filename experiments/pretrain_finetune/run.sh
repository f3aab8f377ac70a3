#!/usr/bin/env bash
# Pretrain -> fine-tune vs the same fine-tune config from scratch, Amazon Beauty, one seed (preliminary).
#   experiments/pretrain_finetune/run.sh                 # from the repository root; writes outputs/pretrain_finetune/
# Env: SEED (0), PRE_EPOCHS (20), FT_EPOCHS (30), RUNS (outputs/pretrain_finetune), DIVREC (divrec command),
#      extra Hydra overrides as arguments (applied to all three runs).
set -euo pipefail
SEED=${SEED:-0}
RUNS=${RUNS:-outputs/pretrain_finetune}
DIVREC=${DIVREC:-divrec}
common=(seed="$SEED" callbacks.progress_bar.refresh_rate=0 "$@")
$DIVREC train experiment=pretrain_beauty trainer.max_epochs="${PRE_EPOCHS:-20}" \
  hydra.run.dir="$RUNS/pretrain_s$SEED" "${common[@]}"
$DIVREC train experiment=finetune_beauty trainer.max_epochs="${FT_EPOCHS:-30}" \
  init_from="$RUNS/pretrain_s$SEED/backbone.pt" hydra.run.dir="$RUNS/finetune_s$SEED" "${common[@]}"
$DIVREC train experiment=finetune_beauty trainer.max_epochs="${FT_EPOCHS:-30}" \
  hydra.run.dir="$RUNS/scratch_s$SEED" "${common[@]}"
