"""Accuracy–diversity fronts from ``divrec eval -m rerank=…`` sweeps: a Markdown table and one PNG per dataset.

    python experiments/diversity_tradeoff/report.py outputs/tradeoff-* --out experiments/diversity_tradeoff
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import yaml

from divrec import names

NDCG = names.metric_key(names.TEST, names.NDCG, 10)
AXES = [names.metric_key(names.TEST, n, 10) for n in (names.ILD, names.CATEGORY_COVERAGE, names.ITEM_COVERAGE)]
PARAMS = {"MMR": "lambda_", "DPP": "temperature", "Calibrated": "lambda_"}


def load_runs(folders: list[Path]) -> pd.DataFrame:
    rows = []
    for folder in folders:
        for metrics_file in sorted(folder.rglob("metrics.json")):
            cfg = yaml.safe_load((metrics_file.parent / "config.yaml").read_text())
            rerank = cfg.get("rerank") or {}
            kind = rerank.get("_target_", "none").rsplit(".", 1)[-1]
            param = PARAMS.get(kind)
            rows.append({
                "dataset": cfg["data"]["source"].get("name", cfg["data"]["source"]["_target_"].rsplit(".", 1)[-1]),
                "reranker": kind,
                "setting": "" if param is None else f"{param}={rerank[param]}",
                **json.loads(metrics_file.read_text()),
            })
    return pd.DataFrame(rows)


def relative(frame: pd.DataFrame) -> pd.DataFrame:
    """Each metric relative to the same dataset's un-reranked run (in %)."""
    base = frame[frame.reranker == "none"].set_index("dataset")
    out = frame.copy()
    for key in [NDCG, *AXES]:
        out[f"Δ{key} %"] = 100 * (frame[key] / frame.dataset.map(base[key]) - 1)
    return out


def plot(frame: pd.DataFrame, dataset: str, path: Path) -> None:
    data = frame[frame.dataset == dataset]
    fig, axes = plt.subplots(1, len(AXES), figsize=(5 * len(AXES), 4), constrained_layout=True)
    for ax, key in zip(axes, AXES, strict=True):
        for kind, group in data.groupby("reranker"):
            param = pd.to_numeric(group.setting.str.split("=").str[-1], errors="coerce")
            group = group.assign(param=param).sort_values("param")  # the line follows the re-ranker's parameter
            style = {"marker": "*", "s": 200} if kind == "none" else {"marker": "o"}
            ax.scatter(group[key], group[NDCG], label=kind, **style)
            if kind != "none":
                ax.plot(group[key], group[NDCG], alpha=0.5)
        ax.set_xlabel(key)
        ax.set_ylabel(NDCG)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"{dataset}: accuracy–diversity front (one trained SASRec, re-ranked top-200)")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def verdict(frame: pd.DataFrame, dataset: str, budget: float = 2.0) -> list[str]:
    """Best setting within an NDCG@10 loss budget, per re-ranker, and whether it meets the +20% targets; then which
    re-ranker's front is better: the largest ILD gain each reaches within several NDCG@10 loss budgets."""
    data = frame[(frame.dataset == dataset) & (frame.reranker != "none")]
    ndcg, ild, cat = f"Δ{NDCG} %", f"Δ{AXES[0]} %", f"Δ{AXES[1]} %"
    lines = []
    for kind, group in data.groupby("reranker"):
        within = group[group[ndcg] >= -budget]
        if within.empty:
            lines.append(f"- {dataset}, {kind}: no setting loses at most {budget:g}% NDCG@10")
            continue
        best = within.sort_values(ild, ascending=False).iloc[0]
        ok = best[ild] >= 20 and best[cat] >= 20
        lines.append(
            f"- {dataset}, {kind}: best within −{budget:g}% NDCG@10 is {best.setting} "
            f"(NDCG {best[ndcg]:+.1f}%, ILD {best[ild]:+.1f}%, CategoryCoverage {best[cat]:+.1f}%)"
            f" → {'meets' if ok else 'misses'} the +20%/+20% target"
        )
    for loss in (2.0, 5.0, 10.0, 20.0):
        gains = {kind: g[g[ndcg] >= -loss][ild].max() for kind, g in data.groupby("reranker")}
        shown = ", ".join(f"{k} {v:+.1f}%" if v == v else f"{k} —" for k, v in gains.items())
        lines.append(f"- {dataset}: largest ILD@10 gain losing at most {loss:g}% NDCG@10: {shown}")
    return lines


def markdown(table: pd.DataFrame) -> str:
    cell = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    rows = [" | ".join(cell(v) for v in row) for row in table.itertuples(index=False)]
    return "\n".join([" | ".join(table.columns), " | ".join("---" for _ in table.columns), *rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    frame = relative(load_runs(args.folders))
    columns = ["dataset", "reranker", "setting", NDCG, *AXES, *[c for c in frame.columns if c.startswith("Δ")]]
    lines = ["# Accuracy–diversity trade-off", ""]
    for dataset in frame.dataset.unique():
        plot(frame, dataset, args.out / f"front-{dataset}.png")
        table = frame[frame.dataset == dataset][columns].sort_values(["reranker", "setting"])
        lines += [f"## {dataset}", "", f"![front](front-{dataset}.png)", "", markdown(table), "",
                  *verdict(frame, dataset), ""]
    (args.out / "results.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
