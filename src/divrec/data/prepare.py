"""``prepare_dataset``: locate → (cache hit) or load → preprocess → split → features → cache."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from divrec.data import cache
from divrec.data.base import Source
from divrec.data.features import item_categories, item_titles, user_features
from divrec.data.locate import locate
from divrec.data.preprocess import Preprocessing
from divrec.data.splits import Split
from divrec.data.sufficiency import check_evaluable
from divrec.data.types import ProcessedData

log = logging.getLogger(__name__)
N_INTERACTIONS = "n_interactions"  # cache metadata: interactions after preprocessing, before splitting


def prepare_dataset(
    source: Source,
    preprocessing: Preprocessing,
    split: Split,
    data_dir: Path | str,
    mirror: Path | str | None = None,
    cache_dir: Path | str | None = None,
    download: bool = True,
    progress: bool = True,
) -> ProcessedData:
    """The processed, split dataset, from ``cache_dir`` when a valid entry for exactly these inputs exists.

    ``mirror`` None = no mirror; ``cache_dir`` None = no caching. A corrupt cache file is logged and rebuilt.
    ``progress`` logs each stage with its duration at INFO (else DEBUG).
    """
    level = logging.INFO if progress else logging.DEBUG
    mirror = None if mirror is None else Path(mirror)
    folder = locate(source, Path(data_dir), mirror, download) if source.files else None
    key = cache.cache_key(source, preprocessing, split, folder)
    path = None if cache_dir is None else cache.cache_path(Path(cache_dir), source.name, key)
    if path is not None and path.is_file():
        try:
            data, meta = cache.load(path, key)
            check_evaluable(data, split, preprocessing)  # a cache written before this check existed
            log.info("%s; cache hit %s", summary(source.name, data, meta.get(N_INTERACTIONS)), path)
            return data
        except cache.CacheError as err:
            log.warning("cache file %s is unusable (%s); rebuilding it", path, err)
    data, n_interactions = build(source, preprocessing, split, folder or Path(data_dir) / source.name, level)
    if path is not None:
        cache.save(path, data, key, {N_INTERACTIONS: n_interactions})
    outcome = f"cache miss, wrote {path}" if path else "cache disabled"
    log.info("%s; %s", summary(source.name, data, n_interactions), outcome)
    return data


def build(
    source: Source, preprocessing: Preprocessing, split: Split, folder: Path, level: int = logging.DEBUG
) -> tuple[ProcessedData, int]:
    """Load, preprocess, split and attach side information (no caching) → (data, preprocessed interactions); a
    DataError when the split leaves no validation or test row (``check_evaluable``)."""
    start = time.perf_counter()
    raw = source.load(folder)
    log.log(level, "%s: loaded %d raw interactions in %.1fs", source.name, len(raw.interactions), _since(start))
    seqs = preprocessing(raw)
    log.log(level, "%s: preprocessed to %d interactions in %.1fs", source.name, len(seqs.items), _since(start))
    parts = split.split(seqs)
    category_offsets, category_ids, category_names = item_categories(raw.item_features, seqs.item_raw_ids)
    codes, vocab = user_features(raw.user_features, seqs.user_raw_ids)
    data = ProcessedData(
        n_users=seqs.n_users,
        n_items=seqs.n_items,
        train_offsets=parts.train_offsets,
        train_items=parts.train_items,
        val=parts.val,
        test=parts.test,
        item_raw_ids=seqs.item_raw_ids,
        user_raw_ids=seqs.user_raw_ids,
        item_category_offsets=category_offsets,
        item_category_ids=category_ids,
        category_names=category_names,
        item_titles=item_titles(raw.item_features, seqs.item_raw_ids),
        user_features=codes,
        user_feature_vocab=vocab,
        train_ratings=parts.train_ratings,
    )
    log.log(level, "%s: split and features done in %.1fs", source.name, _since(start))
    check_evaluable(data, split, preprocessing, raw.interactions)
    return data, len(seqs.items)


def summary(name: str, data: ProcessedData, n_interactions: int | None = None) -> str:
    """One line: users, items, interactions after preprocessing, and split sizes (training events, eval rows)."""
    n = data.n_interactions if n_interactions is None else n_interactions
    return (
        f"{name}: {data.n_users:,} users, {data.n_items:,} items, {n:,} interactions; "
        f"train {len(data.train_items):,} / val {len(data.val):,} / test {len(data.test):,}"
    )


def _since(start: float) -> float:
    return time.perf_counter() - start
