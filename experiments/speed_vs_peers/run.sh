#!/usr/bin/env bash
# Side-by-side speed of divrec, RecBole 1.2.1 and RecTools 0.19: the same SASRec (64 hidden, 2 layers, 2 heads,
# max length 50, full-softmax CE) and the same protocol (leave-one-out, full ranking, history excluded), one after
# the other on this machine. About 20 minutes on 2 CPU cores; run it on an otherwise idle machine.
#
#   experiments/speed_vs_peers/run.sh            # → experiments/speed_vs_peers/results.md (+ results.json)
#
# Peers run in their own venvs (created on first use, torch==2.13.0 installed first so pip takes the CPU build),
# with the runners in $DIVREC_PEER_TOOLS (default ../shared/tools). Raw logs go to outputs/speed_vs_peers/<time>/.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
here=experiments/speed_vs_peers
tools=$(cd "${DIVREC_PEER_TOOLS:-../shared/tools}" && pwd)
data=$(cd "${DIVREC_DATA_MIRROR:-../shared/data}" && pwd)
venvs=${DIVREC_PEER_VENVS:-$root/outputs/peer-venvs}
logs=$root/outputs/speed_vs_peers/$(date +%Y-%m-%d_%H-%M-%S)
mkdir -p "$logs" "$venvs"
export DIVREC_DATA_MIRROR=$data

make_venv() {  # name, packages...
  local venv=$venvs/$1; shift
  [ -x "$venv/bin/python" ] && return
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q torch==2.13.0 && "$venv/bin/pip" install -q "$@"
}
make_venv venv-recbole recbole==1.2.1 'numpy<1.24' 'pandas<2.4' 'scipy<1.16' 'scikit-learn<1.8' 'setuptools<81'
make_venv venv-rectools 'rectools[torch]==0.19.0'

divrec() {  # name, overrides... (accuracy metrics only, like the peers; beyond-accuracy timed separately)
  local name=$1; shift
  echo "== divrec $name" >&2
  .venv/bin/divrec train hydra.run.dir="$logs/divrec-$name" callbacks.progress_bar.refresh_rate=0 logger=none \
    metrics.diversity=false "$@" > "$logs/divrec-$name.log" 2>&1
}
peer() {  # peer, dataset, args...
  local peer=$1 dataset=$2; shift 2
  echo "== $peer $dataset" >&2
  (cd "$logs" && "$venvs/venv-$peer/bin/python" "$tools/${peer}_sasrec.py" --dataset "$dataset" --data-dir "$data" "$@" \
    > "$logs/$peer-$dataset.log" 2> "$logs/$peer-$dataset.err")
}

# ml-100k: time to val NDCG@10 >= 0.06 from process start, seconds per epoch, evaluation time
divrec ml-100k trainer.max_epochs=20 data=ml-100k
peer rectools ml-100k --epochs 80 --target-ndcg 0.06  # patience 10 (its default) ends it
peer recbole ml-100k --epochs 3 --target-ndcg 0.06 --out "$logs/recbole-out"
# Beauty: seconds per training epoch and full evaluation of all 22,363 users
divrec beauty experiment=sasrec_beauty trainer.max_epochs=3
divrec beauty-diversity experiment=sasrec_beauty trainer.max_epochs=1 metrics.diversity=true
peer rectools beauty --epochs 1 --target-ndcg 1.0

.venv/bin/python "$here/summarize.py" "$logs" --out "$here"
