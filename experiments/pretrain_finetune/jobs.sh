#!/usr/bin/env bash
# Prints the job lines of issue 3's pretrain → fine-tune study (one shell command per line, for `xargs -P`): per
# dataset and seed, a chain pretrain → fine-tune (all users) [→ fine-tune on 10% / 25% of users], and a chain of the
# same fine-tune configs from scratch. Runs go to <runs>/<dataset>/<all|users10|users25>/<arm>_s<seed>.
#   experiments/pretrain_finetune/jobs.sh outputs/pretrain_finetune "trainer.accelerator=gpu" | xargs -d '\n' -P 8 -I{} bash -c {}
set -euo pipefail
runs=${1:-outputs/pretrain_finetune}
extra=${2:-}
divrec=${DIVREC:-.venv/bin/divrec}
low_data=${LOW_DATA_DATASETS:-beauty}  # datasets that also get the 10% / 25% users regime
q="callbacks.progress_bar.refresh_rate=0 $extra"
for dataset in beauty lastfm; do
  for seed in ${SEEDS:-0 1 2}; do
    at() { echo "$runs/$dataset/$1/$2_s$seed"; }
    ft="$divrec train experiment=finetune_$dataset seed=$seed $q"
    pre="$divrec train experiment=pretrain_$dataset seed=$seed $q hydra.run.dir=$(at all pretrain)"
    chain="$pre >$(at all pretrain).log 2>&1"
    scratch=""
    for regime in all users10 users25; do
      case $regime in all) frac=1.0 ;; users10) frac=0.1 ;; users25) frac=0.25 ;; esac
      [[ $regime != all && " $low_data " != *" $dataset "* ]] && continue
      more="data.train_users_fraction=$frac"
      [[ $regime != all ]] && more="$more trainer.max_epochs=100"  # fewer steps per epoch: let early stopping end it
      init="init_from=$(at all pretrain)/backbone.pt"
      chain="$chain; $ft $more $init hydra.run.dir=$(at $regime finetune) >$(at $regime finetune).log 2>&1"
      scratch="${scratch:+$scratch; }$ft $more hydra.run.dir=$(at $regime scratch) >$(at $regime scratch).log 2>&1"
    done
    echo "mkdir -p $runs/$dataset/all $runs/$dataset/users10 $runs/$dataset/users25; $chain"
    echo "mkdir -p $runs/$dataset/all $runs/$dataset/users10 $runs/$dataset/users25; $scratch"
  done
done
