"""Too little data, said in data terms: a prepared dataset must leave the validation and the test split at least
one row, or a run would fail later with a message about devices or an empty loader.

``check_evaluable`` runs on every prepared dataset (built or read from the cache) before any trainer sees it; the
message counts users by interactions, names the minimum the split needs and the options that would help.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from divrec.data.errors import PREPROCESSING_KEY, SPLIT_KEY, DataError
from divrec.data.preprocess import Preprocessing
from divrec.data.splits import GlobalTemporal, LeaveOneOut, Split
from divrec.data.types import ProcessedData
from divrec.names import ITEM, USER

if TYPE_CHECKING:  # annotations only
    import pandas as pd

LOO_MINIMUM = 3  # interactions per user leave-one-out needs: one training, one validation, one test item
_SHOWN = 4  # most common per-user counts listed in a message


def interactions_per_user(data: ProcessedData) -> np.ndarray:
    """(n_users,) interactions of each user in the prepared dataset: training items + evaluation targets."""
    counts = np.diff(data.train_offsets).astype(np.int64)
    for split in (data.val, data.test):
        counts += np.bincount(split.users, minlength=data.n_users)[: data.n_users]
    return counts


def describe_counts(counts: np.ndarray) -> str:
    """E.g. ``12 users have 1 interaction, 8 have 2 (most: 2)``: the most common per-user counts, smallest first."""
    if not len(counts):
        return "no users"
    values, users = np.unique(counts, return_counts=True)
    top = np.sort(np.argsort(-users, kind="stable")[:_SHOWN])
    parts = [f"{users[i]:,} have {values[i]}" for i in top]
    lead = "user has" if users[top[0]] == 1 else "users have"
    parts[0] = parts[0].replace("have", lead, 1) + (" interaction" if values[top[0]] == 1 else " interactions")
    rest = int(users.sum() - users[top].sum())
    if rest:
        parts.append(f"{rest:,} users with other counts")
    return f"{', '.join(parts)} (most: {int(counts.max())})"


def check_evaluable(
    data: ProcessedData, split: Split, preprocessing: Preprocessing, raw: pd.DataFrame | None = None
) -> None:
    """DataError unless ``data`` has at least one validation and one test row; ``raw`` (the interactions before
    preprocessing, where known) tells whether dropping duplicates removed any."""
    if len(data.val) and len(data.test):
        return
    counts = interactions_per_user(data)
    found = f"{len(data.val)} validation and {len(data.test)} test rows"
    if isinstance(split, LeaveOneOut):
        repeated = raw is not None and USER in raw and ITEM in raw and bool(raw.duplicated([USER, ITEM]).any())
        hints = _keep_more(preprocessing, repeated)
        raise DataError(
            f"too little data for leave-one-out ({SPLIT_KEY}): no user has the {LOO_MINIMUM} interactions it needs "
            f"(a training, a validation and a test item); after preprocessing "
            f"{describe_counts(counts)}; {hints}add interactions (at least {LOO_MINIMUM} per user)"
        )
    if isinstance(split, GlobalTemporal):
        raise DataError(
            f"too little data for the global temporal split ({SPLIT_KEY}): {found} (a row needs a user's first "
            f"interaction after a cut-off with >= {SPLIT_KEY}.min_history={split.min_history} items before it; "
            f"{describe_counts(counts)}); move {SPLIT_KEY}.val_quantile / {SPLIT_KEY}.test_quantile, "
            f"lower {SPLIT_KEY}.min_history, or use leave-one-out"
        )
    raise DataError(
        f"too little data for {type(split).__name__} ({SPLIT_KEY}): {found}; {describe_counts(counts)}; "
        f"add interactions or change {SPLIT_KEY}"
    )


def _keep_more(preprocessing: Preprocessing, repeated: bool) -> str:
    """The preprocessing options that, relaxed, keep more interactions per user ('' when none applies)."""
    options = []
    if preprocessing.item_core > 1:
        options.append(f"lower {PREPROCESSING_KEY}.item_core (now {preprocessing.item_core})")
    if preprocessing.rating_threshold is not None:
        options.append(f"lower or unset {PREPROCESSING_KEY}.rating_threshold (now {preprocessing.rating_threshold})")
    if preprocessing.drop_duplicates and repeated:
        options.append(f"set {PREPROCESSING_KEY}.drop_duplicates=false (keeps repeated interactions)")
    return f"keep more per user ({'; '.join(options)}) or " if options else ""
