"""Tables for the pretrain → fine-tune study: test metrics per dataset, regime and arm (mean ± std over seeds), and a
paired test over users of fine-tuned vs scratch test NDCG@10 (each user's value averaged over the seeds).

    python experiments/pretrain_finetune/summarize.py outputs/pretrain_finetune [--plot curves.png] > results.md

``--plot``: val NDCG@10 per epoch of every seed-0 fine-tuned and scratch run, one panel per dataset and regime.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import matplotlib
import pandas as pd

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from divrec import names
from divrec.compare.stats import paired_test

NDCG10 = names.metric_key(names.TEST, names.NDCG, 10)
SHOWN = [NDCG10, names.metric_key(names.TEST, names.HR, 10), names.metric_key(names.VAL, names.NDCG, 10)]
RUN = re.compile(r"(?P<arm>[a-z]+)_s(?P<seed>\d+)$")
REGIMES = {
    "all": "all users",
    "users25": "25% of users",
    "users10": "10% of users",
    "users10long": "10% of users, no early stopping",
    "causal": "all users, causal pretraining",
}
SCRATCH_OF = {"users10long": "users10", "causal": "all"}  # regimes whose scratch arm is another regime's


def runs(root: Path) -> pd.DataFrame:
    rows = []
    for metrics_file in sorted(root.glob(f"*/*/*/{names.METRICS_FILE}")):
        folder = metrics_file.parent
        match = RUN.match(folder.name)
        if match is None:
            continue
        metrics = json.loads(metrics_file.read_text())
        rows.append(
            {"dataset": folder.parents[1].name, "regime": folder.parent.name, **match.groupdict(), "folder": folder}
            | {key: metrics.get(key) for key in [*SHOWN, names.EPOCHS, names.TRAIN_TIME]}
        )
    return pd.DataFrame(rows)


def per_user(folders: list[Path]) -> pd.Series:
    """Each test user's NDCG@10 averaged over the given runs (seeds)."""
    frames = [pd.read_parquet(f / names.PER_USER_FILE).set_index(names.USER_INDEX)[NDCG10] for f in folders]
    return pd.concat(frames, axis=1).mean(axis=1)


def table(frame: pd.DataFrame) -> list[str]:
    lines = [
        "| dataset | regime | arm | seeds | " + " | ".join(SHOWN) + " | epochs | train s |",
        "|---|---|---|---|" + "---|" * (len(SHOWN) + 2),
    ]
    for (dataset, regime, arm), group in frame.groupby(["dataset", "regime", "arm"], sort=True):
        cells = [f"{group[k].mean():.4f} ± {group[k].std(ddof=1) if len(group) > 1 else 0:.4f}" for k in SHOWN]
        lines.append(
            f"| {dataset} | {REGIMES.get(regime, regime)} | {arm} | {len(group)} | " + " | ".join(cells)
            + f" | {group[names.EPOCHS].mean():.0f} | {group[names.TRAIN_TIME].mean():.0f} |"
        )
    return lines


def tests(frame: pd.DataFrame) -> list[str]:
    lines = [
        "| dataset | regime | users | fine-tuned | scratch | gain | t-test p | Wilcoxon p | permutation p |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (dataset, regime), group in frame.groupby(["dataset", "regime"], sort=True):
        arms = {arm: list(g.folder) for arm, g in group.groupby("arm")}
        if regime in SCRATCH_OF:
            base = frame[(frame.dataset == dataset) & (frame.regime == SCRATCH_OF[regime]) & (frame.arm == "scratch")]
            arms.setdefault("scratch", list(base.folder))
        if not {"finetune", "scratch"} <= arms.keys():
            continue
        result = paired_test(NDCG10, "finetune", per_user(arms["finetune"]), "scratch", per_user(arms["scratch"]))
        fmt = lambda p: "—" if p is None else f"{p:.2g}"  # noqa: E731
        lines.append(
            f"| {dataset} | {REGIMES.get(regime, regime)} | {result.n_users} | {result.mean_a:.4f} | "
            f"{result.mean_b:.4f} | {result.mean_diff:+.4f} | {fmt(result.t_p)} | {fmt(result.wilcoxon_p)} | "
            f"{fmt(result.permutation_p)} |"
        )
    return lines


def plot(frame: pd.DataFrame, out: Path) -> None:
    """Seed-0 val NDCG@10 curves, fine-tuned vs scratch, one panel per (dataset, regime)."""
    seed0 = frame[(frame.seed == "0") & frame.arm.isin(["finetune", "scratch"])]
    panels = sorted(set(zip(seed0.dataset, seed0.regime, strict=True)))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.2), squeeze=False)
    for ax, (dataset, regime) in zip(axes[0], panels, strict=True):
        for row in seed0[(seed0.dataset == dataset) & (seed0.regime == regime)].itertuples():
            lines = (Path(row.folder) / names.TIMELINE_FILE).read_text().splitlines()
            curve = [json.loads(line).get(SHOWN[2]) for line in lines if line]
            ax.plot(range(1, len(curve) + 1), curve, label=row.arm)
        ax.set(title=f"{dataset}, {REGIMES.get(regime, regime)}", xlabel="epoch", ylabel=SHOWN[2])
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--plot", type=Path, default=None, help="write the val curves PNG here")
    args = parser.parse_args()
    frame = runs(args.root)
    if frame.empty:
        raise SystemExit("no finished runs found")
    if args.plot is not None:
        plot(frame, args.plot)
    print("\n".join(["## Test metrics (mean ± std over seeds)", "", *table(frame), "",
                     "## Fine-tuned vs scratch, paired over users (test NDCG@10, per-user mean over seeds)", "",
                     *tests(frame)]))


if __name__ == "__main__":
    main()
