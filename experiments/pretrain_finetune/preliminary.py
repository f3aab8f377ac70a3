"""One-seed view of pretrain / finetune / scratch runs: table (results_<name>.md/.json), val NDCG@10 per epoch (PNG).

    python experiments/pretrain_finetune/preliminary.py outputs/pretrain_finetune/ml100k \
        --out experiments/pretrain_finetune
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

KEYS = ("val/ndcg@10", "val/hr@10", "test/ndcg@10", "test/hr@10", "epochs", "train_time_s")
KINDS = ("pretrain", "finetune", "scratch")


def load(runs: Path) -> list[dict]:
    rows = []
    for kind in KINDS:
        for run in sorted(runs.glob(f"{kind}_s*")):
            if (run / "metrics.json").is_file():
                metrics = json.loads((run / "metrics.json").read_text())
                curve = [json.loads(line) for line in (run / "timeline.jsonl").read_text().splitlines() if line]
                rows.append({"run": kind, "seed": run.name.split("_s")[-1], **{k: metrics.get(k) for k in KEYS},
                             "curve": [c.get("val/ndcg@10") for c in curve]})
    return rows


def table(rows: list[dict], title: str) -> str:
    lines = [f"### {title}", "", "| run | seed | " + " | ".join(KEYS) + " |", "|" + " --- |" * (len(KEYS) + 2)]
    for r in rows:
        cells = [f"{r[k]:.4f}" if isinstance(r[k], float) and k != "train_time_s" else str(r[k]) for k in KEYS]
        lines.append(f"| {r['run']} | {r['seed']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", type=Path)
    parser.add_argument("--out", type=Path, default=Path("."))
    args = parser.parse_args()
    rows = load(args.runs)
    args.out.mkdir(parents=True, exist_ok=True)
    name = args.runs.name
    (args.out / f"results_{name}.md").write_text(table(rows, name))
    (args.out / f"results_{name}.json").write_text(json.dumps(rows, indent=1))
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for r in rows:
        ax.plot(range(1, len(r["curve"]) + 1), r["curve"], marker="o", label=f"{r['run']} (seed {r['seed']})")
    ax.set(xlabel="epoch", ylabel="val NDCG@10", title=f"{name}: pretrain → finetune vs scratch")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / f"curves_{name}.png", dpi=120)
    print(table(rows, name))


if __name__ == "__main__":
    main()
