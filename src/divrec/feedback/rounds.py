"""Time windows of the feedback loop, as plain arrays: cut-offs, what is known before a time, who acts in a window.

Round w (1..W) covers the interactions with t_{w-1} <= time < t_w. A model evaluated on round w has been trained on
interactions before t_{w-1} only; it is scored on each active user's first interaction in the window, with the
user's whole history before that interaction as input (the same protocol as ``GlobalTemporal``).
"""

from __future__ import annotations

import numpy as np

from divrec.data.errors import DataError
from divrec.data.preprocess import Sequences
from divrec.data.splits import first_in_window, prefixes
from divrec.data.types import EvalSplit


def cutoffs(times: np.ndarray, start_quantile: float, n_windows: int) -> np.ndarray:
    """(W+1,) cut-off times t_0 < … < t_W: t_0 at ``start_quantile`` of all timestamps, the rest splitting the
    later interactions into ``n_windows`` windows of about equal size; t_W lies past the last interaction."""
    if not 0.0 < start_quantile < 1.0 or n_windows < 1:
        raise DataError(
            f"feedback windows need 0 < start_quantile < 1 and n_windows >= 1 (got {start_quantile}, {n_windows}); "
            "fix feedback.start_quantile / feedback.n_windows"
        )
    quantiles = np.linspace(start_quantile, 1.0, n_windows + 1)
    cuts = np.quantile(times.astype(np.float64), quantiles)
    cuts[-1] = np.nextafter(float(times.max()), np.inf)  # the last window includes the last interaction
    if not (np.diff(cuts) > 0).all():
        raise DataError(
            f"feedback windows collapse (cut-offs {cuts.tolist()}): too many equal timestamps; "
            "use fewer feedback.n_windows or a smaller feedback.start_quantile"
        )
    return cuts


def user_of(seqs: Sequences) -> np.ndarray:
    """(N,) the user of every interaction in the CSR order."""
    return np.repeat(np.arange(seqs.n_users), seqs.lengths)


def known_before(seqs: Sequences, t: float) -> tuple[np.ndarray, np.ndarray]:
    """CSR (offsets, items) of every user's interactions before ``t`` (sequences are chronological: a prefix)."""
    lengths = np.bincount(user_of(seqs)[times_of(seqs) < t], minlength=seqs.n_users)
    return prefixes(seqs, lengths)


def recent_window(seqs: Sequences, lo: float, hi: float, context: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR of what an incremental update trains on: for each user active in [lo, hi), their interactions before
    ``hi``, cut to the new ones plus ``context`` older items as input context; inactive users get an empty row."""
    times, owner = times_of(seqs), user_of(seqs)
    before_hi = np.bincount(owner[times < hi], minlength=seqs.n_users)
    new = np.bincount(owner[(times >= lo) & (times < hi)], minlength=seqs.n_users)
    keep = np.where(new > 0, np.minimum(before_hi, new + context), 0)
    starts = seqs.offsets[:-1] + before_hi - keep
    offsets = np.concatenate([[0], np.cumsum(keep)]).astype(np.int64)
    total = int(keep.sum())
    row_starts = offsets[:-1]
    flat = np.arange(total, dtype=np.int64) - np.repeat(row_starts - starts, keep)
    return offsets, seqs.items[flat].astype(np.int64)


def window_targets(seqs: Sequences, lo: float, hi: float, min_history: int) -> EvalSplit:
    """Each user's first interaction in [lo, hi) with at least ``min_history`` items before it, and that history."""
    times = times_of(seqs)
    return first_in_window(seqs, user_of(seqs), (times >= lo) & (times < hi), min_history)


def times_of(seqs: Sequences) -> np.ndarray:
    """The interaction times, or a clear error for a dataset that has none."""
    if seqs.times is None:
        raise DataError(
            "the feedback loop needs timestamps but this dataset has none; use data=ml-100k or "
            "data=musical-instruments (or a CSV source with a time column)"
        )
    return seqs.times
