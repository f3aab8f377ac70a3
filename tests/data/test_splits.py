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


# --- data.split.val_items: several validation rows per user ----------------------------------------------------------


def classic_leave_one_out(seqs: Sequences) -> dict[str, np.ndarray]:
    """Reference: the split before ``val_items`` existed, user by user (last = test, second-last = val)."""
    train: list[np.ndarray] = []
    rows: dict[str, list] = {f"{s}.{f}": [] for s in ("val", "test") for f in ("users", "histories", "targets")}
    for u in range(seqs.n_users):
        items = full(seqs, u)
        if len(items) < 3:
            train.append(items)
            continue
        train.append(items[:-2])
        for stage, cut in (("val", len(items) - 2), ("test", len(items) - 1)):
            rows[f"{stage}.users"].append(u)
            rows[f"{stage}.histories"].append(items[:cut])
            rows[f"{stage}.targets"].append(items[cut])
    out = {"train_items": np.concatenate(train), "train_lengths": np.array([len(t) for t in train])}
    for stage in ("val", "test"):
        out[f"{stage}.users"] = np.array(rows[f"{stage}.users"])
        out[f"{stage}.history_items"] = np.concatenate(rows[f"{stage}.histories"])
        out[f"{stage}.history_lengths"] = np.array([len(h) for h in rows[f"{stage}.histories"]])
        out[f"{stage}.targets"] = np.array(rows[f"{stage}.targets"])
    return out


def test_val_items_1_is_exactly_classic_leave_one_out() -> None:
    seqs = Preprocessing()(Synthetic(n_users=200, n_items=80, mean_length=6, seed=5).load())
    assert (seqs.lengths < 3).any() and (seqs.lengths == 3).any()  # short users are covered
    parts, want = LeaveOneOut(val_items=1).split(seqs), classic_leave_one_out(seqs)
    assert parts.train_offsets.dtype == np.int64 and parts.train_items.dtype == np.int64
    np.testing.assert_array_equal(parts.train_items, want["train_items"])
    np.testing.assert_array_equal(np.diff(parts.train_offsets), want["train_lengths"])
    for stage in ("val", "test"):
        split = getattr(parts, stage)
        for field in ("users", "history_items", "targets"):
            assert getattr(split, field).dtype == np.int64
            np.testing.assert_array_equal(getattr(split, field), want[f"{stage}.{field}"])
        np.testing.assert_array_equal(np.diff(split.history_offsets), want[f"{stage}.history_lengths"])


def test_val_items_gives_each_validation_target_its_own_row() -> None:
    lengths = {"a": 2, "b": 3, "c": 4, "d": 7}  # a: training only; b: 1, c: 2, d: 3 validation rows
    users = [u for u, n in lengths.items() for _ in range(n)]
    items = [f"{u}{i}" for u, n in lengths.items() for i in range(n)]
    seqs = Preprocessing()(raw(users, items, list(range(len(items)))))
    parts = LeaveOneOut(val_items=3).split(seqs)

    def named(ids: np.ndarray) -> list[str]:
        return [str(seqs.item_raw_ids[i]) for i in ids]

    offsets = parts.train_offsets
    train = {u: named(parts.train_items[offsets[i] : offsets[i + 1]]) for i, u in enumerate(lengths)}
    assert train == {"a": ["a0", "a1"], "b": ["b0"], "c": ["c0"], "d": ["d0", "d1", "d2"]}
    assert parts.val.users.tolist() == [1, 2, 2, 3, 3, 3]
    assert named(parts.val.targets) == ["b1", "c1", "c2", "d3", "d4", "d5"]
    histories = [named(parts.val.history(r)) for r in range(len(parts.val))]
    assert histories == [["b0"], ["c0"], ["c0", "c1"], *[[f"d{i}" for i in range(n)] for n in (3, 4, 5)]]
    assert parts.test.users.tolist() == [1, 2, 3] and named(parts.test.targets) == ["b2", "c3", "d6"]
    tests = [named(parts.test.history(r)) for r in range(3)]
    assert tests == [["b0", "b1"], ["c0", "c1", "c2"], [f"d{i}" for i in range(6)]]
    assert len(parts.train_items) + len(parts.val) + len(parts.test) == len(seqs.items)


@pytest.mark.parametrize("val_items", [2, 3, 5])
def test_val_items_targets_never_sit_in_training(val_items: int) -> None:
    seqs = Preprocessing()(Synthetic(n_users=150, n_items=60, mean_length=8, seed=2).load())
    parts = LeaveOneOut(val_items=val_items).split(seqs)
    check_csr(parts.train_offsets, parts.train_items, seqs.n_users)
    check_csr(parts.val.history_offsets, parts.val.history_items, len(parts.val))
    n_val = np.bincount(parts.val.users, minlength=seqs.n_users)
    np.testing.assert_array_equal(n_val, np.where(seqs.lengths >= 3, np.minimum(val_items, seqs.lengths - 2), 0))
    for row, u in enumerate(parts.val.users.tolist()):
        items, train = full(seqs, u), parts.train_items[parts.train_offsets[u] : parts.train_offsets[u + 1]]
        position = len(parts.val.history(row))
        assert parts.val.targets[row] == items[position] and np.array_equal(parts.val.history(row), items[:position])
        assert position >= len(train) >= 1 and np.array_equal(train, items[: len(train)])
        assert parts.val.targets[row] not in train and parts.test.targets[parts.test.users == u][0] not in train
    assert len(parts.train_items) + len(parts.val) + len(parts.test) == len(seqs.items)


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "3"])
def test_bad_val_items_is_a_one_line_error(bad: object) -> None:
    with pytest.raises(DataError, match=r"^data\.split\.val_items=.* must be an integer >= 1") as error:
        LeaveOneOut(val_items=bad)  # type: ignore[arg-type]
    assert "\n" not in str(error.value)


def test_global_temporal_takes_the_default_val_items_only() -> None:
    """Switching data.split._target_ from LeaveOneOut carries val_items=1 along: accepted; any other value is an
    error that names the key."""
    assert GlobalTemporal(val_items=1).val_items == 1
    with pytest.raises(DataError, match=r"^data\.split\.val_items=3 applies to leave-one-out only") as error:
        GlobalTemporal(val_items=3)
    assert "\n" not in str(error.value)
