"""Plain containers passed between the data stages: raw tables → processed, split, id-remapped arrays.

Sequences are stored CSR-style (``offsets`` of length n+1 into one flat ``items`` array) so that millions of
interactions stay a few flat numpy arrays, cheap to cache and to slice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # annotations only: importing the data types does not import pandas
    import pandas as pd


@dataclass
class RawData:
    """What a source loader returns, before any preprocessing.

    interactions: one row per event with columns ``names.USER``, ``names.ITEM`` (raw ids as str) and, where the
        source has them, ``names.TIME`` (int/float, larger = later) and ``names.RATING`` (float). Row order is file
        order, which is the tie-break for equal timestamps (and the chronology itself where there is no TIME).
    item_features: indexed by raw item id (str); column ``names.CATEGORIES`` (list[str]) and optionally
        ``names.TITLE`` (str). None where the dataset has no item metadata.
    user_features: indexed by raw user id (str); one column per categorical feature (values as str).
    """

    interactions: pd.DataFrame
    item_features: pd.DataFrame | None = None
    user_features: pd.DataFrame | None = None


@dataclass
class EvalSplit:
    """One held-out target per row, with everything that came before it; a user may have several rows
    (``LeaveOneOut.val_items > 1`` on validation), metrics average over rows.

    users: (U,) internal user index (0-based) of each row.
    history_offsets: (U+1,) offsets into history_items; history of row u = items[offsets[u]:offsets[u+1]],
        oldest first. The model sees the last ``max_len`` of them; ranking excludes all of them (seen items).
    targets: (U,) internal item ids (1..n_items) of the held-out item.
    target_ratings: (U,) the held-out interaction's rating, or None where the source has no ratings.
    """

    users: np.ndarray
    history_offsets: np.ndarray
    history_items: np.ndarray
    targets: np.ndarray
    target_ratings: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.users.shape[0])

    def history(self, row: int) -> np.ndarray:
        return self.history_items[self.history_offsets[row] : self.history_offsets[row + 1]]


@dataclass
class ProcessedData:
    """A preprocessed, split dataset with contiguous ids. Item id 0 is padding; real items are 1..n_items.

    train_offsets/train_items: CSR training sequences, one per user (index = internal user id), oldest first;
        a user may have an empty training sequence (temporal split).
    item_raw_ids: (n_items+1,) str; entry 0 is "" (padding). user_raw_ids: (n_users,) str.
    item_category_offsets/item_category_ids: CSR over items 0..n_items (row 0 empty) into category_names;
        empty arrays when the dataset has no categories.
    item_titles: (n_items+1,) str or None. train_ratings: float32 parallel to train_items, or None.
    user_features: name → (n_users,) int codes (0 = unknown) and
        user_feature_vocab: name → list of values (index = code).
    """

    n_users: int
    n_items: int
    train_offsets: np.ndarray
    train_items: np.ndarray
    val: EvalSplit
    test: EvalSplit
    item_raw_ids: np.ndarray
    user_raw_ids: np.ndarray
    item_category_offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))
    item_category_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    category_names: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=str))
    item_titles: np.ndarray | None = None
    user_features: dict[str, np.ndarray] = field(default_factory=dict)
    user_feature_vocab: dict[str, list[str]] = field(default_factory=dict)
    train_ratings: np.ndarray | None = None  # parallel to train_items where the source has ratings

    def train_sequence(self, user: int) -> np.ndarray:
        return self.train_items[self.train_offsets[user] : self.train_offsets[user + 1]]

    @property
    def n_interactions(self) -> int:
        """Interactions after preprocessing: training events plus the held-out targets."""
        return int(self.train_items.shape[0] + len(self.val) + len(self.test))

    def known_sequences(self) -> tuple[np.ndarray, np.ndarray]:
        """CSR (offsets, items) of everything known about each user, oldest first: the longest of the training
        sequence, validation history + target and test history + target (each is a prefix of the next)."""
        sequences = [self.train_sequence(u) for u in range(self.n_users)]
        for split in (self.val, self.test):
            for row, user in enumerate(split.users.tolist()):
                seq = np.append(split.history(row), split.targets[row])
                if len(seq) > len(sequences[user]):
                    sequences[user] = seq
        lengths = np.array([len(s) for s in sequences], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        items = np.concatenate(sequences).astype(np.int64) if sequences else np.zeros(0, dtype=np.int64)
        return offsets, items
