"""``divrec compare``'s outputs: runs.csv, groups.csv, compare.md (runs, configurations with mean ± std, the
significance test between the best two, failures), significance.json and the PNG plots."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from divrec import names
from divrec.compare.plots import write_plots
from divrec.compare.runs import RunRecord
from divrec.compare.stats import PairedTest, paired_test, per_user_metric_of, per_user_values
from divrec.compare.table import (
    CONFIG,
    ERROR,
    N_RUNS,
    RUN,
    STATUS,
    group_by_config,
    markdown,
    mean_std,
    param_columns,
    run_labels,
    runs_frame,
)
from divrec.report import write_atomic


@dataclass
class Comparison:
    runs: pd.DataFrame  # one row per run, best first
    groups: pd.DataFrame  # one row per configuration (seeds pooled), best mean first
    params: list[str]  # the varying parameters
    metric: str
    maximize: bool
    test: PairedTest | None  # best vs second-best configuration
    test_note: str  # why there is no test, or ""


def compare(runs: Sequence[RunRecord], metric: str, maximize: bool = True) -> Comparison:
    frame = runs_frame(runs, metric, maximize)
    groups = group_by_config(frame, metric, maximize)
    test, note = best_two_test(groups, runs, metric)
    return Comparison(frame, groups, param_columns(frame), metric, maximize, test, note)


def best_two_test(groups: pd.DataFrame, runs: Sequence[RunRecord], metric: str) -> tuple[PairedTest | None, str]:
    """Paired test over users between the best two configurations, on the per-user test version of ``metric``."""
    if len(groups) < 2:
        return None, "fewer than two completed configurations"
    per_user = per_user_metric_of(metric)
    by_label = dict(zip(run_labels(runs), (r.path for r in runs), strict=True))
    series = []
    for _, group in groups.head(2).iterrows():
        values = per_user_values([by_label[label] for label in str(group[RUN]).split(" ")], per_user)
        if values is None:
            return None, f"{names.PER_USER_FILE} with {per_user} missing for configuration {group[CONFIG]}"
        series.append((str(group[CONFIG]), values))
    (a_label, a), (b_label, b) = series
    return paired_test(per_user, a_label, a, b_label, b), ""


def _summary_columns(comparison: Comparison) -> list[str]:
    """Markdown run table: the selection metric, the same metric on test, the accuracy metrics at its K, time."""
    metric, columns = comparison.metric, list(comparison.runs.columns)
    k = metric.partition("@")[2]
    wanted = [metric, per_user_metric_of(metric)]
    wanted += [f"{names.TEST}/{n}@{k}" for n in (names.NDCG, names.HR, names.MRR)] if k else []
    wanted += [names.TRAIN_TIME, names.EPOCHS]
    return [c for c in dict.fromkeys(wanted) if c in columns]


def render_markdown(comparison: Comparison) -> str:
    runs, groups, metric = comparison.runs, comparison.groups, comparison.metric
    shown = _summary_columns(comparison)
    order = "highest" if comparison.maximize else "lowest"
    counts = runs[STATUS].value_counts().to_dict()
    parts = [
        f"# divrec compare: {len(runs)} runs, sorted by {metric} ({order} first)",
        "status: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in (names.COMPLETED, names.FAILED, names.INCOMPLETE)),
        f"varying parameters: {', '.join(comparison.params) or '(none)'}; every metric of every run: "
        f"{names.COMPARE_RUNS_CSV}",
        "## Runs",
        markdown(runs, [RUN, STATUS, *comparison.params, *shown]),
    ]
    if len(groups):
        group_cells = groups[[CONFIG, N_RUNS]].copy()
        for col in shown:
            stats = zip(groups[f"{col}_mean"], groups[f"{col}_std"], strict=True)
            group_cells[col] = [mean_std(m, s, col) for m, s in stats]
        parts += [
            "## Configurations (runs differing only by seed: mean ± std)",
            markdown(group_cells, list(group_cells)),
        ]
    parts += ["## Best two configurations: paired test over users", _test_text(comparison)]
    failed = runs[runs[STATUS] == names.FAILED]
    if len(failed):
        parts += ["## Failed runs", markdown(failed, [RUN, *comparison.params, ERROR])]
    return "\n\n".join(parts) + "\n"


def _p(value: float | None) -> str:
    return "n/a (scipy not installed or undefined)" if value is None or math.isnan(value) else f"{value:.3g}"


def _test_text(comparison: Comparison) -> str:
    t = comparison.test
    if t is None:
        return f"(no test: {comparison.test_note})"
    return "\n".join(
        [
            f"- A = {t.a}: mean {t.metric} {t.mean_a:.4f}",
            f"- B = {t.b}: mean {t.metric} {t.mean_b:.4f}",
            f"- {t.n_users} users, mean difference A − B = {t.mean_diff:+.4f}",
            f"- paired permutation test ({t.permutation}): p = {_p(t.permutation_p)}",
            f"- paired t-test: p = {_p(t.t_p)}; Wilcoxon signed-rank: p = {_p(t.wilcoxon_p)}",
        ]
    )


def write_outputs(comparison: Comparison, out: Path, plots: bool = True) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = [out / names.COMPARE_RUNS_CSV, out / names.COMPARE_GROUPS_CSV, out / names.COMPARE_REPORT]
    write_atomic(written[0], comparison.runs.to_csv(index=False))
    write_atomic(written[1], comparison.groups.to_csv(index=False))
    write_atomic(written[2], render_markdown(comparison))
    if comparison.test is not None:
        written.append(out / names.COMPARE_SIGNIFICANCE)
        write_atomic(written[-1], json.dumps(asdict(comparison.test), indent=2) + "\n")
    if plots:
        written += write_plots(comparison.runs, comparison.params, comparison.metric, out)
    return written
