"""Raw interactions → chronological per-user sequences with contiguous ids (item 0 = padding).

Steps, in order: rating threshold (implicit feedback), chronological stable sort, duplicate (user, item) removal
keeping the earliest, iterative k-core until stable, id remapping. All vectorised over numpy arrays.

Ids: users are numbered 0..n_users-1 and items 1..n_items in order of their first appearance in the source's row
order (file order), so ids are deterministic and, for files already numbered by first appearance (S3-Rec), equal
to the original ids shifted only by removed entries.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

import numpy as np

from divrec.data.errors import PREPROCESSING_KEY, DataError
from divrec.data.types import RawData
from divrec.lazy import lazy_module
from divrec.names import ITEM, RATING, TIME, USER

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy_module("pandas")  # imported on first use: a cache hit never reads a table

log = logging.getLogger(__name__)
NOTHING_LEFT = "no interactions left after preprocessing"


@dataclasses.dataclass
class Sequences:
    """Per-user chronological item sequences in CSR form, before splitting.

    offsets: (n_users+1,) into items/times; items: internal ids 1..n_items; times: same length, or None where the
    source has no TIME. item_raw_ids: (n_items+1,) str with "" at 0; user_raw_ids: (n_users,) str.
    ratings: (N,) float32 parallel to items, or None where the source has no RATING (pointwise objectives use them).
    """

    offsets: np.ndarray
    items: np.ndarray
    times: np.ndarray | None
    user_raw_ids: np.ndarray
    item_raw_ids: np.ndarray
    ratings: np.ndarray | None = None

    @property
    def n_users(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_items(self) -> int:
        return len(self.item_raw_ids) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


@dataclasses.dataclass(kw_only=True)
class Preprocessing:
    """Filtering and ordering of raw interactions; ``__call__(raw) -> Sequences``.

    rating_threshold: keep interactions with rating >= threshold (None = keep all; needs a RATING column).
    drop_duplicates: keep only the chronologically first interaction of each (user, item) pair.
    user_core / item_core: repeat dropping users / items with fewer interactions until none is left (0 = off).
    """

    rating_threshold: float | None = None
    drop_duplicates: bool = True
    user_core: int = 0
    item_core: int = 0

    def __call__(self, raw: RawData) -> Sequences:
        table = raw.interactions
        missing = [c for c in (USER, ITEM) if c not in table.columns]
        if missing:
            raise DataError(f"source returned no {missing} column(s) (found {list(table.columns)}); fix the loader")
        users, user_ids = _codes(table[USER], USER)
        items, item_ids = _codes(table[ITEM], ITEM)
        times = _time_values(table)
        rows = chronological(self._threshold(table), users, times)
        kept = [len(table), len(rows)]
        if self.drop_duplicates:
            rows = rows[first_occurrences(users[rows], items[rows], len(item_ids))]
        kept.append(len(rows))
        if len(rows) == 0:
            raise DataError(self._nothing_kept(table, kept))
        cored = k_core(rows, users, items, self.user_core, self.item_core)
        log.debug("interactions: %d raw, %d after threshold, %d after duplicates, %d after k-core", *kept, len(cored))
        if len(cored) == 0:
            raise DataError(self._core_removes_all(users[rows], items[rows]))
        rows = cored
        seqs = _remap(rows, users, items, times, user_ids, item_ids)
        if RATING in table.columns:
            ratings = pd.to_numeric(table[RATING], errors="coerce").to_numpy(dtype=np.float32)
            seqs.ratings = ratings[rows]
        return seqs

    def _nothing_kept(self, table: pd.DataFrame, kept: list[int]) -> str:
        """Why no interaction is left before the k-core: an empty source, or a rating threshold above all ratings."""
        if kept[0] == 0:
            return f"{NOTHING_LEFT}: the source has no interactions; check data.source (is its file empty?)"
        ratings = pd.to_numeric(table[RATING], errors="coerce")
        return (
            f"{NOTHING_LEFT}: {PREPROCESSING_KEY}.rating_threshold={self.rating_threshold} keeps none of the "
            f"{kept[0]:,} interactions "
            f"(ratings {ratings.min():g}..{ratings.max():g}); lower it or set {PREPROCESSING_KEY}.rating_threshold=null"
        )

    def _core_removes_all(self, users: np.ndarray, items: np.ndarray) -> str:
        """The k-core that removes everything, in data terms: how many users / items reach each threshold."""
        facts = []
        for what, core, ids in (("users", self.user_core, users), ("items", self.item_core, items)):
            counts = np.bincount(ids)
            counts = counts[counts > 0]
            if core > 1:
                facts.append(
                    f"{int((counts >= core).sum()):,} of {len(counts):,} {what} have >= {core} interactions "
                    f"(most: {counts.max()})"
                )
        return (
            f"{NOTHING_LEFT}: the k-core filter ({PREPROCESSING_KEY}.user_core={self.user_core}, "
            f"item_core={self.item_core}) removes "
            f"all {len(users):,} interactions: before it, {' and '.join(facts)} (it repeats until every user and item "
            f"meets its threshold); lower {PREPROCESSING_KEY}.user_core / {PREPROCESSING_KEY}.item_core (0 = off)"
        )

    def _threshold(self, table: pd.DataFrame) -> np.ndarray:
        """Row indices kept by the rating threshold (all rows if none is set)."""
        if self.rating_threshold is None:
            return np.arange(len(table), dtype=np.int64)
        if RATING not in table.columns:
            raise DataError(
                f"rating_threshold={self.rating_threshold} is set but this source has no ratings; "
                f"set {PREPROCESSING_KEY}.rating_threshold=null"
            )
        ratings = pd.to_numeric(table[RATING], errors="coerce").to_numpy(dtype=np.float64)
        return np.flatnonzero(ratings >= self.rating_threshold).astype(np.int64)


def chronological(rows: np.ndarray, users: np.ndarray, times: np.ndarray | None) -> np.ndarray:
    """``rows`` stably sorted by (user, time): equal times keep their file order."""
    if times is not None:
        rows = rows[np.argsort(times[rows], kind="stable")]
    return rows[np.argsort(users[rows], kind="stable")]


def first_occurrences(users: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    """Positions of the first occurrence of each (user, item) pair, in their original order."""
    keys = users.astype(np.int64) * np.int64(n_items) + items
    _, first = np.unique(keys, return_index=True)
    return np.sort(first)


def k_core(rows: np.ndarray, users: np.ndarray, items: np.ndarray, user_core: int, item_core: int) -> np.ndarray:
    """Drop rows of users with < user_core and items with < item_core rows, repeatedly, until nothing changes."""
    while (user_core > 1 or item_core > 1) and len(rows):
        u, i = users[rows], items[rows]
        keep = (np.bincount(u)[u] >= user_core) & (np.bincount(i)[i] >= item_core)
        if keep.all():
            break
        rows = rows[keep]
    return rows


def _remap(
    rows: np.ndarray,
    users: np.ndarray,
    items: np.ndarray,
    times: np.ndarray | None,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
) -> Sequences:
    """Contiguous ids for the surviving users (0..) and items (1..), ordered by first appearance in the file."""
    u, i = users[rows], items[rows]
    user_alive = np.zeros(len(user_ids), dtype=bool)
    user_alive[u] = True
    item_alive = np.zeros(len(item_ids), dtype=bool)
    item_alive[i] = True
    new_user = np.cumsum(user_alive) - 1
    new_item = np.cumsum(item_alive)
    counts = np.bincount(new_user[u], minlength=int(user_alive.sum()))
    return Sequences(
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        items=new_item[i].astype(np.int64),
        times=None if times is None else times[rows],
        user_raw_ids=user_ids[user_alive],
        item_raw_ids=np.concatenate([np.array([""], dtype=item_ids.dtype), item_ids[item_alive]]),
    )


def _codes(column: pd.Series, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes (by first appearance) and the raw ids as a numpy str array."""
    codes, uniques = pd.factorize(column)
    if (codes < 0).any():
        row = int(np.flatnonzero(codes < 0)[0])
        raise DataError(f"interaction row {row + 1} has no {name}; fix or delete that row in the source file")
    return codes.astype(np.int64), np.asarray(uniques.astype(str), dtype=str)


def _time_values(table: pd.DataFrame) -> np.ndarray | None:
    """The TIME column as a numeric array, or None where the source has no timestamps."""
    if TIME not in table.columns:
        return None
    column = table[TIME]
    if not pd.api.types.is_numeric_dtype(column):
        raise DataError(f"{TIME} column has dtype {column.dtype}, expected numbers; fix the loader")
    values = column.to_numpy()
    if np.issubdtype(values.dtype, np.floating) and np.isnan(values).any():
        row = int(np.flatnonzero(np.isnan(values))[0])
        raise DataError(f"interaction row {row + 1} has no {TIME}; fix or delete that row in the source file")
    return values
