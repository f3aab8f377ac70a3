"""Column values of a loaded table → ids, numbers, timestamps; the first bad entry is reported by its row.

Shared by the source loaders (``sources.py``). ``where`` (optional) gives each entry's place in the file when it is
not "row N" (a JSON-lines file reports line numbers); messages are one ``DataError`` line naming the file, column,
place and value, and the fix.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from divrec.data.errors import SOURCE_KEY, DataError, shorten
from divrec.lazy import lazy_module

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy_module("pandas")  # imported on first use: a cache hit never reads a table


def date_range() -> tuple[pd.Timestamp, pd.Timestamp]:
    """(first, last) whole day a timestamp may lie on: timestamps are int64 nanoseconds since the epoch, so dates
    must lie within pandas' nanosecond range (a function, not constants: pandas is imported on first use)."""
    return pd.Timestamp.min.ceil("D"), pd.Timestamp.max.floor("D")


def place(index: int, where: Sequence[int] | None = None) -> str:
    """``row N`` (1-based data row) or, with ``where`` (the file line of every entry), ``line N``."""
    return f"row {index + 1}" if where is None else f"line {where[index]}"


def ids(values: pd.Series, path: Path, option: str, where: Sequence[int] | None = None) -> np.ndarray:
    """Id column → str array; an empty id is reported by its row."""
    missing = np.flatnonzero(values.isna().to_numpy())
    if len(missing):
        raise DataError(
            f"{path}: {place(int(missing[0]), where)} has no value in column '{values.name}' "
            f"({SOURCE_KEY}.{option}); fill or delete that row"
        )
    return values.astype(str).to_numpy()


def numeric(values: pd.Series, path: Path, column: object, where: Sequence[int] | None = None) -> pd.Series:
    """``values`` as numbers; the first blank or non-numeric entry is reported by row."""
    out = pd.to_numeric(values, errors="coerce")
    bad = np.flatnonzero(out.isna().to_numpy())
    if len(bad):
        first = int(bad[0])
        value = values.iloc[first]
        if _blank(value):
            raise DataError(f"{path}: column '{column}' {place(first, where)} has no value; fill or delete that row")
        raise DataError(
            f"{path}: column '{column}' {place(first, where)} is not a number ({shorten(str(value))!r}); "
            "fix or delete that row"
        )
    return out


def times(values: pd.Series, path: Path, column: object, where: Sequence[int] | None = None) -> pd.Series:
    """Numbers stay numbers; dates (strings, or a datetime column) become int64 nanoseconds since the epoch.

    The first non-blank entry decides: a number makes it a numeric column, anything else a date column (format
    inferred from the first entry, other formats tried per entry). Blank, unparseable or out-of-range entries are
    reported by row with their value.
    """
    hint = f"fix or delete that row, or set {SOURCE_KEY}.time_col=null to use the file order"
    blank = np.flatnonzero(values.isna().to_numpy())
    if len(blank):
        raise DataError(f"{path}: column '{column}' {place(int(blank[0]), where)} has no timestamp; {hint}")
    if pd.api.types.is_datetime64_any_dtype(values):
        return _nanoseconds(values, values, path, column, where)
    if pd.api.types.is_bool_dtype(values) or len(values) == 0:
        return numeric(values, path, column, where)
    if pd.api.types.is_numeric_dtype(values) or not pd.isna(pd.to_numeric(values.iloc[:1], errors="coerce")).all():
        return numeric(values, path, column, where)
    dates = _dates(values)
    bad = np.flatnonzero(dates.isna().to_numpy())
    if len(bad):
        first = int(bad[0])
        example = "" if first == 0 else f" like row 1's {shorten(str(values.iloc[0]))!r}"
        raise DataError(
            f"{path}: column '{column}' {place(first, where)} is neither a number nor a date{example} "
            f"({shorten(str(values.iloc[first]))!r}); {hint}"
        )
    return _nanoseconds(dates, values, path, column, where)


def _dates(values: pd.Series) -> pd.Series:
    """Naive UTC datetimes (NaT where unparseable): the first entry's format, then any format for the rest."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "could not infer format": falling back to per-entry parsing is the intent
        text = values.astype(str)
        dates = pd.to_datetime(text, errors="coerce", utc=True)
        retry = dates.isna()
        if retry.any():
            dates[retry] = pd.to_datetime(text[retry], errors="coerce", utc=True, format="mixed")
    return dates.dt.tz_localize(None)


def _nanoseconds(
    dates: pd.Series, values: pd.Series, path: Path, column: object, where: Sequence[int] | None
) -> pd.Series:
    """Datetimes → int64 ns since the epoch; NaT and dates outside the nanosecond range are reported by row."""
    if isinstance(dates.dtype, pd.DatetimeTZDtype):
        dates = dates.dt.tz_convert("UTC").dt.tz_localize(None)
    first_date, last_date = date_range()
    bad = np.flatnonzero((dates.isna() | (dates < first_date) | (dates > last_date)).to_numpy())
    if len(bad):
        first = int(bad[0])
        raise DataError(
            f"{path}: column '{column}' {place(first, where)} is not a date between {first_date.date()} and "
            f"{last_date.date()} ({shorten(str(values.iloc[first]))!r}); fix or delete that row"
        )
    return dates.astype("datetime64[ns]").astype(np.int64)


def _blank(value: object) -> bool:
    """None, NaN / NA, or an empty / whitespace-only string."""
    if isinstance(value, str):
        return not value.strip()
    return value is None or (np.isscalar(value) and bool(pd.isna(value)))
