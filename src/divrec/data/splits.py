"""Train / validation / test splits of chronological sequences; ``split(seqs) -> Splits`` for every class.

Evaluation rows hold one held-out target and the user's full history before it (oldest first; a user may have
several validation rows, see ``LeaveOneOut.val_items``); training sequences are per-user prefixes, so no held-out
target ever sits at or after its position in training.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from divrec.data.errors import SPLIT_KEY, DataError
from divrec.data.preprocess import Sequences
from divrec.data.types import EvalSplit


@dataclasses.dataclass
class Splits:
    """Training CSR (one row per user, possibly empty) and the two evaluation splits; ``train_ratings`` parallels
    ``train_items`` where the source has ratings."""

    train_offsets: np.ndarray
    train_items: np.ndarray
    val: EvalSplit
    test: EvalSplit
    train_ratings: np.ndarray | None = None


class Split:
    """Base class: ``split(seqs)`` returns the training prefixes and the val / test targets."""

    def split(self, seqs: Sequences) -> Splits:
        raise NotImplementedError


@dataclasses.dataclass(kw_only=True)
class LeaveOneOut(Split):
    """Per user: last item = test target, the ``val_items`` items before it = validation targets, the rest = training.

    Every validation target is its own row whose history is every item before it (rows user-major, oldest target
    first), so ``val_items > 1`` averages validation metrics over more targets per user (less noisy model
    selection) while the test protocol stays the same: test history = every item before the last one. A user with
    ``n >= 3`` interactions gets ``min(val_items, n - 2)`` validation rows (at least one training item stays);
    users with fewer than 3 keep all of them in training and are not evaluated (no val/test row).
    """

    val_items: int = 1  # validation targets per user (1 = classic leave-one-out)

    def __post_init__(self) -> None:
        if isinstance(self.val_items, bool) or not isinstance(self.val_items, int | np.integer) or self.val_items < 1:
            raise DataError(
                f"{SPLIT_KEY}.val_items={self.val_items!r} must be an integer >= 1 (validation targets per user); "
                f"set {SPLIT_KEY}.val_items=1 for classic leave-one-out"
            )

    def split(self, seqs: Sequences) -> Splits:
        lengths = seqs.lengths.astype(np.int64)
        evaluated = np.flatnonzero(lengths >= 3)
        n_val = np.minimum(int(self.val_items), lengths[evaluated] - 2)
        train_lengths = lengths.copy()
        train_lengths[evaluated] -= n_val + 1
        val_starts = seqs.offsets[:-1][evaluated] + train_lengths[evaluated]
        val = eval_split(seqs, np.repeat(evaluated, n_val), ranges(val_starts, n_val))
        test = eval_split(seqs, evaluated, seqs.offsets[1:][evaluated] - 1)
        offsets, items = prefixes(seqs, train_lengths)
        return Splits(offsets, items, val, test, prefix_ratings(seqs, train_lengths))


@dataclasses.dataclass(kw_only=True)
class GlobalTemporal(Split):
    """Global time cut-offs t_val < t_test at the ``val_quantile`` / ``test_quantile`` quantiles of all timestamps.

    Training = interactions before t_val. Validation target of a user = its first interaction in [t_val, t_test);
    test target = its first interaction at or after t_test; each with the full history before it. Rows whose
    history is shorter than ``min_history`` are dropped (cold-start users are not evaluated by default).
    """

    val_quantile: float = 0.8
    test_quantile: float = 0.9
    min_history: int = 1
    # accepted so that switching data.split._target_ from LeaveOneOut keeps working; one target per window only
    val_items: int = 1

    def __post_init__(self) -> None:
        if self.val_items != 1:
            raise DataError(
                f"{SPLIT_KEY}.val_items={self.val_items!r} applies to leave-one-out only: GlobalTemporal validates on "
                f"each user's first interaction in [t_val, t_test); set {SPLIT_KEY}.val_items=1"
            )

    def split(self, seqs: Sequences) -> Splits:
        if seqs.times is None:
            raise DataError(
                "GlobalTemporal needs timestamps but this source has none (order only); "
                f"use leave-one-out: set {SPLIT_KEY}._target_=divrec.data.splits.LeaveOneOut"
            )
        if not 0.0 < self.val_quantile < self.test_quantile < 1.0:
            raise DataError(
                f"GlobalTemporal quantiles val={self.val_quantile}, test={self.test_quantile} must satisfy "
                f"0 < val < test < 1; fix {SPLIT_KEY}.val_quantile / {SPLIT_KEY}.test_quantile"
            )
        t_val, t_test = np.quantile(seqs.times, [self.val_quantile, self.test_quantile])
        if not t_val < t_test:
            raise DataError(
                f"GlobalTemporal cut-offs coincide (t_val = t_test = {t_val}): too many equal timestamps; "
                f"move {SPLIT_KEY}.val_quantile and {SPLIT_KEY}.test_quantile further apart"
            )
        user_of = np.repeat(np.arange(seqs.n_users), seqs.lengths)
        train_lengths = np.bincount(user_of[seqs.times < t_val], minlength=seqs.n_users)
        offsets, items = prefixes(seqs, train_lengths)
        val = self._first_after(seqs, user_of, (seqs.times >= t_val) & (seqs.times < t_test))
        test = self._first_after(seqs, user_of, seqs.times >= t_test)
        return Splits(offsets, items, val, test, prefix_ratings(seqs, train_lengths))

    def _first_after(self, seqs: Sequences, user_of: np.ndarray, in_window: np.ndarray) -> EvalSplit:
        return first_in_window(seqs, user_of, in_window, self.min_history)


def first_in_window(seqs: Sequences, user_of: np.ndarray, in_window: np.ndarray, min_history: int) -> EvalSplit:
    """Each user's first interaction where ``in_window`` (a mask over all interactions) holds, with at least
    ``min_history`` items before it; ``user_of`` maps each interaction to its user."""
    candidates = np.flatnonzero(in_window)
    users, first = np.unique(user_of[candidates], return_index=True)
    targets = candidates[first]
    keep = targets - seqs.offsets[users] >= min_history
    return eval_split(seqs, users[keep], targets[keep])


def ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(start, start + length)`` for every pair, vectorised."""
    lengths = lengths.astype(np.int64)
    total = int(lengths.sum())
    row_starts = np.cumsum(lengths) - lengths
    return np.arange(total, dtype=np.int64) - np.repeat(row_starts - starts.astype(np.int64), lengths)


def prefixes(seqs: Sequences, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR of the first ``lengths[u]`` items of every user's sequence."""
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return offsets, seqs.items[ranges(seqs.offsets[:-1], lengths)].astype(np.int64)


def prefix_ratings(seqs: Sequences, lengths: np.ndarray) -> np.ndarray | None:
    """The ratings parallel to ``prefixes(seqs, lengths)``'s items (None where the source has no ratings)."""
    return None if seqs.ratings is None else seqs.ratings[ranges(seqs.offsets[:-1], lengths)]


def eval_split(seqs: Sequences, users: np.ndarray, targets: np.ndarray) -> EvalSplit:
    """Rows (user, item at flat position ``targets``) with the user's items before that position as history."""
    lengths = targets - seqs.offsets[users]
    return EvalSplit(
        users=users.astype(np.int64),
        history_offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        history_items=seqs.items[ranges(seqs.offsets[users], lengths)].astype(np.int64),
        targets=seqs.items[targets].astype(np.int64),
        target_ratings=None if seqs.ratings is None else seqs.ratings[targets],
    )
