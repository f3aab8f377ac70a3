"""Item and user side information aligned to internal ids: category CSR, titles, user feature codes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from divrec.lazy import lazy_module
from divrec.names import CATEGORIES, TITLE

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy_module("pandas")  # imported on first use: a cache hit never reads a table

UNKNOWN = "<unk>"  # user_feature_vocab[name][0]: code 0, a user without that feature


def _aligned(features: pd.DataFrame, raw_ids: np.ndarray) -> pd.DataFrame:
    """Rows of ``features`` (index = raw id) in the order of ``raw_ids``; missing ids give NaN rows."""
    features = features[~features.index.duplicated(keep="first")]
    features.index = features.index.astype(str)
    return features.reindex(pd.Index(raw_ids, dtype=object))


def item_categories(
    item_features: pd.DataFrame | None, item_raw_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(offsets (n_items+2,), ids, names): CSR over items 0..n_items, row 0 (padding) empty.

    Category names are numbered by first appearance over items 1..n_items; duplicates within an item are dropped.
    Items without categories have empty rows. No categories at all → the empty defaults of ``ProcessedData``
    (offsets ``[0]``, no ids, no names).
    """
    n_items = len(item_raw_ids) - 1
    empty = np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=str)
    if item_features is None or CATEGORIES not in item_features.columns:
        return empty
    lists = _aligned(item_features[[CATEGORIES]], item_raw_ids[1:])[CATEGORIES]
    exploded = pd.Series(lists.to_numpy(), index=np.arange(1, n_items + 1)).explode().dropna()
    if exploded.empty:
        return empty
    codes, names = pd.factorize(exploded.astype(str).to_numpy())
    item = exploded.index.to_numpy(dtype=np.int64)
    keep = ~pd.DataFrame({"item": item, "code": codes}).duplicated().to_numpy()
    item, codes = item[keep], codes[keep]
    counts = np.bincount(item, minlength=n_items + 1)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return offsets, codes.astype(np.int64), np.asarray(names, dtype=str)


def item_titles(item_features: pd.DataFrame | None, item_raw_ids: np.ndarray) -> np.ndarray | None:
    """(n_items+1,) str titles ("" for padding and unknown items), or None where the source has none."""
    if item_features is None or TITLE not in item_features.columns:
        return None
    titles = _aligned(item_features[[TITLE]], item_raw_ids[1:])[TITLE].fillna("").astype(str).to_numpy()
    return np.concatenate([np.array([""]), np.asarray(titles, dtype=str)])


def user_features(
    features: pd.DataFrame | None, user_raw_ids: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """Per feature: (n_users,) int64 codes with 0 = unknown, and its vocab (index = code, vocab[0] = UNKNOWN).

    Known values are coded 1.. in sorted order, so codes do not depend on row order.
    """
    if features is None:
        return {}, {}
    aligned = _aligned(features, user_raw_ids)
    codes: dict[str, np.ndarray] = {}
    vocab: dict[str, list[str]] = {}
    for name in aligned.columns:
        values = aligned[name]
        known = values.notna().to_numpy()
        strings = values[known].astype(str).to_numpy()
        uniques = np.unique(strings)
        column = np.zeros(len(values), dtype=np.int64)
        column[known] = np.searchsorted(uniques, strings) + 1
        codes[str(name)] = column
        vocab[str(name)] = [UNKNOWN, *(str(u) for u in uniques)]
    return codes, vocab
