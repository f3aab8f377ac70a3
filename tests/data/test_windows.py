import itertools

import numpy as np
import pytest
import torch

from divrec import names
from divrec.data.datamodule import TensorBatches, trim_left, trim_right
from divrec.data.windows import last_items, right_padded, training_windows, window_ends


def csr(seqs: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.cumsum([0] + [len(s) for s in seqs])
    return offsets, np.array([i for s in seqs for i in s], dtype=np.int64)


@pytest.mark.parametrize("n", [1, 2, 5, 6, 7, 11, 12, 23])
@pytest.mark.parametrize("stride", [1, 3, 5])
def test_windows_cover_every_target_and_stride_width_minus_one_predicts_each_once(n: int, stride: int) -> None:
    seq = list(range(1, n + 1))
    offsets, items = csr([seq])
    width = 6
    w = training_windows(offsets, items, width, stride)
    assert w.shape[1] == width
    targets = [int(b) for row in w for a, b in itertools.pairwise(row) if a and b]
    assert set(targets) == set(seq[1:])  # no interaction wasted
    if stride == width - 1:
        assert sorted(targets) == seq[1:]  # each exactly once
    for row in w:  # each window is a contiguous, left-padded slice that keeps chronological order
        real = row[row != 0]
        assert (row[: width - len(real)] == 0).all() and (np.diff(real) == 1).all()
    assert w[0, -1] == n  # the newest window ends at the newest item


def test_window_ends_counts() -> None:
    seq, ends = window_ends(np.array([3, 0, 10]), width=4, stride=3)
    assert seq.tolist() == [0, 2, 2, 2] and ends.tolist() == [3, 10, 7, 4]


def test_prefix_windows_end_at_every_position_of_every_sequence() -> None:
    seqs = [[1, 2, 3], [4], [5, 6, 7, 8, 9, 10, 11]]
    offsets, items = csr(seqs)
    seq, ends = window_ends(np.diff(offsets), width=4, stride=99, prefixes=True)
    assert seq.tolist() == [0, 0, 2, 2, 2, 2, 2, 2] and ends.tolist() == [3, 2, 7, 6, 5, 4, 3, 2]
    w = training_windows(offsets, items, 4, 99, prefixes=True)
    finals = [int(row[-1]) for row in w]
    assert finals == [3, 2, 11, 10, 9, 8, 7, 6]  # every item after a sequence's first is some window's last
    for row, end, s in zip(w, ends, seq, strict=True):  # the last 4 items of the prefix, left-padded
        prefix = seqs[s][:end][-4:]
        assert row.tolist() == [0] * (4 - len(prefix)) + prefix


def test_eval_padding_helpers() -> None:
    offsets, items = csr([[1, 2, 3, 4], [5], []])
    assert last_items(offsets, items, 3).tolist() == [[2, 3, 4], [0, 0, 5], [0, 0, 0]]
    assert right_padded(offsets, items).tolist() == [[1, 2, 3, 4], [5, 0, 0, 0], [0, 0, 0, 0]]


def test_batches_are_trimmed_to_their_longest_row() -> None:
    assert trim_left(torch.tensor([[0, 0, 1], [0, 2, 3]])).tolist() == [[0, 1], [2, 3]]
    assert trim_right(torch.tensor([[1, 0, 0], [2, 3, 0]])).tolist() == [[1, 0], [2, 3]]
    data = TensorBatches({names.ITEMS: torch.tensor([[0, 0, 1, 2], [0, 3, 4, 5], [0, 0, 0, 6]])})
    assert data.__getitems__([0, 2])[names.ITEMS].tolist() == [[1, 2], [0, 6]]
