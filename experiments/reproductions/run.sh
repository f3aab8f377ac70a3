#!/usr/bin/env bash
# Model-zoo reproductions: every cell of cells.txt x seeds, one run at a time under a lock (timings stay meaningful),
# resumable (a cell whose metrics.json exists is skipped), failures listed in failed.txt with their error line.
#   experiments/reproductions/run.sh                      # every cell, seeds 0 1 2
#   SEEDS="0" CELLS="beauty/bsarec beauty/ease" experiments/reproductions/run.sh
#   then: .venv/bin/python experiments/reproductions/summarize.py   → results.md
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
export DIVREC_DATA_MIRROR=${DIVREC_DATA_MIRROR:-$(cd ../shared/data && pwd)}
here=experiments/reproductions
out=${OUT:-outputs/reproductions}
seeds=${SEEDS:-0 1 2}
mkdir -p "$out"
while IFS='|' read -r cell overrides; do
  cell="${cell#"${cell%%[![:space:]]*}"}"; cell="${cell%"${cell##*[![:space:]]}"}"  # trim
  [[ -z "$cell" || "$cell" == \#* ]] && continue
  if [[ -n "${CELLS:-}" && " $CELLS " != *" $cell "* ]]; then continue; fi
  for seed in $seeds; do
    dir="$out/$cell/seed$seed"
    [[ -f "$dir/metrics.json" ]] && { echo "skip $cell seed $seed (done)"; continue; }
    echo "run  $cell seed $seed: $overrides"
    mkdir -p "$(dirname "$dir")"
    # shellcheck disable=SC2086
    if ! flock /tmp/divrec-timing.lock .venv/bin/divrec train $overrides seed=$seed hydra.run.dir="$dir" \
        task_name=reproductions callbacks.progress_bar.refresh_rate=0 > "$dir.log" 2>&1; then
      echo "$cell seed $seed: $(grep -m1 '^error:' "$dir.log" || tail -n1 "$dir.log")" >> "$out/failed.txt"
      echo "FAIL $cell seed $seed (see $dir.log)"
    fi
  done
done < "$here/cells.txt"
.venv/bin/python "$here/summarize.py" --runs "$out" --out "$here/results.md"
