"""Tables for the pretrain → fine-tune study: test metrics per dataset, regime and arm (mean ± std over seeds), and a
paired test over users of fine-tuned vs scratch test NDCG@10 (each user's value averaged over the seeds).

    python experiments/pretrain_finetune/summarize.py outputs/pretrain_finetune > results.md
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pandas as pd

from divrec import names
from divrec.compare.stats import paired_test

NDCG10 = names.metric_key(names.TEST, names.NDCG, 10)
SHOWN = [NDCG10, names.metric_key(names.TEST, names.HR, 10), names.metric_key(names.VAL, names.NDCG, 10)]
RUN = re.compile(r"(?P<arm>[a-z]+)_s(?P<seed>\d+)$")
REGIMES = {"all": "all users", "users25": "25% of users", "users10": "10% of users"}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    frame = runs(parser.parse_args().root)
    if frame.empty:
        raise SystemExit("no finished runs found")
    print("\n".join(["## Test metrics (mean ± std over seeds)", "", *table(frame), "",
                     "## Fine-tuned vs scratch, paired over users (test NDCG@10, per-user mean over seeds)", "",
                     *tests(frame)]))


if __name__ == "__main__":
    main()
