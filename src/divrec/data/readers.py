"""File readers of the source loaders: every way a file can fail to parse (empty, truncated gzip, not UTF-8, corrupt
Parquet, wrong separator, ragged rows) becomes one ``DataError`` line naming the file, the place and the fix.

Nothing here knows a dataset: ``sources.py`` says which columns or fields it wants. CSV/Parquet columns are named
by the header, or (``header=False``) by their 0-based position.
"""

from __future__ import annotations

import csv
import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from divrec.data.errors import SOURCE_KEY, DataError, shorten
from divrec.lazy import lazy_module

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy_module("pandas")  # imported on first use: a cache hit never reads a table

Column = str | int  # a column name, or a 0-based position in a file without a header
SEPARATORS = (",", "\t", ";", "|", " ")  # tried, in this order, to suggest data.source.sep for a one-column header
ESCAPES = {"\\t": "\t"}  # the command line's data.source.sep='\t' arrives as backslash + t
_LONG = 160  # characters of a library's own error message quoted in ours
INTERACTION_ROWS = ("interaction", "path")  # what a row is, and the data.source option holding the file's path


def sep_of(sep: str) -> str:
    """The separator a config value means (``'\\t'`` typed on the command line = a tab)."""
    return ESCAPES.get(sep, sep)


def show_sep(sep: str) -> str:
    """A separator as the override that sets it, e.g. ``data.source.sep='\\t'``."""
    return "'\\t'" if sep == "\t" else repr(sep)


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) of a UTF-8 text file, gunzipped when its name ends in ``.gz``; a line that is
    not UTF-8, or a truncated / corrupt gzip stream, becomes a DataError naming the line."""
    lineno = 0
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as lines:
            for lineno, raw in enumerate(lines, 1):
                yield lineno, raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path} line {lineno}: not UTF-8 text ({err.reason} at byte {err.start}); save the file as UTF-8"
        ) from err
    except (EOFError, OSError, zlib.error) as err:
        raise DataError(
            f"{path}: gzip data truncated or corrupt at line {lineno + 1} ({shorten(str(err), _LONG)}); "
            "download the file again (or re-compress it with gzip)"
        ) from err


def read_json(path: Path) -> Any:
    """One JSON document (gunzipped for ``.gz``); invalid JSON or text is reported by line."""
    text = "".join(line for _, line in text_lines(path))
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{path} line {err.lineno}: invalid JSON ({err.msg}); fix or re-fetch the file") from err
    except (ValueError, RecursionError) as err:  # an integer of > 4300 digits, nesting deeper than Python's stack
        raise DataError(f"{path}: unreadable JSON ({shorten(str(err), _LONG)}); fix or re-fetch the file") from err


def json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(1-based line number, object) for each non-blank line of a JSON-lines file (``.gz`` = gzip)."""
    for lineno, line in text_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(
                f"{path} line {lineno}: invalid JSON ({err.msg}): {shorten(line)!r}; fix or delete that line"
            ) from err
        except (ValueError, RecursionError) as err:
            raise DataError(
                f"{path} line {lineno}: unreadable JSON ({shorten(str(err), _LONG)}); fix or delete that line"
            ) from err
        if not isinstance(record, dict):
            raise DataError(f"{path} line {lineno}: expected a JSON object, got {shorten(line)!r}; fix that line")
        yield lineno, record


def require_fields(path: Path, found: list[Any], wanted: dict[str, Any]) -> None:
    """DataError listing the missing columns, the columns found and the config options to set."""
    shown = [str(c) for c in found]
    missing = {option: col for option, col in wanted.items() if col not in found}
    if missing:
        options = ", ".join(f"{SOURCE_KEY}.{option}" for option in dict.fromkeys(missing))
        raise DataError(
            f"{path}: missing column(s) {list(missing.values())} (found {shown}); set {options} to one of {shown}"
        )


def read_columns(
    path: Path, wanted: dict[str, Column], sep: str, header: bool = True, rows: tuple[str, str] = INTERACTION_ROWS
) -> pd.DataFrame:
    """The ``wanted`` columns (config option → column) of a CSV file, or a Parquet file by suffix, keyed by the
    configured column; CSV values are str with blank fields as NaN. An empty table is a DataError that names what
    a row is and the option holding the path (``rows``)."""
    parquet = path.suffix == ".parquet"
    table = _read_parquet(path, wanted) if parquet else _read_csv(path, wanted, sep_of(sep), header)
    if table.empty:
        below = " below its header line" if header and not parquet else ""
        what, option = rows
        raise DataError(
            f"{path}: no {what} rows{below}; add one row per {what}, or point {SOURCE_KEY}.{option} at another file"
        )
    return table


def _read_parquet(path: Path, wanted: dict[str, Column]) -> pd.DataFrame:
    """Parquet columns by name (an int = a position in the schema)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    hint = "write it again (e.g. pandas DataFrame.to_parquet), or give a CSV file a .csv suffix"
    try:
        found = [str(n) for n in pq.read_schema(path).names]
    except (pa.ArrowException, OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable Parquet file ({shorten(str(err), _LONG)}); {hint}") from err
    labels = {option: _schema_name(col, found) for option, col in wanted.items()}
    require_fields(path, found, labels)
    try:
        arrow = pq.read_table(path, columns=list(dict.fromkeys(labels.values())))
        arrow.validate(full=True)  # e.g. strings that are not UTF-8: else they fail later, at first use
        table = arrow.to_pandas()
    except (pa.ArrowException, OSError, ValueError, TypeError) as err:
        raise DataError(f"{path}: cannot read its columns as Parquet ({shorten(str(err), _LONG)}); {hint}") from err
    return table.rename(columns={label: wanted[o] for o, label in labels.items()})


def _schema_name(col: Column, found: list[str]) -> Column:
    """A Parquet column: a name as given, a position in range as the schema's name there."""
    return found[col] if isinstance(col, int) and not isinstance(col, bool) and 0 <= col < len(found) else col


def _read_csv(path: Path, wanted: dict[str, Column], sep: str, header: bool) -> pd.DataFrame:
    """The wanted columns of a CSV file: checked against its first line first (empty file, missing columns, a
    separator that does not split the header), then the whole file parsed (every row must have the header's fields)."""
    first = next((line for _, line in text_lines(path) if line.strip()), None)  # also: the file is UTF-8 text
    if first is None:
        needs = "a header line naming the columns, then " if header else ""
        raise DataError(f"{path}: the file is empty; it needs {needs}one line per interaction")
    found = _csv_columns(path, sep, header)
    labels = _labels(path, wanted, found, header)
    if any(label not in found for label in labels.values()):
        _suggest_sep(path, first, sep, found)
        if not header:
            _require_positions(path, labels, found, sep)
        require_fields(path, found, labels)
    try:
        table = pd.read_csv(path, **_csv_options(sep, header))  # every column: a row with extra fields is an error
    except (ValueError, csv.Error) as err:  # ParserError (ragged rows, open quotes), a separator pandas refuses
        raise DataError(
            f"{path}: cannot parse as {show_sep(sep)}-separated CSV ({shorten(str(err), _LONG)}); "
            f"fix the file or set {SOURCE_KEY}.sep"
        ) from err
    table = table[list(dict.fromkeys(labels.values()))]
    return table.rename(columns={label: wanted[o] for o, label in labels.items()})


def _csv_options(sep: str, header: bool) -> dict[str, Any]:
    return {
        "sep": sep, "header": 0 if header else None, "dtype": str, "keep_default_na": False, "na_values": [""],
        "encoding": "utf-8", "engine": "c" if len(sep) == 1 else "python",
    }  # fmt: skip


def _csv_columns(path: Path, sep: str, header: bool) -> list[Column]:
    """The header's column names, or positions 0..n-1 of the first line without a header."""
    try:
        head = pd.read_csv(path, nrows=0 if header else 1, **_csv_options(sep, header))
    except (ValueError, csv.Error) as err:
        raise DataError(
            f"{path}: cannot parse as {show_sep(sep)}-separated CSV ({shorten(str(err), _LONG)}); "
            f"fix the file or set {SOURCE_KEY}.sep"
        ) from err
    return [str(c) for c in head.columns] if header else list(range(head.shape[1]))


def _position(col: object) -> bool:
    return isinstance(col, int) and not isinstance(col, bool)


def _labels(path: Path, wanted: dict[str, Column], found: list[Column], header: bool) -> dict[str, Column]:
    """Each option's column label in the table as pandas reads it (names with a header, positions without)."""
    labels: dict[str, Column] = {}
    for option, col in wanted.items():
        if not isinstance(col, str | int) or isinstance(col, bool):
            raise DataError(f"{SOURCE_KEY}.{option}={col!r} must be a column name or a 0-based column position")
        if header and _position(col) and str(col) not in found:
            raise DataError(
                f"{path}: {SOURCE_KEY}.{option}={col} is a column position, but {SOURCE_KEY}.header=true reads the "
                f"first line as the column names {found}; use one of them, or set {SOURCE_KEY}.header=false"
            )
        if not header and isinstance(col, str) and not (col.isascii() and col.isdigit()):
            raise DataError(
                f"{SOURCE_KEY}.{option}={col!r} is a column name, but {SOURCE_KEY}.header=false numbers the columns "
                f"of {path} from 0; set {SOURCE_KEY}.{option} to a position (0 = first column)"
            )
        labels[option] = str(col) if header else int(col)
    return labels


def _suggest_sep(path: Path, first: str, sep: str, found: list[Column]) -> None:
    """A one-column first line that another common separator splits: DataError naming that separator."""
    if len(found) != 1:
        return
    splits = {c: len(first.rstrip("\r\n").split(c)) for c in SEPARATORS if c != sep}
    best = max(splits, key=lambda c: splits[c])
    if splits[best] > 1:
        raise DataError(
            f"{path}: the first line {shorten(first)!r} is one column with {SOURCE_KEY}.sep={show_sep(sep)}, but "
            f"{splits[best]} columns with {show_sep(best)}; set {SOURCE_KEY}.sep={show_sep(best)}"
        )


def _require_positions(path: Path, labels: dict[str, Column], found: list[Column], sep: str) -> None:
    """DataError for the first column position beyond the first line's fields (a file without a header)."""
    for option, col in labels.items():
        if col not in found:
            raise DataError(
                f"{path}: {SOURCE_KEY}.{option}={col} but its first line has {len(found)} column(s) (positions "
                f"0..{len(found) - 1}) with {SOURCE_KEY}.sep={show_sep(sep)}; set {SOURCE_KEY}.{option} to one of them"
            )
