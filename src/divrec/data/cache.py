"""Content-keyed, atomic ``.npz`` cache of prepared datasets (no pickle).

Key = sha256 over the format version, the canonical config of source / preprocessing / split and the sha256 of
every raw file's content. File: ``<cache_dir>/<name>-<key[:16]>.npz`` holding the arrays of ``ProcessedData``
and a JSON metadata string (key, counts, user-feature names and vocabularies).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from divrec.data.base import Source, canonical_json, config_of
from divrec.data.download import make_parents, rmdir_if_empty
from divrec.data.types import EvalSplit, ProcessedData

FORMAT_VERSION = 2  # 2: optional ratings arrays
CHUNK = 1 << 20
FILE_MODE = 0o644  # mkstemp creates 0600; a cache is as readable as any data file
META = "meta"
EVAL_FIELDS = ("users", "history_offsets", "history_items", "targets")
STAGES = ("val", "test")
TRAIN_RATINGS, TARGET_RATINGS = "train_ratings", "target_ratings"  # optional arrays (sources with ratings)
ARRAYS = ("train_offsets", "train_items", "item_raw_ids", "user_raw_ids")
ARRAYS += ("item_category_offsets", "item_category_ids", "category_names")
USER_FEATURE = "user_feature."


class CacheError(Exception):
    """A cache file that cannot be used (unreadable, truncated, wrong key, missing or inconsistent arrays)."""


def file_sha256(path: Path) -> str:
    """sha256 of a file's content, streamed in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def cache_key(source: Source, preprocessing: Any, split: Any, folder: Path | None) -> str:
    """sha256 hex of format version + configs + raw file contents (required files and optional ones present)."""
    files: dict[str, str] = {}
    if folder is not None:
        for rel in (*source.files, *source.optional_files):
            if (folder / rel).is_file():
                files[rel] = file_sha256(folder / rel)
    payload = {
        "format": FORMAT_VERSION,
        "source": config_of(source),
        "preprocessing": config_of(preprocessing),
        "split": config_of(split),
        "files": files,
    }
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


def cache_path(cache_dir: Path, name: str, key: str) -> Path:
    return Path(cache_dir) / f"{name}-{key[:16]}.npz"


def save(path: Path, data: ProcessedData, key: str, extra: dict[str, Any] | None = None) -> None:
    """Write ``data`` (+ JSON-able ``extra`` metadata) atomically: temp file in the same folder, fsync,
    ``os.replace``; nothing is left behind on failure."""
    arrays = _to_arrays(data, key, extra or {})
    created = make_parents(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        for folder in reversed(created):
            rmdir_if_empty(folder)
        raise


def load(path: Path, key: str) -> tuple[ProcessedData, dict[str, Any]]:
    """Read a cache file → (data, metadata); CacheError if it is unreadable, for another key, or inconsistent."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z[META][()]))
            if meta.get("key") != key or meta.get("format") != FORMAT_VERSION:
                raise CacheError(f"it belongs to key {str(meta.get('key'))[:16]}, format {meta.get('format')}")
            arrays = {name: z[name] for name in z.files if name != META}
        data = _from_arrays(arrays, meta)
        _check(data, meta)
    except CacheError:
        raise
    except Exception as err:  # a broken cache must never crash a run: any read error means "rebuild"
        raise CacheError(f"{type(err).__name__}: {err}") from err
    return data, meta


def _to_arrays(data: ProcessedData, key: str, extra: dict[str, Any]) -> dict[str, np.ndarray]:
    arrays = {name: np.asarray(getattr(data, name)) for name in ARRAYS}
    for stage in ("val", "test"):
        split = getattr(data, stage)
        arrays |= {f"{stage}.{name}": np.asarray(getattr(split, name)) for name in EVAL_FIELDS}
    if data.item_titles is not None:
        arrays["item_titles"] = np.asarray(data.item_titles, dtype=str)
    optional = {TRAIN_RATINGS: data.train_ratings}
    optional |= {f"{stage}.{TARGET_RATINGS}": getattr(data, stage).target_ratings for stage in STAGES}
    arrays |= {name: np.asarray(value) for name, value in optional.items() if value is not None}
    arrays |= {f"{USER_FEATURE}{name}": codes for name, codes in data.user_features.items()}
    meta = extra | {
        "key": key,
        "format": FORMAT_VERSION,
        "n_users": data.n_users,
        "n_items": data.n_items,
        "n_train": int(data.train_items.shape[0]),
        "n_val": len(data.val),
        "n_test": len(data.test),
        "user_features": list(data.user_features),
        "user_feature_vocab": data.user_feature_vocab,
    }
    for name, value in arrays.items():
        if value.dtype == object:
            raise TypeError(f"cache array {name} has dtype object; convert it to str or numbers")
    return {META: np.array(json.dumps(meta)), **arrays}


def _from_arrays(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> ProcessedData:
    evals = {
        stage: EvalSplit(
            **{n: arrays[f"{stage}.{n}"] for n in EVAL_FIELDS}, target_ratings=arrays.get(f"{stage}.{TARGET_RATINGS}")
        )
        for stage in STAGES
    }
    return ProcessedData(
        n_users=int(meta["n_users"]),
        n_items=int(meta["n_items"]),
        val=evals["val"],
        test=evals["test"],
        item_titles=arrays.get("item_titles"),
        train_ratings=arrays.get(TRAIN_RATINGS),
        user_features={name: arrays[f"{USER_FEATURE}{name}"] for name in meta["user_features"]},
        user_feature_vocab={name: list(v) for name, v in meta["user_feature_vocab"].items()},
        **{name: arrays[name] for name in ARRAYS},
    )


def _check(data: ProcessedData, meta: dict[str, Any]) -> None:
    """Cheap structural checks that catch truncated or mixed-up arrays."""
    problems = []
    if len(data.train_offsets) != data.n_users + 1 or data.train_offsets[-1] != len(data.train_items):
        problems.append("training CSR does not match n_users / train_items")
    if len(data.item_raw_ids) != data.n_items + 1 or len(data.user_raw_ids) != data.n_users:
        problems.append("raw id tables do not match n_items / n_users")
    for split in (data.val, data.test):
        offsets, n = split.history_offsets, len(split)
        if len(offsets) != n + 1 or offsets[-1] != len(split.history_items) or len(split.targets) != n:
            problems.append("an evaluation CSR is inconsistent")
    counts = (int(data.train_items.shape[0]), len(data.val), len(data.test))
    if counts != (meta["n_train"], meta["n_val"], meta["n_test"]):
        problems.append(f"counts {counts} differ from the metadata")
    if problems:
        raise CacheError("; ".join(problems))
