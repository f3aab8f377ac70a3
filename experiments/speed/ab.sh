#!/usr/bin/env bash
# Before / after one change, measured side by side in one invocation: the two commits' sources (git archive copies,
# run through PYTHONPATH with this checkout's venv) alternate run by run, each under the timing lock.
#   experiments/speed/ab.sh 4609733 a48d30b          # N=3 (ml-100k start-up runs per commit) BEAUTY=1 (epoch runs)
# Output: outputs/speed-ab/<before>-<after>/{startup-<sha>-<i>.txt, beauty-<sha>/timeline.jsonl}, summary printed.
# ml-100k: experiments/speed/startup.py -n 1 experiment=sasrec_ml100k trainer.max_epochs=3 (default logger and
# callbacks: process start to val NDCG@10 >= 0.06). Beauty: experiment=sasrec_beauty, 3 epochs, logger=none, s per
# epoch from timeline.jsonl.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
export DIVREC_DATA_MIRROR=${DIVREC_DATA_MIRROR:-$(cd ../shared/data && pwd)}
before=$(git rev-parse --short "$1"); after=$(git rev-parse --short "$2")
out=outputs/speed-ab/$before-$after
mkdir -p "$out"
for sha in "$before" "$after"; do
  [[ -d "$out/src-$sha" ]] || { mkdir -p "$out/src-$sha"; git archive "$sha" src conf | tar -x -C "$out/src-$sha"; }
done
for i in $(seq 1 "${N:-3}"); do
  for sha in "$before" "$after"; do
    f="$out/startup-$sha-$i.txt"
    [[ -s "$f" ]] && continue
    PYTHONPATH="$out/src-$sha/src" flock /tmp/divrec-timing.lock .venv/bin/python experiments/speed/startup.py -n 1 \
      experiment=sasrec_ml100k trainer.max_epochs=3 > "$f.tmp" 2>&1 && mv "$f.tmp" "$f"
  done
done
if [[ "${BEAUTY:-1}" == 1 ]]; then
  for sha in "$before" "$after"; do
    d="$out/beauty-$sha"
    [[ -f "$d/metrics.json" ]] && continue
    PYTHONPATH="$out/src-$sha/src" flock /tmp/divrec-timing.lock .venv/bin/divrec train experiment=sasrec_beauty \
      trainer.max_epochs=3 callbacks.early_stopping.patience=100 seed=0 logger=none metrics.diversity=false \
      callbacks.progress_bar.refresh_rate=0 hydra.run.dir="$d" > "$d.log" 2>&1
  done
fi
.venv/bin/python - "$out" "$before" "$after" <<'PY'
import json, re, statistics, sys
from pathlib import Path
out, shas = Path(sys.argv[1]), sys.argv[2:]
print(f"| | {shas[0]} (before) | {shas[1]} (after) |\n|---|---|---|")
ttq = {s: [float(m) for f in sorted(out.glob(f"startup-{s}-*.txt"))
           for m in re.findall(r"wall s to val ndcg@10 >= 0.06: ([\d.]+)", f.read_text())] for s in shas}
print("| ml-100k s to val NDCG@10 >= 0.06 (runs; median) | "
      + " | ".join(f"{' '.join(map(str, ttq[s]))}; **{statistics.median(ttq[s]):.2f}**" if ttq[s] else "-" for s in shas) + " |")
rows = {}
for s in shas:
    t = out / f"beauty-{s}" / "timeline.jsonl"
    rows[s] = [json.loads(line) for line in t.read_text().splitlines()] if t.exists() else []
def cell(rs: list[dict], key: str) -> str:
    return " / ".join(f"{r[key]:.2f}" for r in rs) if rs else "-"
print("| Beauty s per training epoch (epochs 1 / 2 / 3) | " + " | ".join(cell(rows[s], "epoch_train_s") for s in shas) + " |")
print("| Beauty s per validation of 22,363 users | " + " | ".join(cell(rows[s], "val_s") for s in shas) + " |")
print("| Beauty val NDCG@10 after each epoch | " + " | ".join(" / ".join(f"{r['val/ndcg@10']:.4f}" for r in rows[s]) or "-" for s in shas) + " |")
PY
