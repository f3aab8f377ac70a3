"""Paired significance tests over users between two configurations, on per-user test metrics
(``per_user.parquet``): the paired t-test and the Wilcoxon signed-rank test when scipy is installed, and always a
sign-flip permutation test in numpy (exact for up to ``EXACT_MAX`` non-zero differences)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from divrec import names

EXACT_MAX = 16  # 2**16 sign patterns: enumerate them all below this many non-zero differences


@dataclass
class PairedTest:
    metric: str
    a: str  # configuration labels
    b: str
    n_users: int
    mean_a: float
    mean_b: float
    mean_diff: float  # mean over users of a - b
    permutation_p: float  # two-sided, sign-flip permutation of the per-user differences
    permutation: str  # "exact" or "monte carlo (<n> resamples)"
    t_p: float | None  # scipy.stats.ttest_rel, two-sided; None without scipy
    wilcoxon_p: float | None  # scipy.stats.wilcoxon, two-sided; None without scipy or with all differences 0


def permutation_test(diff: np.ndarray, n_resamples: int = 20_000, seed: int = 0) -> tuple[float, str]:
    """Two-sided p-value of H0 "the per-user differences are symmetric around 0": the share of sign patterns
    whose |sum| reaches the observed |sum|. Exact by enumeration for few non-zero differences; otherwise Monte
    Carlo with the observed pattern counted (p = (hits + 1) / (n + 1), never 0)."""
    d = np.asarray(diff, dtype=np.float64)
    d = d[d != 0]  # a zero difference contributes the same under either sign
    if d.size == 0:
        return 1.0, "exact"
    observed = abs(d.sum()) * (1 - 1e-12)  # tolerance: equal sums must count as reaching it
    if d.size <= EXACT_MAX:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=d.size)))  # (2**n, n)
        return float(np.mean(np.abs(signs @ d) >= observed)), "exact"
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, n_resamples, 2_000):
        signs = rng.choice((1.0, -1.0), size=(min(2_000, n_resamples - start), d.size))
        hits += int(np.sum(np.abs(signs @ d) >= observed))
    return (hits + 1) / (n_resamples + 1), f"monte carlo ({n_resamples} resamples)"


def _scipy_tests(a: np.ndarray, b: np.ndarray) -> tuple[float | None, float | None]:
    try:
        from scipy import stats
    except ImportError:
        return None, None
    diff = a - b
    t_p = float(stats.ttest_rel(a, b).pvalue) if np.any(diff != diff[0]) else None
    try:
        wilcoxon_p: float | None = float(stats.wilcoxon(a, b).pvalue)
    except ValueError:  # every difference is zero
        wilcoxon_p = None
    return (None if t_p is None or math.isnan(t_p) else t_p), wilcoxon_p


def paired_test(metric: str, a_label: str, a: pd.Series, b_label: str, b: pd.Series) -> PairedTest:
    """Test per-user values ``a`` vs ``b`` (Series indexed by user; only users present in both count)."""
    joined = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner").dropna()
    x, y = joined["a"].to_numpy(np.float64), joined["b"].to_numpy(np.float64)
    p, how = permutation_test(x - y)
    t_p, w_p = _scipy_tests(x, y)
    return PairedTest(
        metric=metric,
        a=a_label,
        b=b_label,
        n_users=len(joined),
        mean_a=float(x.mean()),
        mean_b=float(y.mean()),
        mean_diff=float((x - y).mean()),
        permutation_p=p,
        permutation=how,
        t_p=t_p,
        wilcoxon_p=w_p,
    )


def per_user_values(run_dirs: Sequence[Path], metric: str) -> pd.Series | None:
    """One configuration's per-user ``metric``, averaged over its runs (seeds); None if a run lacks the file or the
    column. Users are matched by ``names.USER_INDEX`` (row order when it was not recorded)."""
    columns = []
    for run_dir in run_dirs:
        path = Path(run_dir) / names.PER_USER_FILE
        if not path.is_file():
            return None
        frame = pd.read_parquet(path)
        if metric not in frame:
            return None
        index = frame[names.USER_INDEX] if names.USER_INDEX in frame else pd.RangeIndex(len(frame))
        columns.append(pd.Series(frame[metric].to_numpy(), index=pd.Index(index, name=names.USER_INDEX)))
    return pd.concat(columns, axis=1).mean(axis=1) if columns else None


def per_user_metric_of(metric: str) -> str:
    """The per-user test counterpart of a selection metric: ``val/ndcg@10`` → ``test/ndcg@10``."""
    stage, _, rest = metric.partition("/")
    return f"{names.TEST}/{rest}" if rest and stage == names.VAL else metric
