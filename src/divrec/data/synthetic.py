"""A deterministic synthetic dataset with Zipf popularity, item categories and learnable sequential structure.

Every item has ``n_successors`` likely next items (drawn by popularity, from the same category with probability
``same_category_prob``). A user's first item is drawn by popularity; each next item is, with probability
``follow_prob``, a uniformly chosen successor of the previous item, else a fresh popularity draw. A sequence model
(or even a bigram counter) therefore beats popularity. Generation is vectorised over users, one step per sequence
position, so 10M interactions over 1M items take seconds.

With ``n_user_groups`` > 0 users also get two categorical features (for ``model.user_features``): ``group``, one of
``n_user_groups`` values drawn uniformly (uninformative), and ``activity`` (``long`` or ``short``: whether the user's
sequence is longer than ``mean_length``). They come from their own random stream: the sequences stay the same.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from divrec.data.base import Source
from divrec.data.errors import SOURCE_KEY, DataError
from divrec.data.types import RawData
from divrec.lazy import lazy_module
from divrec.names import CATEGORIES, ITEM, TIME, USER

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
else:
    pd = lazy_module("pandas")  # imported on first use: a cache hit never reads a table
    pa = lazy_module("pyarrow")

HORIZON_S = 365 * 86_400  # users start at a uniform time within one year


@dataclasses.dataclass(kw_only=True)
class Synthetic(Source):
    """Synthetic sequences; same parameters (and ``seed``) → identical data. No files; ``load`` ignores the folder."""

    name: str = "synthetic"
    n_users: int = 1000
    n_items: int = 500
    n_categories: int = 20
    mean_length: float = 20.0  # mean sequence length (min_length + geometric tail)
    min_length: int = 5
    zipf_exponent: float = 1.0  # item popularity ∝ rank^-exponent
    n_successors: int = 4
    follow_prob: float = 0.7
    same_category_prob: float = 0.7
    seed: int = 0
    n_user_groups: int = 0  # > 0: user features `group` and `activity` (see the module docstring); 0 = none

    def load(self, folder: Path | None = None) -> RawData:
        self._check()
        rng = np.random.default_rng(self.seed)
        popularity = 1.0 / np.arange(1, self.n_items + 1, dtype=np.float64) ** self.zipf_exponent
        popularity = popularity[rng.permutation(self.n_items)]
        popularity /= popularity.sum()
        category = rng.integers(0, self.n_categories, self.n_items)
        successors = self._successors(rng, popularity, category)
        lengths = self._lengths(rng)
        items = self._walk(rng, np.cumsum(popularity), successors, lengths)
        times = _times(rng, lengths, self.mean_length)
        users = np.repeat(np.arange(self.n_users, dtype=np.int64), lengths)
        inter = pd.DataFrame({USER: _as_str(users), ITEM: _as_str(items), TIME: times})
        names = np.array([f"c{c}" for c in range(self.n_categories)], dtype=object)
        cats = pd.Series(names[category]).map(lambda c: [c]).to_numpy()
        features = pd.DataFrame({CATEGORIES: cats}, index=pd.Index(_as_str(np.arange(self.n_items))))
        return RawData(inter, features, self._user_features(lengths))

    def _user_features(self, lengths: np.ndarray) -> pd.DataFrame | None:
        """``group`` and ``activity`` per raw user id, from a random stream of their own; None without groups."""
        if self.n_user_groups <= 0:
            return None
        group = np.random.default_rng([self.seed, 1]).integers(0, self.n_user_groups, self.n_users)
        return pd.DataFrame(
            {"group": [f"g{g}" for g in group], "activity": np.where(lengths > self.mean_length, "long", "short")},
            index=pd.Index([str(u) for u in range(self.n_users)]),
        )

    def _check(self) -> None:
        positive = {"n_users": self.n_users, "n_items": self.n_items, "n_categories": self.n_categories}
        positive |= {"min_length": self.min_length, "n_successors": self.n_successors}
        for option, value in positive.items():
            if value < 1:
                raise DataError(f"synthetic {option}={value} must be >= 1; set {SOURCE_KEY}.{option}")
        if self.n_user_groups < 0:
            groups = self.n_user_groups
            raise DataError(f"synthetic n_user_groups={groups} must be >= 0; set {SOURCE_KEY}.n_user_groups")
        if self.mean_length < self.min_length:
            raise DataError(
                f"synthetic mean_length={self.mean_length} < min_length={self.min_length}; "
                f"set {SOURCE_KEY}.mean_length >= {SOURCE_KEY}.min_length"
            )
        for option in ("follow_prob", "same_category_prob"):
            if not 0.0 <= getattr(self, option) <= 1.0:
                value = getattr(self, option)
                raise DataError(f"synthetic {option}={value} must be in [0, 1]; set {SOURCE_KEY}.{option}")

    def _successors(self, rng: np.random.Generator, popularity: np.ndarray, category: np.ndarray) -> np.ndarray:
        """(n_items, n_successors) likely next items: popularity draws within a category (same or random)."""
        order = np.argsort(category, kind="stable")
        cdf = np.concatenate([[0.0], np.cumsum(popularity[order])])
        bounds = np.searchsorted(category[order], np.arange(self.n_categories + 1))  # category c = order[b[c]:b[c+1]]
        shape = (self.n_items, self.n_successors)
        mass = np.bincount(category, weights=popularity, minlength=self.n_categories)
        other = np.searchsorted(np.cumsum(mass), rng.random(shape) * mass.sum(), side="right")
        other = np.minimum(other, self.n_categories - 1)
        same = rng.random(shape) < self.same_category_prob
        target = np.where(same, category[:, None], other)
        lo, hi = cdf[bounds[target]], cdf[bounds[target + 1]]
        pos = np.searchsorted(cdf, lo + rng.random(shape) * (hi - lo), side="right") - 1
        pos = np.clip(pos, bounds[target], bounds[target + 1] - 1)
        own = order[pos] == np.arange(self.n_items)[:, None]  # no self-loops: take the next item of that category
        pos[own] = np.where(pos[own] + 1 < bounds[target[own] + 1], pos[own] + 1, bounds[target[own]])
        return order[pos]

    def _lengths(self, rng: np.random.Generator) -> np.ndarray:
        """min_length + a geometric tail with the requested mean."""
        extra = self.mean_length - self.min_length
        tail = rng.geometric(1.0 / (extra + 1.0), self.n_users) - 1 if extra > 0 else np.zeros(self.n_users, int)
        return (self.min_length + tail).astype(np.int64)

    def _walk(self, rng: np.random.Generator, cdf: np.ndarray, succ: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """All sequences, flat (user-major); step t moves every user whose sequence is longer than t."""
        starts = np.cumsum(lengths) - lengths
        out = np.empty(int(lengths.sum()), dtype=np.int64)
        alive = np.arange(self.n_users)
        prev = _draw(rng, cdf, self.n_users)
        out[starts] = prev
        for t in range(1, int(lengths.max())):
            keep = lengths[alive] > t
            alive, prev = alive[keep], prev[keep]
            prev = succ[prev, rng.integers(0, self.n_successors, len(alive))]
            fresh = np.flatnonzero(rng.random(len(alive)) >= self.follow_prob)
            prev[fresh] = _draw(rng, cdf, len(fresh))
            out[starts[alive] + t] = prev
        return out


def _draw(rng: np.random.Generator, cdf: np.ndarray, n: int) -> np.ndarray:
    """``n`` items drawn by popularity (``cdf`` = cumulative popularity)."""
    return np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), len(cdf) - 1)


def _times(rng: np.random.Generator, lengths: np.ndarray, mean_length: float) -> np.ndarray:
    """Increasing int64 seconds per user: a uniform start within a year, then gaps averaging a year / mean_length
    (a typical user is active for about a year, so global temporal cut-offs find history and targets)."""
    starts = np.cumsum(lengths) - lengths
    max_gap = max(2, int(2 * HORIZON_S / mean_length))
    gaps = rng.integers(1, max_gap, int(lengths.sum()), dtype=np.int64)
    gaps[starts] = rng.integers(0, HORIZON_S, len(lengths), dtype=np.int64)
    csum = np.cumsum(gaps)
    return csum - np.repeat(csum[starts] - gaps[starts], lengths)


def _as_str(ids: np.ndarray) -> pd.Series:
    """Integer ids as an Arrow-backed str column (fast for tens of millions of rows)."""
    return pd.Series(pa.array(ids).cast(pa.string()), dtype=pd.ArrowDtype(pa.string()))
