"""Split invariants: leave-one-out and global temporal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from datahelpers import raw

from divrec.data.errors import DataError
from divrec.data.preprocess import Preprocessing, Sequences
from divrec.data.sources import MovieLens100K
from divrec.data.splits import GlobalTemporal, LeaveOneOut
from divrec.data.synthetic import Synthetic


def full(seqs: Sequences, user: int) -> np.ndarray:
    return seqs.items[seqs.offsets[user] : seqs.offsets[user + 1]]


def check_csr(offsets: np.ndarray, items: np.ndarray, rows: int) -> None:
    assert offsets.dtype == np.int64 and items.dtype == np.int64
    assert len(offsets) == rows + 1 and offsets[0] == 0 and offsets[-1] == len(items)
    assert (np.diff(offsets) >= 0).all() and (items >= 1).all()


@pytest.fixture(scope="module")
def ml100k(mirror: Path) -> Sequences:
    return Preprocessing()(MovieLens100K().load(mirror / "ml-100k"))


def test_leave_one_out_invariants(ml100k: Sequences) -> None:
    seqs = ml100k
    parts = LeaveOneOut().split(seqs)
    check_csr(parts.train_offsets, parts.train_items, seqs.n_users)
    for split in (parts.val, parts.test):
        check_csr(split.history_offsets, split.history_items, len(split))
        assert split.users.tolist() == list(range(seqs.n_users))  # every ml-100k user has >= 20 ratings
    for u in range(seqs.n_users):
        items = full(seqs, u)
        train = parts.train_items[parts.train_offsets[u] : parts.train_offsets[u + 1]]
        assert parts.test.targets[u] == items[-1] and parts.val.targets[u] == items[-2]
        assert np.array_equal(train, items[:-2])
        assert np.array_equal(parts.val.history(u), items[:-2]) and np.array_equal(parts.test.history(u), items[:-1])
        assert parts.test.targets[u] not in train and parts.val.targets[u] not in train  # no repeats after dedup
    assert len(parts.train_items) + len(parts.val) + len(parts.test) == len(seqs.items)


def test_leave_one_out_short_users_stay_in_training() -> None:
    seqs = Preprocessing()(raw(["a", "a", "b", "b", "b", "c"], [1, 2, 1, 2, 3, 4], [1, 2, 1, 2, 3, 1]))
    parts = LeaveOneOut().split(seqs)
    assert parts.val.users.tolist() == [1] and parts.test.users.tolist() == [1]  # only b has >= 3
    assert parts.train_offsets.tolist() == [0, 2, 3, 4]
    assert [seqs.item_raw_ids[i] for i in parts.train_items] == ["1", "2", "1", "4"]
    assert seqs.item_raw_ids[parts.val.targets[0]] == "2" and seqs.item_raw_ids[parts.test.targets[0]] == "3"


def test_global_temporal_invariants() -> None:
    seqs = Preprocessing()(Synthetic(n_users=300, n_items=200, seed=3).load())
    split = GlobalTemporal(val_quantile=0.6, test_quantile=0.8)
    parts = split.split(seqs)
    t_val, t_test = np.quantile(seqs.times, [0.6, 0.8])
    check_csr(parts.train_offsets, parts.train_items, seqs.n_users)
    assert len(parts.val) > 0 and len(parts.test) > 0
    for u in range(seqs.n_users):
        times = seqs.times[seqs.offsets[u] : seqs.offsets[u + 1]]
        train = parts.train_items[parts.train_offsets[u] : parts.train_offsets[u + 1]]
        assert np.array_equal(train, full(seqs, u)[times < t_val])
    for split_rows, lo, hi in ((parts.val, t_val, t_test), (parts.test, t_test, np.inf)):
        check_csr(split_rows.history_offsets, split_rows.history_items, len(split_rows))
        for row, u in enumerate(split_rows.users):
            items = full(seqs, u)
            times = seqs.times[seqs.offsets[u] : seqs.offsets[u + 1]]
            first = int(np.flatnonzero((times >= lo) & (times < hi))[0])
            assert split_rows.targets[row] == items[first]
            assert np.array_equal(split_rows.history(row), items[:first]) and first >= 1


def test_global_temporal_errors() -> None:
    no_time = Preprocessing()(raw(["a", "a"], [1, 2]))
    with pytest.raises(DataError, match=r"needs timestamps .*set data\.split\._target_=divrec\.data\.splits\.Leave"):
        GlobalTemporal().split(no_time)
    seqs = Preprocessing()(raw(["a", "a", "a"], [1, 2, 3], [1, 1, 1]))
    with pytest.raises(DataError, match=r"cut-offs coincide"):
        GlobalTemporal().split(seqs)
    with pytest.raises(DataError, match=r"0 < val < test < 1"):
        GlobalTemporal(val_quantile=0.9, test_quantile=0.8).split(seqs)
