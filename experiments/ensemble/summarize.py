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


def compared(folder: Path, member: Path) -> str:
    """Δ test NDCG@10 of ``folder`` vs ``member`` and the paired test, over the seeds both completed."""
    common = sorted({r.name for r in seeds(folder)} & {r.name for r in seeds(member)})
    if folder.name == member.name or not common:
        return "–"
    ours, theirs = (per_user_values([f / s for s in common], METRIC) for f in (folder, member))
    if ours is None or theirs is None:
        return "–"
    test = paired_test(METRIC, folder.name, ours, member.name, theirs)
    return f"{test.mean_diff:+.4f} (p {test.permutation_p:.2g})"


def weights(run: Path) -> list[float]:
    metrics = json.loads((run / "metrics.json").read_text())
    return [metrics[k] for k in sorted(k for k in metrics if k.startswith("fitted/weight_"))]


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
    chosen = []
    for folder in [*ensembles, *(runs_dir / m for m in members)]:
        runs = seeds(folder)
        cells = [compared(folder, runs_dir / m) for m in members]
        lines.append("| " + " | ".join([*row(folder.name, runs), *cells]) + " |")
        picked = [weights(r) for r in runs]
        if any(picked):
            chosen.append(f"- {folder.name}: " + "; ".join(f"{r.name} {w}" for r, w in zip(runs, picked, strict=True)))
    notes = ["", "Paired tests over the seeds both rows completed (per-user values averaged over them first)."]
    if chosen:
        notes += ["", "Member weights chosen on validation (`model.weights=val`, in the name's member order):", *chosen]
    lines += notes
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
