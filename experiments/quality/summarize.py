"""Mean ± std over seeds of the newest multirun of each experiment: writes a Markdown table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import mean, stdev

import yaml

from divrec import names

METRICS = [(names.TEST, names.NDCG, 10), (names.TEST, names.HR, 10), (names.TEST, names.NDCG, 20),
           (names.TEST, names.MRR, 10), (names.VAL, names.NDCG, 10)]


def newest(multiruns: Path) -> Path:
    return sorted(p for p in multiruns.iterdir() if p.is_dir())[-1]


def summarize(sweep: Path) -> tuple[str, list[dict]]:
    runs = []
    for job in sorted(p for p in sweep.iterdir() if (p / "metrics.json").exists()):
        metrics = json.loads((job / "metrics.json").read_text())
        cfg = yaml.safe_load((job / "config.yaml").read_text())
        runs.append({"seed": cfg["seed"], "metrics": metrics, "dataset": cfg["task_name"]})
    return sweep.name, runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("multiruns", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    keys = [names.metric_key(*m) for m in METRICS]
    lines = ["| dataset | seeds | " + " | ".join(keys) + " | epochs | train s |", "|---" * (len(keys) + 4) + "|"]
    for folder in args.multiruns:
        sweep, runs = summarize(newest(folder))
        cells = []
        for key in [*keys, names.EPOCHS, names.TRAIN_TIME]:
            values = [r["metrics"][key] for r in runs]
            spread = stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{mean(values):.4f} ± {spread:.4f}" if key in keys else f"{mean(values):.0f}")
        seeds = ",".join(str(r["seed"]) for r in runs)
        lines.append(f"| {runs[0]['dataset']} ({sweep}) | {seeds} | " + " | ".join(cells) + " |")
        for r in runs:
            per_seed = " | ".join(f"{r['metrics'][k]:.4f}" for k in keys)
            lines.append(f"| seed {r['seed']} | | {per_seed} | {r['metrics'][names.EPOCHS]} | "
                         f"{r['metrics'][names.TRAIN_TIME]:.0f} |")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
