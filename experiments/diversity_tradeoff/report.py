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


def load_csvs(files: list[Path], extra: tuple[str, ...] | list[str] = ()) -> pd.DataFrame:
    frames = [pd.read_csv(f, keep_default_na=False).assign(source="explore.py") for f in files]
    columns = ["dataset", *extra, "stage", "reranker", "setting", "N", *KEYS, "source"]
    return pd.concat(frames, ignore_index=True)[columns]


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
    groups = [c for c in ("dataset", "model", "stage") if c in frame]  # ``model``: one baseline per checkpoint
    base = frame[frame.reranker == "none"].groupby(groups)[list(KEYS)].first()
    index = pd.MultiIndex.from_frame(frame[groups])
    for key in KEYS:
        frame[f"Δ{key}"] = 100 * (frame[key].to_numpy() / base[key].reindex(index).to_numpy() - 1)
    return frame.drop_duplicates([*groups, "family", "param"])


def paired(frame: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """One row per setting with val and test side by side."""
    data = frame[frame.dataset == dataset]
    cols = ["family", "method", "param", "reranker", "setting", "N"]
    val, test = data[data.stage == names.VAL], data[data.stage == names.TEST]
    return val.merge(test, on=cols, suffixes=("_val", "_test"))


def choose(table: pd.DataFrame, budget: float = BUDGET) -> pd.DataFrame:
    """Per method (re-ranker and its fixed options; N and λ/T are the setting): the setting losing ≤ ``budget``%
    validation NDCG@10 with the largest min(ΔILD, ΔCategoryCoverage) on validation."""
    ok = table[(table[f"Δ{NDCG}_val"] >= -budget) & (table.reranker != "none")].copy()
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

# ---- Several independently trained models (``explore.py sweep --model seedK``): mean over models ----------------

MARGIN = 1.5  # % val NDCG@10 loss allowed when choosing on the mean over models (a safety margin under BUDGET)
SETTING = ["dataset", "family", "method", "param", "reranker", "setting", "N"]
GAINS = [f"Δ{k}" for k in KEYS]
# the re-ranker families of the front comparison: (label, method prefix); the first match names a method
FRONTS = (
    ("MMR-sum (softmax)", "mmr relevance=softmax aggregate=sum"),
    ("MMR-sum (min–max)", "mmr aggregate=sum"),
    ("classic MMR (cosine)", "mmr similarity=categories"),
    ("DPP + identity", "dpp identity_mix"),
    ("classic DPP", "dpp similarity=categories"),
    ("xQuAD", "xquad"),
)


def over_models(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per setting: val and test columns ``<key>_<stage>`` (mean over models), ``<key>_<stage>_std`` and
    ``<key>_<stage>_<model>`` for the Δ% columns, and ``models`` (how many models have the setting)."""
    parts = []
    for stage in (names.VAL, names.TEST):
        data = frame[frame.stage == stage]
        grouped = data.groupby(SETTING, dropna=False)
        mean = grouped[[*KEYS, *GAINS]].mean().add_suffix(f"_{stage}")
        std = grouped[GAINS].std(ddof=1).add_suffix(f"_{stage}_std")
        wide = data.pivot_table(index=SETTING, columns="model", values=GAINS, dropna=False)
        wide.columns = [f"{key}_{stage}_{model}" for key, model in wide.columns]
        parts += [mean, std, wide]
        if stage == names.VAL:
            parts.append(grouped.size().rename("models"))
    return pd.concat(parts, axis=1).reset_index()


def front_label(method: str) -> str:
    return next((label for label, prefix in FRONTS if method.startswith(prefix)), method)


def pareto(points: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """The points no other point beats in both ``x`` and ``y`` (larger is better), sorted by ``x``."""
    points = points.sort_values([x, y], ascending=False)
    keep = points[y] > points[y].cummax().shift(fill_value=-float("inf"))
    return points[keep].sort_values(x)


def plot_seeds(table: pd.DataFrame, dataset: str, n_models: int, path: Path) -> None:
    """Mean-over-models fronts (val on top, test below): ΔNDCG@10 against ΔILD, ΔCatCov, ΔItemCov; one line per
    re-ranker (its Pareto front over all its N and λ/T), faint dots for every setting."""
    fig, axes = plt.subplots(2, 3, figsize=(18, 10), constrained_layout=True)
    table = table[table.reranker != "none"].assign(front=lambda t: t.method.map(front_label))
    for row, stage in enumerate((names.VAL, names.TEST)):
        for ax, key in zip(axes[row], (ILD, COV, ITEMS), strict=True):
            x, y = f"Δ{key}_{stage}", f"Δ{NDCG}_{stage}"
            for i, (label, group) in enumerate(sorted(table.groupby("front"), key=lambda g: g[0])):
                color = f"C{i}"
                ax.scatter(group[x], group[y], s=8, alpha=0.25, color=color)
                front = pareto(group, x, y)
                ax.plot(front[x], front[y], marker="o", ms=4, color=color, label=label)
            ax.scatter([0], [0], marker="*", s=250, color="black", label="none", zorder=5)
            ax.axhline(-BUDGET, ls="--", color="grey", lw=0.8)
            if key != ITEMS:
                ax.axvline(TARGET, ls=":", color="grey", lw=0.8)
            ax.set_ylim(max(-15.0, table[y].min() - 1), table[y].max() + 1)
            ax.set_xlabel(f"{stage} Δ{key} % (mean of {n_models} models)")
            ax.set_ylabel(f"{stage} Δ{NDCG} %")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{dataset}: accuracy–diversity fronts, mean over {n_models} independently trained SASRec models; "
                 "dashed: −2% NDCG@10, dotted: +20%")
    fig.savefig(path, dpi=90)
    plt.close(fig)


def pm(row: pd.Series, key: str, stage: str) -> str:
    return f"{row[f'Δ{key}_{stage}']:+.1f} ± {row[f'Δ{key}_{stage}_std']:.1f}%"


def seeds_verdict(table: pd.DataFrame, models: list[str], budget: float) -> list[str]:
    """Chosen per method on the MEAN val numbers (≤ ``budget``% loss), with its mean ± std test numbers."""
    why = (f"a safety margin under the −{BUDGET:g}% budget, fixed before looking at test" if budget < BUDGET
           else "the issue's budget itself, no margin")
    lines = [f"Chosen per method on the mean over models of validation (mean val ΔNDCG@10 ≥ −{budget:g}%: {why}; "
             f"then largest min(ΔILD, ΔCategoryCoverage) of the means). Test: mean ± std over the {len(models)} "
             f"models; target = mean test ΔNDCG ≥ −{BUDGET:g}% and ΔILD, ΔCatCov ≥ +{TARGET:g}%.", "",
             "method | λ or T | N | val ΔNDCG | val ΔILD | val ΔCatCov | test ΔNDCG | test ΔNDCG per model | "
             "test ΔILD@10 | test ΔCatCov@10 | test ΔItemCov@10 | target met on mean test (models meeting it)",
             " | ".join(["---"] * 12)]
    for _, r in choose(table, budget).iterrows():
        met = [r[f"Δ{NDCG}_test{s}"] >= -BUDGET and r[f"Δ{ILD}_test{s}"] >= TARGET
               and r[f"Δ{COV}_test{s}"] >= TARGET for s in ["", *[f"_{m}" for m in models]]]
        per = " / ".join(f"{r[f'Δ{NDCG}_test_{m}']:+.1f}" for m in models)
        lines.append(f"{r['method']} | {r['param']:g} | {r['N']} | {r[f'Δ{NDCG}_val']:+.1f}% | "
                     f"{r[f'Δ{ILD}_val']:+.1f}% | {r[f'Δ{COV}_val']:+.1f}% | {pm(r, NDCG, 'test')} | {per} | "
                     f"{pm(r, ILD, 'test')} | {pm(r, COV, 'test')} | {pm(r, ITEMS, 'test')} | "
                     f"{'yes' if met[0] else 'no'} ({sum(met[1:])}/{len(models)})")
    return lines


def seeds_fronts(table: pd.DataFrame) -> list[str]:
    """Per re-ranker: the largest mean ΔILD (and mean ΔCatCov) among settings within a mean ΔNDCG budget."""
    lines = ["Which front is better: per re-ranker (any N and λ/T), the largest mean ΔILD@10 (in brackets the "
             "largest mean ΔCategoryCoverage@10) among settings within a mean NDCG@10 loss budget:", "",
             "re-ranker | val −2% | test −2% | test −5% | test −10% | most diverse setting: test ΔNDCG, ILD@10",
             " | ".join(["---"] * 6)]
    table = table[table.reranker != "none"].assign(front=lambda t: t.method.map(front_label))
    for label, rows in sorted(table.groupby("front"), key=lambda g: g[0]):
        cells = []
        for stage, loss in ((names.VAL, 2.0), (names.TEST, 2.0), (names.TEST, 5.0), (names.TEST, 10.0)):
            ok = rows[rows[f"Δ{NDCG}_{stage}"] >= -loss]
            best = f"{ok[f'Δ{ILD}_{stage}'].max():+.1f}% ({ok[f'Δ{COV}_{stage}'].max():+.1f}%)"
            cells.append("—" if ok.empty else best)
        end = rows.loc[rows[f"{ILD}_test"].idxmax()]
        cells.append(f"{end['method']} {end['param']:g} N={end['N']}: {end[f'Δ{NDCG}_test']:+.1f}%, "
                     f"{end[f'{ILD}_test']:.3f}")
        lines.append(f"{label} | " + " | ".join(cells))
    return lines


def report_seeds(frame: pd.DataFrame, out: Path) -> list[str]:
    """``results-seeds.md``'s sections, ``seeds-<dataset>.csv`` and ``front-seeds-<dataset>.png``."""
    lines = ["# Accuracy–diversity trade-off over independently trained models (generated by report.py --seeds)", ""]
    for dataset in sorted(frame.dataset.unique()):
        data = frame[frame.dataset == dataset]
        models = sorted(data.model.unique())
        table = over_models(data)
        table = table[table.models == len(models)]  # settings evaluated on every model only
        table.sort_values(["family", "param"]).to_csv(out / f"seeds-{dataset}.csv", index=False)
        plot_seeds(table, dataset, len(models), out / f"front-seeds-{dataset}.png")
        base = data[data.reranker == "none"].groupby("stage")[list(KEYS)].agg(["mean", "std"])
        cols = ["family", "param", *[f"Δ{k}_val" for k in (NDCG, ILD, COV)]]
        shown = table.sort_values(["family", "param"])[cols].assign(
            **{f"test Δ{k}": [pm(r, k, names.TEST) for _, r in table.sort_values(["family", "param"]).iterrows()]
               for k in KEYS})
        lines += [f"## {dataset} ({len(models)} models: {', '.join(models)})", "",
                  f"![front](front-seeds-{dataset}.png)", "",
                  "No re-ranking, mean ± std over models: " + "; ".join(
                      f"{s} " + ", ".join(f"{k} {base.loc[s, (k, 'mean')]:.4f} ± {base.loc[s, (k, 'std')]:.4f}"
                                          for k in KEYS) for s in (names.VAL, names.TEST)), "",
                  "### Chosen on validation with a margin (the primary rule)", "",
                  *seeds_verdict(table, models, MARGIN), "",
                  "### Chosen on validation with the plain budget (for comparison)", "",
                  *seeds_verdict(table, models, BUDGET), "", *seeds_fronts(table), "",
                  "All settings (mean val Δ%, mean ± std test Δ% against each model's own no re-ranking; per-model "
                  f"values in seeds-{dataset}.csv):", "", markdown(shown), ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, nargs="*", default=[])
    parser.add_argument("--runs", type=Path, nargs="*", default=[])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", action="store_true", help="CSVs with a model column: report means over models")
    args = parser.parse_args()
    if args.seeds:
        lines = report_seeds(with_gains(load_csvs(args.csv, ["model"])), args.out)
        (args.out / "results-seeds.md").write_text("\n".join(lines))
        print("\n".join(lines))
        return
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
