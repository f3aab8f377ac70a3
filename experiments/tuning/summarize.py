"""Default vs tuned per dataset, from the folders experiments/tuning/run.sh writes: a Markdown table.

<runs>/<dataset>/<model>/default/seed<s>/metrics.json       the model's default config
<runs>/<dataset>/<model>/tune<B>/study/                      `divrec tune` within B minutes (trials.csv, best.yaml)
<runs>/<dataset>/<model>/tune<B>/seed<s>/metrics.json       the tuned experiment, retrained per seed
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path
from statistics import mean, stdev

import yaml

from divrec import names

TEST = names.metric_key(names.TEST, names.NDCG, 10)
VAL = names.metric_key(names.VAL, names.NDCG, 10)


def _runs(folder: Path) -> list[dict[str, float]]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob(f"seed*/{names.METRICS_FILE}"))]


def _spread(runs: list[dict[str, float]], key: str) -> str:
    values = [r[key] for r in runs if key in r]
    if not values:
        return "–"
    return f"{mean(values):.4f} ± {stdev(values):.4f} ({len(values)})" if len(values) > 1 else f"{values[0]:.4f} (1)"


def _study(folder: Path) -> dict[str, str]:
    """Trials (completed/pruned/failed), tuning minutes, default and best (single-seed) val, the trial best.yaml
    holds (the confirmed choice, ``tune.confirm``, where there was one) and its params."""
    rows = list(csv.DictReader((folder / "trials.csv").open())) if (folder / "trials.csv").is_file() else []
    if not rows:
        return {}
    count = {s: sum(r["state"] == s for r in rows) for s in ("completed", "pruned", "failed")}
    done = [r for r in rows if r["state"] == "completed" and r[VAL]]
    best = max(done, key=lambda r: (float(r[VAL]), -int(r["trial"]))) if done else None
    default = next((r for r in rows if r["default"] == "True" and r[VAL]), None)
    minutes = max(float(r["end_min"]) for r in rows if r["end_min"])
    fixed = set(list(rows[0])[: list(rows[0]).index("end_min") + 1])
    text = (folder / "best.yaml").read_text() if (folder / "best.yaml").is_file() else ""
    number = re.search(r"^# divrec tune: trial (\d+) of", text, flags=re.M)
    chosen = next((r for r in rows if number and r["trial"] == number.group(1)), best)
    confirmed = re.search(r"^# confirmed trial \d+ \(.* mean ([0-9.]+) over (\d+) seeds", text, flags=re.M)
    params = {k: v for k, v in chosen.items() if k not in fixed} if chosen else {}
    epochs = (yaml.safe_load(re.sub(r"^#.*\n", "", text, flags=re.M)) or {}).get("trainer", {}).get("max_epochs")
    return {
        "trials": f"{len(rows)} ({count['completed']}/{count['pruned']}/{count['failed']})",
        "minutes": f"{minutes:.1f}",
        "default_val": f"{float(default[VAL]):.4f}" if default else "–",
        "best_val": f"{float(best[VAL]):.4f} (trial {best['trial']})" if best else "–",
        "chosen": "–" if chosen is None else f"trial {chosen['trial']}" + (
            f" (mean {confirmed.group(1)} over {confirmed.group(2)} seeds)" if confirmed else " (single seed)"),
        "params": ", ".join(f"{k}={_short(v)}" for k, v in params.items()) + (f", epochs={epochs}" if epochs else ""),
    }


def _short(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    return value if number.is_integer() and "." not in value else f"{number:.3g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=Path, default=Path("outputs/tuning"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    lines = [
        "| dataset | model | default test NDCG@10 (seeds) | default val | budget (min) | trials (compl./pruned/failed) "
        "| min used | trial 0 val | best val | chosen (best.yaml) | tuned test NDCG@10 (seeds) | tuned val |",
        "|---" * 12 + "|",
    ]
    params = []
    for cell in sorted(p for p in args.runs.glob("*/*") if (p / "default").is_dir() or list(p.glob("tune*"))):
        default = _runs(cell / "default")
        budgets = [p for p in cell.glob("tune*") if p.is_dir() and re.fullmatch(r"tune\d+", p.name)]  # not logs/copies
        for tuned_dir in sorted(budgets, key=lambda p: int(p.name[4:])):
            study, tuned = _study(tuned_dir / "study"), _runs(tuned_dir)
            lines.append(
                f"| {cell.parent.name} | {cell.name} | {_spread(default, TEST)} | {_spread(default, VAL)} | "
                f"{tuned_dir.name[4:]} | {study.get('trials', '–')} | {study.get('minutes', '–')} | "
                f"{study.get('default_val', '–')} | {study.get('best_val', '–')} | {study.get('chosen', '–')} | "
                f"{_spread(tuned, TEST)} | "
                f"{_spread(tuned, VAL)} |"
            )
            params.append(f"- {cell.parent.name}/{cell.name}, {tuned_dir.name}: {study.get('params') or '–'}")
    text = "\n".join([*lines, "", "The chosen trial's values (best.yaml):", "", *params]) + "\n"
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
