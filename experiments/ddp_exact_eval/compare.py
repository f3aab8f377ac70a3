"""Compare the metrics.json of evaluations with 1, 2 and 3 processes; list the multirun's folders.

    python experiments/ddp_exact_eval/compare.py outputs/ddp_exact_eval --out experiments/ddp_exact_eval
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def evaluated(path: Path) -> dict[str, float]:
    metrics = json.loads((path / "metrics.json").read_text())
    return {k: float(v) for k, v in metrics.items() if k.startswith(("val/", "test/"))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    one = evaluated(args.runs / "eval-1")
    result: dict[str, object] = {"metrics": len(one)}
    lines = ["| processes | metrics compared | max abs difference vs 1 process |", "|---|---|---|"]
    fig, ax = plt.subplots(figsize=(5, 5))
    for n in (2, 3):
        many = evaluated(args.runs / f"eval-{n}")
        assert many.keys() == one.keys(), f"different metric keys with {n} processes"
        diff = max(abs(many[k] - one[k]) for k in one)
        result[f"max_abs_diff_{n}"] = diff
        lines.append(f"| {n} | {len(one)} | {diff:.3g} |")
        ax.scatter([one[k] for k in one], [many[k] for k in one], s=12, label=f"{n} processes")
    sweep = args.runs / "multirun"
    folders = sorted(p.name for p in sweep.iterdir())
    result["multirun_folders"] = folders
    result["multirun_metrics"] = [p.parent.name for p in sorted(sweep.glob("*/metrics.json"))]
    lim = max(max(one.values()), 1.0)
    ax.plot([0, lim], [0, lim], color="grey", lw=0.8)
    ax.set(xscale="symlog", yscale="symlog", xlabel="1 process", ylabel="N processes",
           title="ml-100k SASRec: every val/test metric")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "metrics.png", dpi=120)
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    lines += ["", f"multirun `seed=0,1` with 2 processes per job: folder contents {folders}; "
              f"metrics.json in {result['multirun_metrics']}"]
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
