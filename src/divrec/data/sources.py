"""Source loaders: each reads one dataset format into ``RawData`` (raw str ids, file order kept).

Every class is a keyword-only dataclass so Hydra can build it from ``_target_`` + plain arguments, and its fields
are its canonical config (part of the cache key). ``Synthetic`` lives in ``synthetic.py`` and is re-exported here.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from divrec.data.base import Source
from divrec.data.download import install_zip
from divrec.data.errors import SOURCE_KEY, DataError, shorten
from divrec.data.readers import Column, json_lines, read_columns, read_json, require_fields, text_lines
from divrec.data.synthetic import Synthetic
from divrec.data.types import RawData
from divrec.data.values import ids, numeric, times
from divrec.lazy import lazy_module
from divrec.names import CATEGORIES, ITEM, RATING, TIME, TITLE, USER

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy_module("pandas")  # imported on first use: a cache hit never reads a table

__all__ = [
    "AmazonReviews",
    "MovieLens100K",
    "RecBoleAtomic",
    "S3RecSequences",
    "Source",
    "Synthetic",
    "TabularInteractions",
]

# MovieLens user features (names of the user_features columns) and the ML-1M style age buckets.
AGE, GENDER, OCCUPATION = "age", "gender", "occupation"
AGE_EDGES = (0, 18, 25, 35, 45, 50, 56, np.inf)
AGE_LABELS = ("<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+")


@dataclasses.dataclass(kw_only=True)
class MovieLens100K(Source):
    """GroupLens MovieLens-100K: ``raw/u.data`` ratings + timestamps, genres and titles, age/gender/occupation."""

    name: str = "ml-100k"
    url: ClassVar[str | None] = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
    md5: ClassVar[str | None] = "0e33842e24a9c977be4e0107933c0723"

    @property
    def files(self) -> tuple[str, ...]:
        return ("raw/u.data", "raw/u.item", "raw/u.user", "raw/u.genre")

    def download(self, folder: Path) -> None:
        """Official zip (members ``ml-100k/u.*``) → ``folder/raw/``, md5-verified, all or nothing."""
        assert self.url is not None and self.md5 is not None
        install_zip(self.url, self.md5, folder, strip_prefix="ml-100k/", subdir="raw", required=self.files)

    def load(self, folder: Path) -> RawData:
        raw = folder / "raw"
        inter = _read_table(raw / "u.data", "\t", [USER, ITEM, RATING, TIME], "latin-1")
        inter[RATING] = numeric(inter[RATING], raw / "u.data", RATING)
        inter[TIME] = numeric(inter[TIME], raw / "u.data", TIME).astype(np.int64)
        genres = _read_table(raw / "u.genre", "|", ["genre", "index"], "latin-1")["genre"].to_numpy()
        item_cols = ["id", TITLE, "release", "video", "url", *[f"g{i}" for i in range(len(genres))]]
        items = _read_table(raw / "u.item", "|", item_cols, "latin-1")
        flags = items[item_cols[5:]].to_numpy() == "1"
        categories = [list(genres[row]) for row in flags]
        item_features = pd.DataFrame({CATEGORIES: categories, TITLE: items[TITLE].to_numpy()}, index=items["id"])
        users = _read_table(raw / "u.user", "|", ["id", AGE, GENDER, OCCUPATION, "zip"], "latin-1")
        ages = numeric(users[AGE], raw / "u.user", AGE)
        buckets = pd.cut(ages, AGE_EDGES, right=False, labels=AGE_LABELS).astype(str)
        user_features = pd.DataFrame(
            {AGE: buckets.to_numpy(), GENDER: users[GENDER].to_numpy(), OCCUPATION: users[OCCUPATION].to_numpy()},
            index=users["id"],
        )
        return RawData(inter, item_features, user_features)


@dataclasses.dataclass(kw_only=True)
class S3RecSequences(Source):
    """S3-Rec text sequences: one ``user item item ...`` line per user, oldest first, plus item attributes JSON.

    There are no timestamps: TIME is the position in the user's sequence, so chronology and ties are exact.
    """

    sequence_file: str
    attribute_file: str | None = None

    @property
    def files(self) -> tuple[str, ...]:
        return (self.sequence_file,) if self.attribute_file is None else (self.sequence_file, self.attribute_file)

    def load(self, folder: Path) -> RawData:
        users, lengths, items = _read_sequences(folder / self.sequence_file)
        starts = np.cumsum(lengths) - lengths
        positions = np.arange(len(items), dtype=np.int64) - np.repeat(starts, lengths)
        inter = pd.DataFrame({USER: np.repeat(np.array(users, dtype=object), lengths), ITEM: items, TIME: positions})
        inter[[USER, ITEM]] = inter[[USER, ITEM]].astype(str)
        features = None if self.attribute_file is None else _read_attributes(folder / self.attribute_file)
        return RawData(inter, features)


@dataclasses.dataclass(kw_only=True)
class AmazonReviews(Source):
    """McAuley Amazon reviews, JSON lines (optionally gzip): reviewer, product, stars, unix time."""

    file: str
    user_field: str = "reviewerID"
    item_field: str = "asin"
    rating_field: str | None = "overall"
    time_field: str | None = "unixReviewTime"

    @property
    def files(self) -> tuple[str, ...]:
        return (self.file,)

    def load(self, folder: Path) -> RawData:
        path = folder / self.file
        spec = {USER: ("user_field", self.user_field), ITEM: ("item_field", self.item_field)}
        spec |= {RATING: ("rating_field", self.rating_field), TIME: ("time_field", self.time_field)}
        fields = {col: (option, key) for col, (option, key) in spec.items() if key is not None}
        columns: dict[str, list[Any]] = {col: [] for col in fields}
        lines: list[int] = []
        for lineno, record in json_lines(path):
            for col, (option, key) in fields.items():
                if key not in record:
                    raise DataError(
                        f"{path} line {lineno}: no field '{key}' (found {sorted(record)}); "
                        f"set {SOURCE_KEY}.{option} to one of them or fix that line"
                    )
                if col in (USER, ITEM) and not _is_id(record[key]):
                    raise DataError(
                        f"{path} line {lineno}: field '{key}' is {shorten(repr(record[key]))}, not an id "
                        "(a non-empty string or an integer); fix or delete that line"
                    )
                columns[col].append(record[key])
            lines.append(lineno)
        if not lines:
            raise DataError(f"{path}: no reviews (the file is empty); it needs one JSON object per line")
        inter = pd.DataFrame({col: pd.Series(values, dtype=object) for col, values in columns.items()})
        inter[[USER, ITEM]] = inter[[USER, ITEM]].astype(str)
        for col in (RATING, TIME):
            if col in inter:
                inter[col] = numeric(inter[col], path, fields[col][1], where=lines)
        return RawData(inter)


@dataclasses.dataclass(kw_only=True)
class TabularInteractions(Source):
    """A generic interaction table (CSV, or Parquet by suffix) with configurable columns.

    ``path`` (and ``item_features_path``) may be absolute or relative to the dataset folder. Columns are named by
    the header line, or (``header=False``: a file without one) given as 0-based positions. Item categories are
    one separator-joined string per item (``categories_sep``) or, in Parquet, a list column.
    """

    name: str = "csv"
    path: str | None = None  # required; None only so that a missing path is reported as a DataError
    header: bool = True  # False: the files have no header line and every *_col is a 0-based column position
    user_col: Column = USER
    item_col: Column = ITEM
    time_col: Column | None = None
    rating_col: Column | None = None
    sep: str = ","
    item_features_path: str | None = None
    item_features_item_col: Column | None = None  # default: item_col
    categories_col: Column | None = None
    categories_sep: str = "|"
    title_col: Column | None = None

    @property
    def files(self) -> tuple[str, ...]:
        if not self.path:
            raise DataError(
                f"{SOURCE_KEY}.path is not set: data=csv reads your interactions file; set "
                f"{SOURCE_KEY}.path=/abs/path/interactions.csv (CSV, or Parquet by its .parquet suffix)"
            )
        return (self.path,) if self.item_features_path is None else (self.path, self.item_features_path)

    def load(self, folder: Path) -> RawData:
        path = folder / self.files[0]
        wanted = {"user_col": self.user_col, "item_col": self.item_col}
        wanted |= {"time_col": self.time_col, "rating_col": self.rating_col}
        table = read_columns(path, {k: v for k, v in wanted.items() if v is not None}, self.sep, self.header)
        users, items = ids(table[self.user_col], path, "user_col"), ids(table[self.item_col], path, "item_col")
        inter = pd.DataFrame({USER: users, ITEM: items})
        if self.time_col is not None:
            inter[TIME] = times(table[self.time_col], path, self.time_col)
        if self.rating_col is not None:
            inter[RATING] = numeric(table[self.rating_col], path, self.rating_col)
        return RawData(inter, self._item_features(folder))

    def _item_features(self, folder: Path) -> pd.DataFrame | None:
        if self.item_features_path is None:
            return None
        path = folder / self.item_features_path
        item_col = self.item_col if self.item_features_item_col is None else self.item_features_item_col
        wanted = {"item_features_item_col": item_col, "categories_col": self.categories_col}
        wanted["title_col"] = self.title_col
        wanted = {k: v for k, v in wanted.items() if v is not None}
        table = read_columns(path, wanted, self.sep, self.header, rows=("item", "item_features_path"))
        features = pd.DataFrame(index=pd.Index(ids(table[item_col], path, "item_features_item_col"), dtype=str))
        if self.categories_col is not None:
            features[CATEGORIES] = _split_categories(table[self.categories_col], self.categories_sep)
        if self.title_col is not None:
            features[TITLE] = table[self.title_col].fillna("").astype(str).to_numpy()
        return features


@dataclasses.dataclass(kw_only=True)
class RecBoleAtomic(Source):
    """RecBole atomic files ``<prefix>.inter`` (+ optional ``.item``, ``.user``), tab-separated, typed header.

    Fields are matched by the part before ``:``. ``prefix`` is the file stem relative to the folder (default
    ``name``). Missing rating/time fields are simply not used. ``categories_field`` / ``title_field`` None =
    auto-detect (first of class/categories/genre; first field containing "title"). User features: the .user token
    fields (``user_feature_fields`` None = all but the user id).
    """

    name: str
    prefix: str | None = None
    user_field: str = "user_id"
    item_field: str = "item_id"
    rating_field: str | None = "rating"
    time_field: str | None = "timestamp"
    categories_field: str | None = None
    title_field: str | None = None
    user_feature_fields: list[str] | None = None

    @property
    def files(self) -> tuple[str, ...]:
        return (f"{self.prefix or self.name}.inter",)

    @property
    def optional_files(self) -> tuple[str, ...]:
        return (f"{self.prefix or self.name}.item", f"{self.prefix or self.name}.user")

    def load(self, folder: Path) -> RawData:
        stem = folder / (self.prefix or self.name)
        path = stem.with_name(stem.name + ".inter")
        table, _ = _read_atomic(path)
        require_fields(path, list(table.columns), {"user_field": self.user_field, "item_field": self.item_field})
        inter = pd.DataFrame({USER: table[self.user_field].to_numpy(), ITEM: table[self.item_field].to_numpy()})
        for col, field in ((RATING, self.rating_field), (TIME, self.time_field)):
            if field is not None and field in table:
                inter[col] = numeric(table[field], path, field)
        item_path, user_path = stem.with_name(stem.name + ".item"), stem.with_name(stem.name + ".user")
        items = self._item_features(item_path) if item_path.is_file() else None
        users = self._user_features(user_path) if user_path.is_file() else None
        return RawData(inter, items, users)

    def _item_features(self, path: Path) -> pd.DataFrame:
        table, _ = _read_atomic(path)
        require_fields(path, list(table.columns), {"item_field": self.item_field})
        features = pd.DataFrame(index=pd.Index(table[self.item_field].to_numpy(), dtype=str))
        auto_categories = ("class", "categories", "genre")
        categories = _pick_field(path, table, "categories_field", self.categories_field, auto_categories)
        auto_titles = tuple(c for c in table.columns if "title" in c)
        title = _pick_field(path, table, "title_field", self.title_field, auto_titles)
        if categories is not None:
            features[CATEGORIES] = _split_categories(table[categories], " ")
        if title is not None:
            features[TITLE] = table[title].to_numpy()
        return features

    def _user_features(self, path: Path) -> pd.DataFrame:
        table, types = _read_atomic(path)
        require_fields(path, list(table.columns), {"user_field": self.user_field})
        names = self.user_feature_fields
        if names is None:
            names = [c for c in table.columns if c != self.user_field and types[c] == "token"]
        require_fields(path, list(table.columns), {f"user_feature_fields[{i}]": n for i, n in enumerate(names)})
        index = pd.Index(table[self.user_field].to_numpy(), dtype=str)
        return pd.DataFrame({n: table[n].to_numpy() for n in names}, index=index)


def _pick_field(path: Path, table: pd.DataFrame, option: str, field: str | None, auto: tuple[str, ...]) -> str | None:
    """The configured field (must exist) or, if None, the first of ``auto`` present (or None)."""
    if field is not None:
        require_fields(path, list(table.columns), {option: field})
        return field
    return next((c for c in auto if c in table.columns), None)


def _read_atomic(path: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """A RecBole atomic file as str columns named by the part before ``:``, and name → declared type."""
    first = next((line for _, line in text_lines(path)), "")  # also: the file is UTF-8 text
    if not first.strip():
        raise DataError(f"{path}: the first line is empty; it must name the fields (user_id:token<TAB>...)")
    header = first.rstrip("\r\n").split("\t")
    names = [h.split(":", 1)[0] for h in header]
    types = {n: (h.split(":", 1)[1] if ":" in h else "token") for n, h in zip(names, header, strict=True)}
    try:
        table = pd.read_csv(
            path, sep="\t", skiprows=1, header=None, names=names, dtype=str, keep_default_na=False,
            quoting=csv.QUOTE_NONE, index_col=False, encoding="utf-8",
        )  # fmt: skip
    except (ValueError, pd.errors.ParserError) as err:
        raise DataError(f"{path}: cannot parse as tab-separated fields {names} ({err}); fix the file") from err
    return table, types


def _is_id(value: object) -> bool:
    """A JSON value usable as a user / item id: a non-empty string or an integer (not a bool, null or container)."""
    return (isinstance(value, str) and bool(value.strip())) or (isinstance(value, int) and not isinstance(value, bool))


def _split_categories(values: pd.Series, sep: str) -> list[list[str]]:
    """Separator-joined strings (or list values) → one list of non-empty str per row."""
    out = []
    for value in values.to_numpy():
        if isinstance(value, str):
            out.append([c for c in value.split(sep) if c])
        elif value is None or (np.isscalar(value) and pd.isna(value)):
            out.append([])
        else:
            out.append([str(c) for c in value])
    return out


def _read_table(path: Path, sep: str, names: list[str], encoding: str) -> pd.DataFrame:
    """A header-less delimited file, every column as str; parse errors become a one-line DataError."""
    try:
        return pd.read_csv(
            path, sep=sep, header=None, names=names, dtype=str, encoding=encoding, keep_default_na=False,
            quoting=csv.QUOTE_NONE, skip_blank_lines=True, index_col=False,
        )  # fmt: skip
    except (ValueError, pd.errors.ParserError) as err:
        message = f"{path}: cannot parse as {len(names)} '{sep}'-separated columns ({err}); fix the file"
        raise DataError(message) from err


def _read_sequences(path: Path) -> tuple[list[str], np.ndarray, list[str]]:
    """Users, sequence lengths and the flat item tokens of an S3-Rec sequence file (blank lines skipped)."""
    users: list[str] = []
    lengths: list[int] = []
    items: list[str] = []
    for lineno, line in text_lines(path):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) < 2 or not all(t.isascii() and t.isdigit() for t in tokens):
            raise DataError(
                f'{path} line {lineno}: expected "user_id item_id ..." integers, got {shorten(line)!r}; '
                "fix or delete that line"
            )
        users.append(tokens[0])
        lengths.append(len(tokens) - 1)
        items.extend(tokens[1:])
    if not users:
        raise DataError(f'{path}: no sequences (the file is empty); it needs one "user_id item_id ..." line per user')
    return users, np.asarray(lengths, dtype=np.int64), items


def _read_attributes(path: Path) -> pd.DataFrame:
    """``{"item": [attr, ...]}`` JSON → item features with CATEGORIES as lists of str ids."""
    mapping = read_json(path)
    if not isinstance(mapping, dict) or not all(isinstance(v, list) for v in mapping.values()):
        raise DataError(f'{path}: expected a JSON object {{"item_id": [attribute_id, ...]}}; fix or re-fetch the file')
    categories = [[str(a) for a in attrs] for attrs in mapping.values()]
    return pd.DataFrame({CATEGORIES: categories}, index=pd.Index([str(k) for k in mapping], dtype=str))
