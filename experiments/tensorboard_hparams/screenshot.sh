#!/usr/bin/env bash
# Screenshot of TensorBoard's HPARAMS view (and IMAGES view) over a multirun sweep, rendered by headless Chromium
# against a TensorBoard served on localhost. Run from the repository root:
#   experiments/tensorboard_hparams/screenshot.sh                 # runs the small grid below first
#   experiments/tensorboard_hparams/screenshot.sh outputs/train/multiruns/<time>   # an existing sweep folder
# Needs: divrec + tensorboard (the venv), Debian's `chromium` (apt-get install -y chromium), curl.
# Overridable: DIVREC (command), TENSORBOARD (command), CHROMIUM (command), PORT, OUT (folder for the PNGs).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIVREC=${DIVREC:-divrec}
TENSORBOARD=${TENSORBOARD:-tensorboard}
CHROMIUM=${CHROMIUM:-chromium}
PORT=${PORT:-6066}
OUT=${OUT:-$HERE}

if [[ $# -ge 1 ]]; then
  SWEEP=$1
else
  # a 2 x 2 grid on the synthetic dataset (seconds per run on a busy 2-core machine), 8 epochs each; only @10
  # accuracy metrics so that the table's metric columns fit on screen. Any sweep folder works instead (argument).
  SWEEP=outputs/train/multiruns/tensorboard_hparams_demo
  rm -rf "$SWEEP"
  $DIVREC train -m data=synthetic trainer=cpu trainer.max_epochs=8 model.dropout=0.1,0.3 optim.lr=0.001,0.003 \
    'metrics.ks=[10]' metrics.diversity=false callbacks.progress_bar.refresh_rate=0 \
    hydra.sweep.dir="$SWEEP"
fi
[[ -d $SWEEP ]] || { echo "error: sweep folder $SWEEP not found" >&2; exit 2; }

$TENSORBOARD --logdir "$SWEEP" --host 127.0.0.1 --port "$PORT" >"$OUT/.tensorboard.log" 2>&1 &
TB_PID=$!
trap 'kill "$TB_PID" 2>/dev/null || true; rm -f "$OUT/.tensorboard.log"' EXIT

# wait until the hparams plugin answers with the sweep's sessions (TensorBoard loads event files in the background)
URL="http://127.0.0.1:$PORT"
QUERY='{"experimentName":"","allowedStatuses":["STATUS_SUCCESS"],"colParams":[],"startIndex":0,"sliceSize":100}'
for _ in $(seq 1 90); do
  GROUPS_JSON=$(curl -sf -X POST -H 'Content-Type: application/json' -d "$QUERY" \
    "$URL/data/plugin/hparams/session_groups" || true)
  [[ $GROUPS_JSON == *'"sessionGroups"'*'"name"'* ]] && break
  sleep 1
done
RUNS=$(grep -o '"name": "[^"]*"' <<<"$GROUPS_JSON" | sort -u | wc -l)
echo "TensorBoard on $URL serves $RUNS runs with hparams from $SWEEP"

# the same table as text: what the HPARAMS tab received (runs, the hparams that differ, key final metrics)
SORTED='{"experimentName":"","allowedStatuses":["STATUS_SUCCESS"],"startIndex":0,"sliceSize":100,
  "colParams":[{"metric":{"tag":"val/ndcg@10","group":""},"order":"ORDER_DESC"}]}'
EXPERIMENT=$(curl -sf -X POST -H 'Content-Type: application/json' -d '{"experimentName":""}' \
  "$URL/data/plugin/hparams/experiment")
curl -sf -X POST -H 'Content-Type: application/json' -d "$SORTED" "$URL/data/plugin/hparams/session_groups" |
  python3 -c '
import json, math, sys
experiment, groups = json.loads(sys.argv[1]), json.load(sys.stdin)["sessionGroups"]
varying = [h["name"] for h in experiment["hparamInfos"] if h.get("differs")]
metrics = ["val/ndcg@10", "test/ndcg@10", "test/hr@10", "train_time_s", "epochs"]
print("| run | " + " | ".join(varying + metrics) + " |")
print("|" + " --- |" * (1 + len(varying) + len(metrics)))
for g in groups:
    values = {m["name"]["tag"]: m["value"] for m in g["metricValues"]}
    cells = [str(g["hparams"][h]) for h in varying] + [f"{values.get(m, math.nan):.4g}" for m in metrics]
    print("| " + g["name"] + " | " + " | ".join(cells) + " |")
' "$EXPERIMENT" >"$OUT/hparams_table.md"
echo "wrote $OUT/hparams_table.md"

shoot() {  # shoot <png> <fragment> <width,height>
  "$CHROMIUM" --headless --no-sandbox --disable-gpu --hide-scrollbars --force-device-scale-factor=1 \
    --window-size="$3" --virtual-time-budget=20000 --screenshot="$1" "$URL/#$2" >/dev/null 2>&1
  echo "wrote $1"
}
shoot "$OUT/hparams.png" hparams 3000,560
shoot "$OUT/attention_images.png" "images&tagFilter=layer_1" 1600,1400
shoot "$OUT/explanations.png" "text&tagFilter=explain" 1600,1000
