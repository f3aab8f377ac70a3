"""The paired significance tests: the permutation test against brute-force enumeration, the t-test against its
closed form, and the best-two-configurations test over per-user files."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from divrec.compare import load_runs
from divrec.compare.report import compare
from divrec.compare.stats import EXACT_MAX, paired_test, per_user_metric_of, permutation_test

from .runfolders import TEST, VAL, lr_seed_sweep


def brute_force_p(diff: np.ndarray) -> float:
    """Share of all 2^n sign patterns whose |sum| reaches the observed one (zeros included: same answer)."""
    observed = abs(diff.sum())
    sums = [
        abs(sum(s * d for s, d in zip(signs, diff, strict=True)))
        for signs in itertools.product((1, -1), repeat=len(diff))
    ]
    return float(np.mean([s >= observed - 1e-12 for s in sums]))


def test_permutation_test_exact_matches_enumeration() -> None:
    rng = np.random.default_rng(1)
    for n in (1, 5, 9):
        diff = np.round(rng.normal(0.2, 1.0, size=n), 2)
        assert permutation_test(diff)[0] == pytest.approx(brute_force_p(diff))
    assert permutation_test(np.ones(6)) == (2 / 64, "exact")  # all positive: only all-+ and all-- reach it
    assert permutation_test(np.zeros(5))[0] == 1.0
    assert permutation_test(np.array([0.0, 0.0, 1.0, -1.0]))[0] == 1.0  # zeros drop out: ±1 ±1 → |sum| ≥ 0


def test_permutation_test_monte_carlo_is_close_to_exact() -> None:
    diff = np.random.default_rng(2).normal(0.3, 1.0, size=EXACT_MAX + 1)
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=diff.size)))
    exact = float(np.mean(np.abs(signs @ diff) >= abs(diff.sum()) * (1 - 1e-12)))
    p, how = permutation_test(diff, n_resamples=20_000, seed=0)
    assert how.startswith("monte carlo") and abs(p - exact) < 0.015


def test_paired_t_test_matches_closed_form() -> None:
    stats = pytest.importorskip("scipy.stats")
    a = pd.Series([0.5, 0.4, 0.3, 0.6, 0.2, 0.7, 0.1], index=range(7))
    b = pd.Series([0.4, 0.4, 0.1, 0.5, 0.3, 0.5, 0.0, 9.9], index=range(8))  # user 7 only in b: ignored
    test = paired_test("m", "A", a, "B", b)
    d = (a - b.iloc[:7]).to_numpy()
    t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
    assert test.n_users == 7 and test.mean_diff == pytest.approx(d.mean())
    assert test.t_p == pytest.approx(2 * stats.t.sf(abs(t), df=len(d) - 1))
    assert test.wilcoxon_p is not None and 0 < test.wilcoxon_p <= 1
    assert test.permutation_p == pytest.approx(brute_force_p(d))


def test_best_two_configurations_are_tested_on_per_user_test_values(tmp_path: Path) -> None:
    result = compare(load_runs([lr_seed_sweep(tmp_path)]), VAL)
    assert per_user_metric_of(VAL) == TEST
    test = result.test
    assert test is not None and (test.a, test.b, test.metric) == ("optim.lr=0.01", "optim.lr=0.001", TEST)
    seeds_a = np.mean([[0.5, 0.4, 0.3, 0.6, 0.2, 0.7], [0.5, 0.6, 0.3, 0.6, 0.4, 0.7]], axis=0)  # mean over seeds
    seeds_b = np.mean([[0.1, 0.2, 0.0, 0.3, 0.1, 0.2], [0.1, 0.2, 0.2, 0.3, 0.1, 0.2]], axis=0)
    assert test.n_users == 6 and test.mean_diff == pytest.approx((seeds_a - seeds_b).mean())
    assert test.permutation_p == pytest.approx(2 / 64)  # A beats B on all 6 users
