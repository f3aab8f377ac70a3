"""Summarise GPU-check runs: throughput from ``timeline.jsonl``, test metrics from ``metrics.json``, as Markdown.

    python experiments/gpu_check/summarize.py outputs/gpu_check/bf16-mixed outputs/gpu_check/32-true
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from divrec import names

SHOWN = [names.metric_key(names.TEST, name, 10) for name in (names.NDCG, names.HR, names.MRR)]


def summarize(run: Path) -> dict[str, object]:
    rows = [json.loads(line) for line in (run / "timeline.jsonl").read_text().splitlines()]
    steady = rows[1:] or rows  # epoch 0 includes CUDA warm-up
    metrics = json.loads((run / names.METRICS_FILE).read_text())
    return {
        "run": run.name,
        "epochs": len(rows),
        "epoch train s (median)": statistics.median(r["epoch_train_s"] for r in steady),
        "sequences/s": statistics.median(r["sequences_per_s"] for r in steady),
        "positions/s": statistics.median(r["positions_per_s"] for r in steady),
        "val s (median)": statistics.median(r["val_s"] for r in steady),
        "fit s": rows[-1]["fit_elapsed_s"],
        **{key: round(metrics[key], 4) for key in SHOWN},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    table = [summarize(run) for run in parser.parse_args().runs]
    header = list(table[0])
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in table:
        print("| " + " | ".join(str(row[key]) for key in header) + " |")


if __name__ == "__main__":
    main()
