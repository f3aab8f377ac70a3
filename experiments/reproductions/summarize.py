"""One table over the reproduction cells: mean ± std over seeds of test NDCG@10 / HR@10 (best-val checkpoint), the
validation NDCG@10 the model was selected on, median seconds per training epoch and per full validation pass.

Timings come from the seed-0 run of each cell only: the Beauty seed-0 runs had the machine to themselves, later seeds
ran at low priority beside other work (their accuracy counts, their clocks do not)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import mean, median, stdev

from divrec import names

NDCG, HR, VAL = "test/ndcg@10", "test/hr@10", "val/ndcg@10"


def cell_runs(cell: Path) -> list[dict]:
    runs = []
    for seed_dir in sorted(cell.glob("seed*")):
        metrics_file = seed_dir / names.METRICS_FILE
        if not metrics_file.is_file():
            continue
        metrics = json.loads(metrics_file.read_text())
        timeline = seed_dir / names.TIMELINE_FILE
        rows = [json.loads(r) for r in timeline.read_text().splitlines() if r.strip()] if timeline.is_file() else []
        metrics["epoch_s"] = median(r["epoch_train_s"] for r in rows) if rows else metrics[names.TRAIN_TIME]
        metrics["val_s"] = median(r["val_s"] for r in rows) if rows else float("nan")
        runs.append(metrics)
    return runs


def fmt(values: list[float]) -> str:
    return f"{mean(values):.4f} ± {stdev(values):.4f}" if len(values) > 1 else f"{values[0]:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=Path, default=Path("outputs/reproductions"))
    parser.add_argument("--out", type=Path, default=Path("experiments/reproductions/results.md"))
    args = parser.parse_args()
    header = ("| dataset | model | seeds | test NDCG@10 | test HR@10 | val NDCG@10 | epochs | s / epoch (seed 0) "
              "| s / val pass (seed 0) |")
    lines = [header,
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for dataset in sorted(p for p in args.runs.iterdir() if p.is_dir()):
        for cell in sorted(p for p in dataset.iterdir() if p.is_dir()):
            runs = cell_runs(cell)
            if not runs:
                continue
            cols = [fmt([r[k] for r in runs]) for k in (NDCG, HR, VAL)]
            epochs = f"{mean(r[names.EPOCHS] for r in runs):.0f}"
            timed = [r for r in runs if r.get("seed") == 0] or runs[:1]
            timing = [f"{timed[0]['epoch_s']:.1f}", f"{timed[0]['val_s']:.1f}"]
            row = " | ".join([dataset.name, cell.name, str(len(runs)), *cols, epochs, *timing])
            lines.append(f"| {row} |")
    failed = args.runs / "failed.txt"
    if failed.is_file():
        lines += ["", "Failed cells:", "", *[f"- {line}" for line in failed.read_text().splitlines()]]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
