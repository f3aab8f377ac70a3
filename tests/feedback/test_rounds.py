"""Time windows of the feedback loop on a hand-made case."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from divrec.data.errors import DataError
from divrec.data.preprocess import Sequences
from divrec.feedback.rounds import cutoffs, known_before, recent_window, window_targets


def sequences(times: bool = True) -> Sequences:
    # user 0: items 1,2,3,4 at t=1,2,5,7   user 1: items 5,6 at t=3,6   user 2: items 7,8,9 at t=4,8,9
    return Sequences(
        offsets=np.array([0, 4, 6, 9]),
        items=np.array([1, 2, 3, 4, 5, 6, 7, 8, 9]),
        times=np.array([1, 2, 5, 7, 3, 6, 4, 8, 9]) if times else None,
        user_raw_ids=np.array(["a", "b", "c"]),
        item_raw_ids=np.array(["", *"abcdefghi"]),
    )


def csr_rows(offsets: np.ndarray, items: np.ndarray) -> list[list[int]]:
    return [items[offsets[u] : offsets[u + 1]].tolist() for u in range(len(offsets) - 1)]


def test_cutoffs_split_the_later_interactions_into_equal_windows() -> None:
    times = np.arange(1, 101)
    cuts = cutoffs(times, 0.6, 4)
    assert len(cuts) == 5 and (np.diff(cuts) > 0).all()
    counts = [int(((times >= lo) & (times < hi)).sum()) for lo, hi in itertools.pairwise(cuts)]
    assert sum(counts) == int((times >= cuts[0]).sum()) and max(counts) - min(counts) <= 1
    assert times.max() < cuts[-1]  # the last window includes the last interaction


def test_known_before_is_each_users_prefix() -> None:
    assert csr_rows(*known_before(sequences(), 5)) == [[1, 2], [5], [7]]


def test_window_targets_are_first_interactions_with_their_history() -> None:
    split = window_targets(sequences(), 5, 8, min_history=1)
    assert split.users.tolist() == [0, 1]  # user 2's next interaction is at t=8, outside [5, 8)
    assert split.targets.tolist() == [3, 6]
    assert [split.history(r).tolist() for r in range(len(split))] == [[1, 2], [5]]
    assert window_targets(sequences(), 5, 8, min_history=2).users.tolist() == [0]


def test_recent_window_keeps_new_items_with_bounded_context() -> None:
    # window [5, 9): user 0 has 3,4 new; user 1 has 6; user 2 has 8 (9 is at t=9, outside)
    assert csr_rows(*recent_window(sequences(), 5, 9, context=1)) == [[2, 3, 4], [5, 6], [7, 8]]
    assert csr_rows(*recent_window(sequences(), 5, 9, context=0)) == [[3, 4], [6], [8]]
    assert csr_rows(*recent_window(sequences(), 8.5, 9, context=5)) == [[], [], []]


def test_no_timestamps_and_bad_windows_are_clear_errors() -> None:
    with pytest.raises(DataError, match="timestamps"):
        known_before(sequences(times=False), 3)
    with pytest.raises(DataError, match=r"feedback\.n_windows"):
        cutoffs(np.arange(10), 0.5, 0)
    with pytest.raises(DataError, match="collapse"):
        cutoffs(np.ones(10), 0.5, 3)
