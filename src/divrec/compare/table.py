"""The comparison tables: one row per run (varying parameters, status, every metric, error), and one row per
configuration (runs that differ only by seed) with mean and std of every metric."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from divrec import names
from divrec.compare.runs import CompareError, RunRecord

RUN, STATUS, ERROR, N_RUNS, CONFIG = "run", "status", "error", "n_runs", "config"
SEED = "seed"
_KEY = re.compile(r"^(?P<stage>[^/]+)/(?P<name>[^@]+)@(?P<k>\d+)$")


def _hashable(value: Any) -> Any:
    return str(value) if isinstance(value, list | dict) else value


def varying_params(runs: Sequence[RunRecord]) -> list[str]:
    """Overridden keys (in any run) whose value differs between runs, in first-seen order."""
    keys = list(dict.fromkeys(key for run in runs for key in run.params))
    return [key for key in keys if len({repr(_hashable(run.param(key))) for run in runs}) > 1]


def run_labels(runs: Sequence[RunRecord]) -> list[str]:
    """Each run's folder relative to the folder common to all runs (``<sweep time>/3``)."""
    paths = [run.path.resolve() for run in runs]
    if len(paths) == 1:
        return [paths[0].name]
    common = Path(*_common_parts([p.parts for p in paths]))
    return [str(p.relative_to(common)) for p in paths]


def _common_parts(parts: list[tuple[str, ...]]) -> tuple[str, ...]:
    common: list[str] = []
    for column in zip(*parts, strict=False):
        if len(set(column)) != 1:
            break
        common.append(column[0])
    return tuple(common)


def runs_frame(runs: Sequence[RunRecord], metric: str, maximize: bool = True) -> pd.DataFrame:
    """One row per run: ``run, status, <varying params…>, <metrics…>, error``, best ``metric`` first (runs without
    it, failed or incomplete, last). Raises if no run measured ``metric``."""
    params = varying_params(runs)
    metric_keys = sorted({key for run in runs for key in run.metrics}, key=_metric_order)
    if runs and metric not in metric_keys and any(r.status == names.COMPLETED for r in runs):
        raise CompareError(f"metric {metric!r} is in no run's metrics.json; choose --metric from {metric_keys}")
    rows = []
    for label, run in zip(run_labels(runs), runs, strict=True):
        row: dict[str, Any] = {RUN: label, STATUS: run.status}
        row |= {key: _hashable(run.param(key)) for key in params}
        row |= {key: run.metrics.get(key, math.nan) for key in metric_keys}
        row[ERROR] = run.error or ""
        rows.append(row)
    frame = pd.DataFrame(rows, columns=[RUN, STATUS, *params, *metric_keys, ERROR])
    if metric in frame:
        frame = frame.sort_values(metric, ascending=not maximize, na_position="last", kind="stable")
    frame = frame.reset_index(drop=True)
    frame.attrs = {"params": params, "metrics": metric_keys}  # column roles (a float column may be either)
    return frame


def _metric_order(key: str) -> tuple[int, str, int, str]:
    """val metrics, then test, then the rest; by name, then K."""
    m = _KEY.match(key)
    if not m:
        return (2, key, 0, "")
    return (0 if m["stage"] == names.VAL else 1, m["name"], int(m["k"]), m["stage"])


def metric_columns(frame: pd.DataFrame) -> list[str]:
    """The metric columns of a ``runs_frame`` table."""
    return list(frame.attrs.get("metrics", []))


def param_columns(frame: pd.DataFrame) -> list[str]:
    """The varying-parameter columns of a ``runs_frame`` table."""
    return list(frame.attrs.get("params", []))


def group_by_config(frame: pd.DataFrame, metric: str, maximize: bool = True) -> pd.DataFrame:
    """Completed runs grouped by every varying parameter except the seed: ``config, n_runs, runs`` then
    ``<metric>_mean`` / ``<metric>_std`` (sample std, NaN for one run) per metric; best mean first."""
    keys = [c for c in param_columns(frame) if c != SEED]
    metrics = metric_columns(frame)
    done = frame[frame[STATUS] == names.COMPLETED]
    rows = []
    for values, group in done.groupby(keys, sort=False, dropna=False) if keys else [((), done)]:
        values = values if isinstance(values, tuple) else (values,)
        row: dict[str, Any] = {CONFIG: config_label(dict(zip(keys, values, strict=True))), N_RUNS: len(group)}
        row |= dict(zip(keys, values, strict=True))
        row[RUN] = " ".join(group[RUN])
        for key in metrics:
            row[f"{key}_mean"] = group[key].mean()
            row[f"{key}_std"] = group[key].std(ddof=1) if len(group) > 1 else math.nan
        rows.append(row)
    groups = pd.DataFrame(rows)
    if groups.empty:
        return groups
    return groups.sort_values(f"{metric}_mean", ascending=not maximize, kind="stable").reset_index(drop=True)


def config_label(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={fmt_value(v)}" for k, v in params.items()) or "(all runs)"


def fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def fmt_metric(key: str, value: float) -> str:
    """Metrics to 4 decimals; train seconds to 1, epochs as integers."""
    if math.isnan(value):
        return ""
    return f"{value:.1f}" if key == names.TRAIN_TIME else f"{value:.0f}" if key == names.EPOCHS else f"{value:.4f}"


def mean_std(mean: float, std: float, key: str = "") -> str:
    if math.isnan(mean):
        return ""
    return fmt_metric(key, mean) if math.isnan(std) else f"{fmt_metric(key, mean)} ± {fmt_metric(key, std)}"


def markdown(frame: pd.DataFrame, columns: Sequence[str]) -> str:
    """A Markdown table of ``columns`` (floats: metrics to 4 decimals, parameters to 4 significant digits)."""
    metrics = set(metric_columns(frame))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for _, row in frame.iterrows():
        cells = []
        for col in columns:
            value = row[col]
            if col in metrics and isinstance(value, float):
                cells.append(fmt_metric(col, value))
            else:
                cells.append(fmt_value(value).replace("|", "\\|"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
