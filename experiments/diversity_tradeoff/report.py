"""Accuracy–diversity fronts: a Markdown table, a verdict chosen on validation, and one PNG per dataset.

Reads ``explore.py sweep`` CSVs and/or ``divrec eval -m rerank=…`` run folders (their ``metrics.json`` holds val and
test), puts every re-ranker family on one plot per dataset (test NDCG@10 against ILD@10, CategoryCoverage@10,
ItemCoverage@10), and picks, per family, the setting with the largest validation gain that loses at most 2%
validation NDCG@10; its TEST numbers are what the verdict reports.

    python experiments/diversity_tradeoff/report.py --csv grid-*.csv --runs outputs/tradeoff-* --out <folder>
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

KEYS = ("ndcg@10", "ild@10", "category_coverage@10", "item_coverage@10")
NDCG, ILD, COV, ITEMS = KEYS
SWEPT = ("lambda_", "temperature")  # the parameter a family's line follows
BUDGET = 2.0  # % NDCG@10 loss
TARGET = 20.0  # % gain of ILD@10 and CategoryCoverage@10


def load_runs(folders: list[Path]) -> pd.DataFrame:
    """One row per (run, stage) from ``divrec eval`` folders."""
    rows = []
    for folder in folders:
        for metrics_file in sorted(folder.rglob("metrics.json")):
            cfg = yaml.safe_load((metrics_file.parent / "config.yaml").read_text())
            metrics = json.loads(metrics_file.read_text())
            rerank = dict(cfg.get("rerank") or {})
            kind = rerank.pop("_target_", "none").rsplit(".", 1)[-1].lower()
            setting = " ".join(f"{k}={v}" for k, v in rerank.items() if k != "window" or v is not None)
            source = cfg["data"]["source"]
            for stage in (names.VAL, names.TEST):
                rows.append({
                    "dataset": source.get("name", source["_target_"].rsplit(".", 1)[-1]), "stage": stage,
                    "reranker": kind, "setting": setting if kind != "none" else "",
                    "N": cfg["metrics"]["rerank_candidates"] if kind != "none" else 0,
                    **{key: metrics[f"{stage}/{key}"] for key in KEYS}, "source": "divrec eval",
                })
    return pd.DataFrame(rows)


def load_csvs(files: list[Path]) -> pd.DataFrame:
    frames = [pd.read_csv(f, keep_default_na=False).assign(source="explore.py") for f in files]
    return pd.concat(frames, ignore_index=True)[["dataset", "stage", "reranker", "setting", "N", *KEYS, "source"]]


def with_gains(frame: pd.DataFrame) -> pd.DataFrame:
    """Adds ``family`` (re-ranker + fixed options + N), ``param`` (the swept value) and Δ% against the same
    dataset's and stage's plain ranking (first ``none`` row)."""
    frame = frame.copy()
    frame["N"] = pd.to_numeric(frame["N"])
    parts = frame.setting.fillna("").str.split()
    frame["param"] = [next((float(p.split("=")[1]) for p in ps if p.split("=")[0] in SWEPT), float("nan"))
                      for ps in parts]
    fixed = [" ".join(p for p in ps if p.split("=")[0] not in SWEPT) for ps in parts]
    frame["method"] = [f"{r} {f}".strip() for r, f in zip(frame.reranker, fixed, strict=True)]
    frame["family"] = [f"{m} N={n}" if r != "none" else "none" for r, m, n in zip(frame.reranker, frame.method,
                                                                                     frame.N, strict=True)]
    base = frame[frame.reranker == "none"].groupby(["dataset", "stage"])[list(KEYS)].first()
    for key in KEYS:
        ref = [base.loc[(d, s), key] for d, s in zip(frame.dataset, frame.stage, strict=True)]
        frame[f"Δ{key}"] = 100 * (frame[key] / ref - 1)
    return frame.drop_duplicates(["dataset", "stage", "family", "param"])


def paired(frame: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """One row per setting with val and test side by side."""
    data = frame[frame.dataset == dataset]
    cols = ["family", "method", "param", "reranker", "setting", "N"]
    val, test = data[data.stage == names.VAL], data[data.stage == names.TEST]
    return val.merge(test, on=cols, suffixes=("_val", "_test"))


def choose(table: pd.DataFrame) -> pd.DataFrame:
    """Per method (re-ranker and its fixed options; N and λ/T are the setting): the setting losing ≤ BUDGET%
    validation NDCG@10 with the largest min(ΔILD, ΔCategoryCoverage) on validation."""
    ok = table[(table[f"Δ{NDCG}_val"] >= -BUDGET) & (table.reranker != "none")].copy()
    ok["score_val"] = ok[[f"Δ{ILD}_val", f"Δ{COV}_val"]].min(axis=1)
    return ok.sort_values("score_val", ascending=False).groupby("method").head(1)


def plot(frame: pd.DataFrame, dataset: str, path: Path) -> None:
    data = frame[(frame.dataset == dataset) & (frame.stage == names.TEST)]
    axes_keys = (ILD, COV, ITEMS)
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.5), constrained_layout=True)
    for ax, key in zip(axes, axes_keys, strict=True):
        for family, group in data.groupby("family"):
            group = group.sort_values("param")
            if family == "none":
                ax.scatter(group[key], group[NDCG], marker="*", s=250, color="black", label="none", zorder=5)
            else:
                ax.plot(group[key], group[NDCG], marker="o", ms=4, alpha=0.8, label=family)
        base = data[data.family == "none"].iloc[0]
        ax.axhline(base[NDCG] * (1 - BUDGET / 100), ls="--", color="grey", lw=0.8)
        if key != ITEMS:
            ax.axvline(base[key] * (1 + TARGET / 100), ls=":", color="grey", lw=0.8)
        ax.set_xlabel(f"test {key}")
        ax.set_ylabel(f"test {NDCG}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{dataset}: accuracy–diversity fronts (one SASRec checkpoint, re-ranked top-N); dashed: −2% NDCG, "
                 "dotted: +20%")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def verdict(table: pd.DataFrame, dataset: str) -> list[str]:
    best = choose(table)
    lines = [f"Chosen on validation (≤ {BUDGET:g}% val NDCG@10 loss, largest min(ΔILD, ΔCategoryCoverage) on val); "
             "test numbers:", "",
             "method | λ or T | N | val ΔNDCG | val ΔILD@10 | val ΔCatCov@10 | test ΔNDCG | test ΔILD@10 | "
             "test ΔCatCov@10 | test ΔItemCov@10 | target met on test",
             "--- | --- | --- | --- | --- | --- | --- | --- | --- | --- | ---"]
    for _, r in best.iterrows():
        met = r[f"Δ{NDCG}_test"] >= -BUDGET and r[f"Δ{ILD}_test"] >= TARGET and r[f"Δ{COV}_test"] >= TARGET
        lines.append(f"{r['method']} | {r['param']:g} | {r['N']} | {r[f'Δ{NDCG}_val']:+.1f}% | "
                     f"{r[f'Δ{ILD}_val']:+.1f}% | {r[f'Δ{COV}_val']:+.1f}% | {r[f'Δ{NDCG}_test']:+.1f}% | "
                     f"{r[f'Δ{ILD}_test']:+.1f}% | {r[f'Δ{COV}_test']:+.1f}% | {r[f'Δ{ITEMS}_test']:+.1f}% | "
                     f"{'yes' if met else 'no'}")
    lines += ["", "Largest test ILD@10 gain per method (any N) within a test NDCG@10 loss budget:", "",
              "method | −2% | −5% | −10%", "--- | --- | --- | ---"]
    for method in sorted(m for m in table.method.unique() if m != "none"):
        rows = table[table.method == method]
        gains = [rows[rows[f"Δ{NDCG}_test"] >= -loss][f"Δ{ILD}_test"].max() for loss in (2.0, 5.0, 10.0)]
        lines.append(f"{method} | " + " | ".join("—" if g != g else f"{g:+.1f}%" for g in gains))
    return lines


def markdown(table: pd.DataFrame) -> str:
    cell = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    rows = [" | ".join(cell(v) for v in row) for row in table.itertuples(index=False)]
    return "\n".join([" | ".join(table.columns), " | ".join("---" for _ in table.columns), *rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, nargs="*", default=[])
    parser.add_argument("--runs", type=Path, nargs="*", default=[])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    parts = [f for f in (load_csvs(args.csv) if args.csv else None, load_runs(args.runs) if args.runs else None)
             if f is not None]
    frame = with_gains(pd.concat(parts, ignore_index=True))
    lines = ["# Accuracy–diversity trade-off (generated by report.py)", ""]
    for dataset in sorted(frame.dataset.unique()):
        plot(frame, dataset, args.out / f"front-{dataset}.png")
        table = paired(frame, dataset)
        cols = ["family", "param", *[f"{k}_test" for k in KEYS], f"Δ{NDCG}_val", f"Δ{ILD}_val", f"Δ{COV}_val",
                *[f"Δ{k}_test" for k in KEYS]]
        lines += [f"## {dataset}", "", f"![front](front-{dataset}.png)", "", *verdict(table, dataset), "",
                  "All settings (Δ in % against no re-ranking, same stage):", "",
                  markdown(table.sort_values(["family", "param"])[cols]), ""]
    (args.out / "results.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
