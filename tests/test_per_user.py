"""Every run saves per-user test metrics (``per_user.parquet``), whose means are the run's test metrics."""

from __future__ import annotations

import pandas as pd
import pytest
from runhelpers import Run, read_metrics

from divrec import names


def test_per_user_parquet_means_equal_the_test_metrics(tiny_run: Run) -> None:
    frame = pd.read_parquet(tiny_run.run_dir / names.PER_USER_FILE)
    metrics = read_metrics(tiny_run.run_dir)
    assert frame.columns[0] == names.USER_INDEX
    assert frame[names.USER_INDEX].is_unique and len(frame) == 60  # every synthetic user is a test user, once
    per_user_keys = [c for c in frame.columns if c != names.USER_INDEX]
    assert all(key.startswith(f"{names.TEST}/") for key in per_user_keys)
    for name in (names.NDCG, names.HR, names.MRR, names.ILD):
        key = names.metric_key(names.TEST, name, 10)
        assert frame[key].mean() == pytest.approx(metrics[key], abs=1e-6)  # NaN (undefined) users skipped
    hr = frame[names.metric_key(names.TEST, names.HR, 10)]
    assert set(hr.unique()) <= {0.0, 1.0}
