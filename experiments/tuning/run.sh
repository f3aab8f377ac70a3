#!/usr/bin/env bash
# Default vs tuned, per dataset: the model's default config (DEFAULT_SEEDS), `divrec tune` within each budget
# (BUDGETS minutes, one study per budget, nothing set by hand per dataset), then the tuned experiment over
# TUNED_SEEDS. Every command runs alone under the timing lock; resumable: a run whose metrics.json exists is skipped
# (an interrupted one resumes from last.ckpt), a finished tune (DONE) is skipped, an interrupted tune resumes its
# study with what is left of its budget (the study records its minutes after every trial).
#   experiments/tuning/run.sh                                              # the record (about 7 h on 2 cores)
#   DATASETS=ml-100k BUDGETS=2 DEFAULT_SEEDS=0 TUNED_SEEDS=0 EXTRA="trainer.max_epochs=5" \
#     OUT=/tmp/tuning-smoke experiments/tuning/run.sh                      # the smoke (a few minutes)
#   then: .venv/bin/python experiments/tuning/summarize.py --runs outputs/tuning   → results.md
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
export DIVREC_DATA_MIRROR=${DIVREC_DATA_MIRROR:-$(cd ../shared/data && pwd)}
here=experiments/tuning
out=$(mkdir -p "${OUT:-outputs/tuning}" && cd "${OUT:-outputs/tuning}" && pwd)
datasets=${DATASETS:-ml-100k beauty lastfm}
model=${MODEL:-sasrec}
space=${SPACE:-transformer}
budgets=${BUDGETS:-20 60}
default_seeds=${DEFAULT_SEEDS:-0 1 2}
tuned_seeds=${TUNED_SEEDS:-0 1 2}
extra=${EXTRA:-}  # overrides for every command (the smoke caps epochs)
lock=(flock /tmp/divrec-timing.lock)
quiet=(callbacks.progress_bar.refresh_rate=0)

train() {  # train <run dir> <overrides...>: skipped when done, resumed when interrupted
  local dir=$1; shift
  [[ -f "$dir/metrics.json" ]] && { echo "skip $dir (done)"; return 0; }
  local resume=()
  [[ -f "$dir/checkpoints/last.ckpt" ]] && resume=(ckpt_path=last)
  echo "run  $dir"
  mkdir -p "$(dirname "$dir")"
  # shellcheck disable=SC2086
  "${lock[@]}" .venv/bin/divrec train "$@" $extra "${quiet[@]}" hydra.run.dir="$dir" "${resume[@]}" \
    >> "$dir.log" 2>&1 || { echo "FAIL $dir: $(grep -m1 '^error:' "$dir.log" || tail -n1 "$dir.log")" | tee -a "$out/failed.txt"; }
}

minutes_left() {  # minutes_left <study dir> <budget>: the budget less the minutes the study has used
  .venv/bin/python - "$1" "$2" <<'PY'
import sys
from pathlib import Path
db, budget, used = Path(sys.argv[1]) / "study.db", float(sys.argv[2]), 0.0
if db.is_file():
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    used = float(optuna.load_study(study_name="divrec-tune", storage=f"sqlite:///{db}").user_attrs.get("minutes_used", 0))
print(f"{max(budget - used, 0.0):.2f}")
PY
}

tune() {  # tune <study dir> <budget> <overrides...>
  local dir=$1 budget=$2; shift 2
  [[ -f "$dir/DONE" ]] && { echo "skip $dir (done)"; return 0; }
  local left
  left=$(minutes_left "$dir" "$budget")
  echo "tune $dir: $left of $budget min left"
  mkdir -p "$dir"
  if awk "BEGIN {exit !($left > 0.5)}"; then
    # shellcheck disable=SC2086
    "${lock[@]}" .venv/bin/divrec tune "$@" $extra tune.space="$space" tune.budget_min="$left" tune.out="$dir" \
      hydra.run.dir="$dir/log" >> "$dir.log" 2>&1 || {
      echo "FAIL $dir: $(grep -m1 '^error:' "$dir.log" || tail -n1 "$dir.log")" | tee -a "$out/failed.txt"; return 1; }
  fi
  [[ -f "$dir/best.yaml" ]] && touch "$dir/DONE"
  grep '^\[tune\]' "$dir.log" | tail -n1
}

for data in $datasets; do
  cell="$out/$data/$model"
  for seed in $default_seeds; do
    train "$cell/default/seed$seed" data="$data" model="$model" seed="$seed"
  done
  for budget in $budgets; do
    study="$cell/tune$budget/study"
    tune "$study" "$budget" data="$data" model="$model" || continue
    for seed in $tuned_seeds; do
      train "$cell/tune$budget/seed$seed" "hydra.searchpath=[file://$study]" experiment=tuned seed="$seed"
    done
  done
done
.venv/bin/python "$here/summarize.py" --runs "$out" --out "${RESULTS:-$here/results.md}"
