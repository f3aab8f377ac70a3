#!/usr/bin/env bash
# The one command of this experiment (see README.md):   experiments/tensorboard_hparams/run.sh [SWEEP_DIR]
exec "$(dirname "${BASH_SOURCE[0]}")/screenshot.sh" "$@"
