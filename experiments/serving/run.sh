#!/usr/bin/env bash
# The serving benchmark record (experiments/serving/results/): `divrec serve` under load at concurrency 8 and 64 and
# a hot reload during load, ONNX vs eager latency at batch 1 and 64, and ANN retrieval at 1M synthetic items.
# Run on an otherwise idle machine, under the timing lock (one heavy job at a time):
#   flock /tmp/divrec-timing.lock experiments/serving/run.sh [beauty SASRec checkpoint]
# The server is pinned to core 0 and the load generator to core 1 (2-core machine), so neither slows the other.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd); cd "$root"
ckpt=${1:-outputs/reproductions/beauty/sasrec/seed0/checkpoints/best.ckpt}
# same model and catalog, other weights (the Beauty SASRec's last.ckpt is its best.ckpt: the best epoch was the last)
other=${RELOAD_CKPT:-outputs/reproductions/beauty/sasrec-last/seed0/checkpoints/best.ckpt}
out=experiments/serving/results; mkdir -p "$out"
work=$(mktemp -d /tmp/divrec-serve-bench.XXXXXX); trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
py=.venv/bin/python
start_server() {  # $1 = checkpoint or .onnx file; sets $server and $url
  local port; port=$($py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  taskset -c 0 .venv/bin/divrec serve ckpt_path="$1" port="$port" threads=1 feedback.url="sqlite:///$work/fb.sqlite" \
    hydra.run.dir="$work/run-$(basename "$1")" > "$work/server.log" 2>&1 & server=$!
  for _ in $(seq 120); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 1; done
  url=http://127.0.0.1:$port
}
load() { taskset -c 1 "$py" experiments/serving/load_test.py --url "$url" --n-items 12101 --requests 40000 --duration 20 "$@"; }
if [ "${SKIP_CKPT:-0}" != 1 ]; then  # the checkpoint, eager PyTorch
  start_server "$ckpt"
  if [ "${ONLY_RELOAD:-0}" != 1 ]; then
    load --concurrency 8 --out "$out/load_c8.json"
    load --concurrency 64 --out "$out/load_c64.json"
    load --concurrency 64 --users 22363 --out "$out/load_c64_users.json"
  fi
  load --concurrency 64 --reload-at 5 --reload-path "$other" --out "$out/load_c64_reload.json"
  curl -s "$url/metrics" > "$out/metrics_after_load.txt"
  kill $server; wait $server 2>/dev/null || true
fi
if [ "${SKIP_ONNX:-0}" != 1 ]; then  # its ONNX export, on onnxruntime
  .venv/bin/divrec export ckpt_path="$ckpt" format=onnx output="$work/served.onnx" k=10 \
    hydra.run.dir="$work/export-served" > "$work/export.log" 2>&1
  .venv/bin/divrec export ckpt_path="$other" format=onnx output="$work/other.onnx" k=10 \
    hydra.run.dir="$work/export-other" >> "$work/export.log" 2>&1
  start_server "$work/served.onnx"
  if [ "${ONLY_RELOAD:-0}" != 1 ]; then
    load --concurrency 8 --out "$out/onnx_load_c8.json"
    load --concurrency 64 --out "$out/onnx_load_c64.json"
  fi
  load --concurrency 64 --reload-at 5 --reload-path "$work/other.onnx" \
    --out "$out/onnx_load_c64_reload.json"
  kill $server; wait $server 2>/dev/null || true
fi
[ "${SKIP_BENCH:-0}" = 1 ] && exit 0
$py experiments/serving/export_bench.py "$ckpt" --out "$out/onnx_vs_eager.md" --threads 2 --torchscript
[ "${SKIP_ANN:-0}" = 1 ] || $py experiments/serving/ann_bench.py --items 1000000 --kinds ${ANN_KINDS:-ivf,hnsw} --threads 2 --ef-construction 100 \
  --out "$out/ann_1m.md"
