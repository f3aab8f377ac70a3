"""Comparison plots (PNG): every plotted metric against every varying parameter, one figure per parameter, and an
accuracy-vs-diversity scatter when the runs measured diversity metrics."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from divrec import names
from divrec.compare.table import STATUS

ACCURACY = (names.NDCG, names.HR, names.MRR)
DIVERSITY = (names.ILD, names.NOVELTY, names.GINI, names.CATEGORY_COVERAGE, names.TAIL_SHARE, names.ENTROPY)
FEW = 6  # up to this many distinct values, a numeric parameter is plotted as evenly spaced slots
_KEY = re.compile(r"^(?P<stage>[^/]+)/(?P<name>[^@]+)@(?P<k>\d+)$")


def plotted_metrics(columns: Sequence[str], metric: str) -> list[str]:
    """The selection metric, then the test accuracy and diversity metrics at its cut-off K, then train time."""
    m = _KEY.match(metric)
    k = m["k"] if m else "10"
    test = [f"{names.TEST}/{name}@{k}" for name in (*ACCURACY, *DIVERSITY)]
    wanted = [metric, *test, names.TRAIN_TIME]
    return [c for c in dict.fromkeys(wanted) if c in columns]


def _grid(n: int) -> tuple[int, int]:
    cols = min(4, n)
    return math.ceil(n / cols), cols


def _positions(values: pd.Series) -> tuple[np.ndarray, list[str] | None, bool]:
    """x positions: numbers with more than ``FEW`` distinct values as they are (log scale if they span > 20x and
    are positive); else one evenly spaced slot per value, in order (a grid's 1e-3 and 3e-3 side by side)."""
    numeric = pd.to_numeric(values, errors="coerce")
    is_number = bool(numeric.notna().all() and values.map(lambda v: not isinstance(v, bool)).all())
    if is_number and numeric.nunique() > FEW:
        x = numeric.to_numpy(np.float64)
        return x, None, bool((x > 0).all() and x.max() / x.min() > 20)
    keys = sorted(set(numeric)) if is_number else sorted({str(v) for v in values})
    slots = list(numeric) if is_number else [str(v) for v in values]
    labels = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in keys]
    return np.array([keys.index(v) for v in slots], dtype=np.float64), labels, False


def metric_vs_param(frame: pd.DataFrame, param: str, metrics: Sequence[str], out: Path) -> Path:
    done = frame[frame[STATUS] == names.COMPLETED]
    rows, cols = _grid(len(metrics))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False)
    x, labels, log = _positions(done[param])
    for ax, metric in zip(axes.flat, metrics, strict=False):
        ax.scatter(x, done[metric], s=18, alpha=0.8)
        means = pd.Series(done[metric].to_numpy(), index=x).groupby(level=0).mean()  # mean per parameter value
        ax.plot(means.index, means.to_numpy(), color="tab:red", lw=1, alpha=0.7)
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel(param, fontsize=8)
        if labels is not None:
            ax.set_xticks(range(len(labels)), labels, fontsize=7)
        if log:
            ax.set_xscale("log")
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.set_visible(False)
    fig.suptitle(f"metrics vs {param} ({len(done)} completed runs; red: mean per value)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    path = out / f"metrics_vs_{re.sub(r'[^A-Za-z0-9_.-]+', '_', param)}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def accuracy_vs_diversity(frame: pd.DataFrame, metric: str, out: Path) -> Path | None:
    """Test accuracy at the selection metric's K against each test diversity metric at that K (one point per
    completed run; the best run by ``metric`` in red). None when no diversity metric was measured."""
    m = _KEY.match(metric)
    k = m["k"] if m else "10"
    accuracy = f"{names.TEST}/{m['name'] if m and m['name'] in ACCURACY else names.NDCG}@{k}"
    diversity = [c for d in DIVERSITY if (c := f"{names.TEST}/{d}@{k}") in frame.columns]
    done = frame[frame[STATUS] == names.COMPLETED]
    if not diversity or accuracy not in frame or done.empty:
        return None
    rows, cols = _grid(len(diversity))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False)
    for ax, column in zip(axes.flat, diversity, strict=False):
        ax.scatter(done[column], done[accuracy], s=18, alpha=0.8)
        ax.scatter(done[column].iloc[:1], done[accuracy].iloc[:1], s=40, color="tab:red", label="best run")
        ax.set_xlabel(column, fontsize=8)
        ax.set_ylabel(accuracy, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(diversity) :]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"accuracy vs diversity ({len(done)} completed runs)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    path = out / "accuracy_vs_diversity.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(frame: pd.DataFrame, params: Sequence[str], metric: str, out: Path) -> list[Path]:
    """Every figure; ``frame`` sorted best first (as ``runs_frame`` returns it)."""
    out.mkdir(parents=True, exist_ok=True)
    metrics = plotted_metrics(list(frame.columns), metric)
    paths = [metric_vs_param(frame, param, metrics, out) for param in params]
    scatter = accuracy_vs_diversity(frame, metric, out)
    return [*paths, *([scatter] if scatter else [])]
