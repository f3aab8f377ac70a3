"""Synthetic generator: determinism, shape, and sequential structure a bigram model can learn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from divrec.data.errors import DataError
from divrec.data.preprocess import Preprocessing
from divrec.data.splits import LeaveOneOut
from divrec.data.synthetic import Synthetic
from divrec.names import CATEGORIES, ITEM, TIME, USER


def test_deterministic_and_seeded() -> None:
    a, b = Synthetic(seed=1).load(), Synthetic(seed=1).load()
    pd.testing.assert_frame_equal(a.interactions, b.interactions)
    pd.testing.assert_frame_equal(a.item_features, b.item_features)
    assert not Synthetic(seed=2).load().interactions.equals(a.interactions)


def test_shape() -> None:
    source = Synthetic(n_users=500, n_items=300, n_categories=7, mean_length=12, min_length=4, seed=0)
    inter = source.load().interactions
    lengths = inter.groupby(USER).size()
    assert lengths.min() >= 4 and abs(lengths.mean() - 12) < 1.5 and inter[USER].nunique() == 500
    assert inter[ITEM].astype(int).between(0, 299).all()
    assert (inter.groupby(USER)[TIME].diff().dropna() > 0).all()  # strictly increasing per user
    categories = source.load().item_features[CATEGORIES]
    assert len(categories) == 300 and {c for cats in categories for c in cats} <= {f"c{i}" for i in range(7)}
    counts = inter[ITEM].value_counts()
    assert counts.iloc[0] > 10 * counts.median()  # Zipf: a heavy head


def test_bigram_beats_popularity() -> None:
    """Predict each test target from the previous item: successor counts beat global popularity by far."""
    seqs = Preprocessing()(Synthetic(n_users=2000, n_items=1000, seed=0).load())
    parts = LeaveOneOut().split(seqs)
    n = seqs.n_items + 1
    prev, nxt = parts.train_items[:-1], parts.train_items[1:]
    same_user = np.diff(np.searchsorted(parts.train_offsets, np.arange(len(parts.train_items)), side="right")) == 0
    bigram = np.zeros((n, n))
    np.add.at(bigram, (prev[same_user], nxt[same_user]), 1)
    popularity = np.bincount(parts.train_items, minlength=n).astype(float)
    popularity[0] = bigram[:, 0] = -1
    hits = {"bigram": 0, "popularity": 0}
    for row in range(len(parts.test)):
        history, target = parts.test.history(row), parts.test.targets[row]
        for name, scores in (("bigram", bigram[history[-1]] + popularity * 1e-9), ("popularity", popularity.copy())):
            scores[history] = -np.inf  # rank unseen items only, like the evaluation does
            hits[name] += target in np.argpartition(-scores, 10)[:10]
    assert hits["bigram"] > 2 * hits["popularity"] and hits["bigram"] / len(parts.test) > 0.3


def test_invalid_parameters() -> None:
    with pytest.raises(DataError, match=r"mean_length=2 < min_length=5; set data\.source\.mean_length"):
        Synthetic(mean_length=2).load()
    with pytest.raises(DataError, match=r"n_items=0 must be >= 1"):
        Synthetic(n_items=0).load()
    with pytest.raises(DataError, match=r"follow_prob=1.5 must be in \[0, 1\]"):
        Synthetic(follow_prob=1.5).load()


@pytest.mark.slow
def test_ten_million_interactions_over_a_million_items() -> None:
    inter = Synthetic(n_users=1_000_000, n_items=1_000_000, n_categories=500, mean_length=10).load().interactions
    assert len(inter) > 9_000_000 and inter[ITEM].nunique() > 100_000


@pytest.mark.slow
def test_prepare_ten_million_end_to_end(tmp_path) -> None:
    """10M generated interactions go through preprocessing, the temporal split and the cache (timings belong to
    experiments/million_items, not to a test)."""
    from divrec.data.prepare import prepare_dataset
    from divrec.data.splits import GlobalTemporal

    source = Synthetic(n_users=1_000_000, n_items=1_000_000, n_categories=500, mean_length=10)
    data = prepare_dataset(source, Preprocessing(), GlobalTemporal(), tmp_path, None, tmp_path / "cache")
    assert data.n_users == 1_000_000 and len(data.val) > 100_000
    cached = prepare_dataset(source, Preprocessing(), GlobalTemporal(), tmp_path, None, tmp_path / "cache")
    assert np.array_equal(cached.train_items, data.train_items)
    assert np.array_equal(cached.test.targets, data.test.targets)


def test_user_groups_add_user_features_without_changing_the_sequences() -> None:
    plain, grouped = Synthetic(n_users=50, n_items=30, seed=3).load(), Synthetic(n_users=50, n_items=30, seed=3,
                                                                                    n_user_groups=4).load()
    assert plain.user_features is None
    pd.testing.assert_frame_equal(plain.interactions, grouped.interactions)
    users = grouped.user_features
    assert list(users.columns) == ["group", "activity"] and len(users) == 50
    assert set(users["group"]) <= {"g0", "g1", "g2", "g3"} and set(users["activity"]) == {"long", "short"}
    lengths = grouped.interactions.groupby(USER).size()
    long = lengths.reindex(users.index) > 20.0  # mean_length
    assert ((users["activity"] == "long") == long).all()
    with pytest.raises(DataError, match="n_user_groups=-1"):
        Synthetic(n_user_groups=-1).load()

