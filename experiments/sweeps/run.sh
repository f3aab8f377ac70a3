#!/usr/bin/env bash
# Acceptance sweeps on MovieLens-100K (issue 5): the grid and the Optuna sweep from conf/sweep/, a continuation of
# the Optuna study, a 3-seed re-run of the grid's best two configurations, then `divrec compare` over each.
# Run from the repository root (≈ 90 min on 2 busy CPU cores; ≈ 10 min on an idle machine):
#   bash experiments/sweeps/run.sh
set -euo pipefail
DIVREC=${DIVREC:-divrec}
OUT=experiments/sweeps
export OMP_NUM_THREADS=1  # the two sweeps ran side by side, one thread each
nice -n 10 $DIVREC train sweep=sasrec_ml100k_grid &
nice -n 10 $DIVREC train sweep=sasrec_ml100k_optuna
wait
# the same Optuna study, 2 more trials (new sweep folder, same SQLite study)
nice -n 10 $DIVREC train sweep=sasrec_ml100k_optuna hydra.sweeper.n_trials=2
# the grid's best two configurations (they differ in dropout only), 3 seeds each
nice -n 10 $DIVREC train sweep=sasrec_ml100k_grid task_name=sweep_sasrec_ml100k_seeds \
  optim.lr=0.003 model.n_layers=1 model.dropout=0.1,0.3 seed=0,1,2
$DIVREC compare outputs/sweep_sasrec_ml100k_grid/multiruns/* --metric val/ndcg@10 --out $OUT/grid
$DIVREC compare outputs/sweep_sasrec_ml100k_optuna/multiruns/* --metric val/ndcg@10 --out $OUT/optuna
$DIVREC compare outputs/sweep_sasrec_ml100k_seeds/multiruns/* --metric val/ndcg@10 --out $OUT/seeds
