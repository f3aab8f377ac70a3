"""Preprocessing: threshold, duplicates, iterative k-core, stable chronological order, id remapping."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from datahelpers import raw

from divrec.data.errors import DataError
from divrec.data.features import item_categories, user_features
from divrec.data.preprocess import Preprocessing, Sequences
from divrec.data.types import RawData
from divrec.names import CATEGORIES, ITEM, USER


def sequences(seqs: Sequences) -> dict[str, list[str]]:
    """raw user id → raw item ids, in processed order."""
    rows = (seqs.items[seqs.offsets[u] : seqs.offsets[u + 1]] for u in range(seqs.n_users))
    pairs = zip(seqs.user_raw_ids, rows, strict=True)
    return {str(user): [str(seqs.item_raw_ids[i]) for i in row] for user, row in pairs}


def test_k_core_is_iterative() -> None:
    """A single pass only drops user c; then z, b, x fall below 2 one after another, leaving a and d with y, w."""
    users = ["a", "a", "a", "b", "b", "c", "d", "d"]
    data = raw(users, ["x", "y", "w", "x", "z", "z", "y", "w"], [1, 2, 3, 4, 5, 6, 7, 8])
    seqs = Preprocessing(user_core=2, item_core=2)(data)
    assert sequences(seqs) == {"a": ["y", "w"], "d": ["y", "w"]}
    counts = np.bincount(seqs.items)[1:]
    assert counts.min() >= 2 and seqs.lengths.min() >= 2
    assert sequences(Preprocessing(user_core=2)(data)) == {"a": ["x", "y", "w"], "b": ["x", "z"], "d": ["y", "w"]}


def test_stable_tie_break_and_chronology() -> None:
    data = raw(["u"] * 5 + ["v"] * 2, ["c", "a", "b", "d", "e", "a", "b"], [5, 1, 1, 1, 0, 2, 2])
    seqs = Preprocessing()(data)
    assert sequences(seqs) == {"u": ["e", "a", "b", "d", "c"], "v": ["a", "b"]}  # equal times keep file order
    assert seqs.times.tolist() == [0, 1, 1, 1, 5, 2, 2]


def test_no_time_keeps_file_order() -> None:
    seqs = Preprocessing()(raw(["u", "v", "u", "u"], ["c", "a", "b", "a"]))
    assert seqs.times is None and sequences(seqs) == {"u": ["c", "b", "a"], "v": ["a"]}


def test_duplicates_keep_chronologically_first() -> None:
    data = raw(["u", "u", "u", "u"], ["a", "b", "a", "c"], [10, 20, 5, 30])
    assert sequences(Preprocessing()(data)) == {"u": ["a", "b", "c"]}
    assert Preprocessing()(data).times.tolist() == [5, 20, 30]
    assert sequences(Preprocessing(drop_duplicates=False)(data)) == {"u": ["a", "a", "b", "c"]}


def test_rating_threshold() -> None:
    data = raw(["u", "u", "v"], ["a", "b", "a"], [1, 2, 3], rating=[4.0, 3.0, 5.0])
    assert sequences(Preprocessing(rating_threshold=4)(data)) == {"u": ["a"], "v": ["a"]}
    with pytest.raises(DataError, match=r"no ratings; set data\.preprocessing\.rating_threshold=null"):
        Preprocessing(rating_threshold=4)(raw(["u"], ["a"]))


def test_ids_contiguous_padding_unused_and_by_first_appearance() -> None:
    data = raw(["9", "9", "3", "3", "7"], ["z", "y", "y", "x", "q"], [1, 2, 3, 4, 5])
    seqs = Preprocessing(user_core=2)(data)
    assert seqs.user_raw_ids.tolist() == ["9", "3"]
    assert seqs.item_raw_ids.tolist() == ["", "z", "y", "x"]  # q is gone with user 7; 0 is padding
    assert seqs.items.min() == 1 and sorted(set(seqs.items.tolist())) == [1, 2, 3]
    assert seqs.offsets.tolist() == [0, 2, 4] and seqs.items.dtype == np.int64


def test_everything_filtered_is_an_error() -> None:
    with pytest.raises(DataError, match=r"no interactions left .*lower data\.preprocessing\.user_core"):
        Preprocessing(user_core=10)(raw(["u"], ["a"], [1]))


def test_item_categories_and_user_features() -> None:
    seqs = Preprocessing()(raw(["u", "u", "v"], ["b", "a", "c"], [1, 2, 3]))
    features = pd.DataFrame({CATEGORIES: [["x"], ["y", "x", "y"], ["q"]]}, index=["a", "b", "zz"])
    offsets, ids, names = item_categories(features, seqs.item_raw_ids)
    assert offsets.tolist() == [0, 0, 2, 3, 3]  # row 0 padding; b → y, x; a → x; c has none
    assert [names[i] for i in ids] == ["y", "x", "x"]
    empty = item_categories(None, seqs.item_raw_ids)
    assert empty[0].tolist() == [0] and len(empty[1]) == 0 and len(empty[2]) == 0
    users = pd.DataFrame({"g": ["F", "M"]}, index=["v", "w"])
    codes, vocab = user_features(users, seqs.user_raw_ids)
    assert vocab == {"g": ["<unk>", "F"]} and codes["g"].tolist() == [0, 1]  # u unknown, v = F; w is not a user


def test_missing_ids_are_reported() -> None:
    table = pd.DataFrame({USER: ["a", None], ITEM: ["x", "y"]})
    with pytest.raises(DataError, match=r"row 2 has no user_id"):
        Preprocessing()(RawData(table))
