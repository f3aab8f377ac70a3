#!/usr/bin/env bash
# Acceptance sweeps on MovieLens-100K: the grid and the Optuna sweep from conf/sweep/, then `divrec compare` over
# each (table, CSV, plots into experiments/sweeps/{grid,optuna}/). Run from the repository root:
#   bash experiments/sweeps/run.sh            # ~25 min on 2 CPU cores (16+ one-minute jobs)
set -euo pipefail
DIVREC=${DIVREC:-divrec}
OUT=experiments/sweeps
nice -n 10 $DIVREC train sweep=sasrec_ml100k_grid
nice -n 10 $DIVREC train sweep=sasrec_ml100k_optuna
$DIVREC compare outputs/sweep_sasrec_ml100k_grid/multiruns/* --metric val/ndcg@10 --out $OUT/grid
$DIVREC compare outputs/sweep_sasrec_ml100k_optuna/multiruns/* --metric val/ndcg@10 --out $OUT/optuna
