#!/usr/bin/env bash
# Checkpoint selection across epochs: val_items=3 runs that keep EVERY epoch's weights; epochs.py then scores every
# epoch on validation (3 rows per user, and the last row only) and on test, and asks which validation picks the
# epoch that is better on test. Two runs at a time, 1 CPU thread each, niced.
#   experiments/val_items/epochs.sh         # from the repository root; RUNS=outputs/val_items_epochs SEEDS="0 1 2 3 4"
set -euo pipefail
runs=${RUNS:-outputs/val_items_epochs}
python=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
every=(+callbacks.every_epoch._target_=pytorch_lightning.callbacks.ModelCheckpoint +callbacks.every_epoch.save_top_k=-1
  +callbacks.every_epoch.monitor=null +callbacks.every_epoch.save_weights_only=true
  +callbacks.every_epoch.mode=max  # only so that its state key differs from last_checkpoint's (mode min, no monitor)
  callbacks.attention_maps=null callbacks.projector=null callbacks.progress_bar.refresh_rate=0)
mkdir -p "$runs"
seeds=(${SEEDS:-0 1 2 3 4})
for ((i = 0; i < ${#seeds[@]}; i += 2)); do
  for seed in "${seeds[@]:i:2}"; do
    dir="$runs/k3_s$seed"
    if [[ ! -f "$dir/metrics.json" ]]; then
      nice -n 10 "$python" -m divrec train experiment=sasrec_ml100k seed="$seed" data.split.val_items=3 "${every[@]}" \
        +callbacks.every_epoch.dirpath="$dir/epochs" hydra.run.dir="$dir" > "$dir.log" 2>&1 &
    fi
  done
  wait
done
nice -n 10 "$python" experiments/val_items/epochs.py "$runs" --out experiments/val_items
