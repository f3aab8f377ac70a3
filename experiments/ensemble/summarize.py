"""Table of ensembles against their members: test NDCG@10 mean ± std over seeds, the selected validation value,
and a paired sign-flip test over test users (pooled over seeds, as the leaderboard does) against every member.

    .venv/bin/python experiments/ensemble/summarize.py outputs/lb-ml100k ml-100k --out experiments/ensemble/ml-100k.md
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from divrec.compare.stats import paired_test, per_user_values

METRIC = "test/ndcg@10"


def seeds(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("seed*") if (p / "metrics.json").is_file())


def row(label: str, runs: list[Path]) -> list[str]:
    metrics = [json.loads((r / "metrics.json").read_text()) for r in runs]
    test = [m[METRIC] for m in metrics]
    std = statistics.stdev(test) if len(test) > 1 else 0.0
    val = statistics.mean(m["val/ndcg@10"] for m in metrics)
    hr = statistics.mean(m["test/hr@10"] for m in metrics)
    return [label, f"{statistics.mean(test):.4f} ± {std:.4f}", f"{val:.4f}", f"{hr:.4f}", str(len(runs))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lb", type=Path, help="the leaderboard out= folder (runs/ and ensembles/)")
    parser.add_argument("dataset")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    ensembles = sorted(p for p in (args.lb / "ensembles" / args.dataset).iterdir() if seeds(p))
    runs_dir = args.lb / "runs" / args.dataset  # a name's parts that are not runs (e.g. "+zscore") are no members
    members = sorted({m for e in ensembles for m in e.name.split("+") if (runs_dir / m).is_dir()})
    lines = ["| run | test NDCG@10 | val NDCG@10 | test HR@10 | seeds |" + "".join(f" Δ vs {m} (p) |" for m in members),
             "|---" * (5 + len(members)) + "|"]
    member_values = {m: per_user_values(seeds(args.lb / "runs" / args.dataset / m), METRIC) for m in members}
    for folder in [*ensembles, *(args.lb / "runs" / args.dataset / m for m in members)]:
        runs = seeds(folder)
        values = per_user_values(runs, METRIC)
        cells = []
        for m in members:
            if folder.name == m or values is None or member_values[m] is None:
                cells.append("–")
                continue
            test = paired_test(METRIC, folder.name, values, m, member_values[m])
            cells.append(f"{test.mean_diff:+.4f} (p {test.permutation_p:.2g})")
        lines.append("| " + " | ".join([*row(folder.name, runs), *cells]) + " |")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
