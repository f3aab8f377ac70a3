#!/usr/bin/env bash
# The order the remaining seeds were run in (session of 2026-12-02): fast full-position models first, prefix-window
# models (fmlp, bsarec) last, so a session that ends early leaves the most cells finished. Resumable like run.sh.
#   nice -n 19 experiments/reproductions/queue.sh
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
SEEDS="0 1 2" CELLS="ml-100k/sasrec ml-100k/gru4rec ml-100k/lrurec ml-100k/hstu ml-100k/sasrec-1block-gbce" "$here/run.sh"
SEEDS="1 2" CELLS="beauty/sasrec beauty/hstu beauty/lrurec beauty/sasrec-1block-ss beauty/sasrec-1block-ss-long" "$here/run.sh"
SEEDS="1 2" CELLS="beauty/gru4rec beauty/fmlp beauty/sasrec-1block-gbce" "$here/run.sh"
SEEDS="0 1 2" CELLS="ml-100k/fmlp ml-100k/bsarec" "$here/run.sh"
SEEDS="1 2" CELLS="beauty/bsarec" "$here/run.sh"
