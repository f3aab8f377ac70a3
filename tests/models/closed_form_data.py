"""A tiny training set shared by the closed-form baseline tests."""

from __future__ import annotations

import numpy as np

from divrec.data.types import EvalSplit, ProcessedData

SEQUENCES = [[1, 2, 3, 4], [2, 3, 5], [1, 3, 2, 3, 6], [4, 5, 6, 1], [6, 2]]  # user 2 repeats item 3
N_ITEMS = 7  # item 7 never occurs in training


def processed(sequences: list[list[int]] = SEQUENCES, n_items: int = N_ITEMS) -> ProcessedData:
    lengths = [len(s) for s in sequences]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    empty = np.zeros(0, dtype=np.int64)
    split = EvalSplit(users=empty, history_offsets=np.zeros(1, dtype=np.int64), history_items=empty, targets=empty)
    return ProcessedData(
        n_users=len(sequences), n_items=n_items, train_offsets=offsets,
        train_items=np.concatenate(sequences).astype(np.int64), val=split, test=split,
        item_raw_ids=np.array(["", *map(str, range(1, n_items + 1))]),
        user_raw_ids=np.array([f"u{i}" for i in range(len(sequences))]),
    )
