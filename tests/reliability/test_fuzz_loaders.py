"""Property-based fuzzing of the source loaders (CSV, Parquet, S3-Rec sequences + attributes, JSON lines, gzip).

Random bytes, truncations, byte mutations of valid files, random separators, column names and values, blank fields:
``prepare_dataset`` (load → preprocess → split → cache) must end in exactly one of two ways — a clean dataset (ids
in range, no empty sequence, one complete cache file) or a one-line ``DataError`` with nothing cached — never another
exception. Profiles (``ci`` default, ``long``): ``tests/reliability/conftest.py``.
"""

from __future__ import annotations

import gzip
import io
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import assume, given
from hypothesis import strategies as st
from runhelpers import leftovers

from divrec.data.base import Source
from divrec.data.errors import DataError
from divrec.data.prepare import prepare_dataset
from divrec.data.preprocess import Preprocessing
from divrec.data.sources import AmazonReviews, S3RecSequences, TabularInteractions
from divrec.data.splits import LeaveOneOut
from divrec.data.sufficiency import interactions_per_user
from divrec.data.types import EvalSplit, ProcessedData
from divrec.names import ITEM, USER

SEPARATORS = [",", ";", "\t", "|", " ", "::"]
TEXT = st.characters(codec="utf-8", exclude_characters="\r\n\x00\ufeff")  # what a CSV cell can round-trip
CELL = st.text(TEXT, min_size=1, max_size=6)
JSON_SCALARS = st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.floats() | st.text(max_size=6)
JSON_VALUES = st.recursive(
    JSON_SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


def check_ids(data: ProcessedData) -> None:
    """Basic invariants of a clean dataset: ids in range, no user without interactions, consistent tables."""
    assert data.n_users >= 1 and data.n_items >= 1
    assert len(data.item_raw_ids) == data.n_items + 1 and len(data.user_raw_ids) == data.n_users
    assert len(data.train_offsets) == data.n_users + 1 and data.train_offsets[-1] == len(data.train_items)
    assert np.all((data.train_items >= 1) & (data.train_items <= data.n_items))
    for split in (data.val, data.test):
        check_split(split, data)
    assert len(data.val) >= 1 and len(data.test) >= 1  # else it would have been a DataError
    assert interactions_per_user(data).min() >= 1  # no empty sequence


def check_split(split: EvalSplit, data: ProcessedData) -> None:
    assert np.all((split.users >= 0) & (split.users < data.n_users))
    assert np.all((split.targets >= 1) & (split.targets <= data.n_items))
    assert np.all((split.history_items >= 1) & (split.history_items <= data.n_items))
    assert np.all(np.diff(split.history_offsets) >= 1)  # every evaluated user has a history


def outcome(source: Source, files: dict[str, bytes]) -> ProcessedData | None:
    """Write ``files`` into a fresh dataset folder and prepare ``source`` from it: the dataset, or None after a
    DataError (each checked)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "data" / "fuzz"
        folder.mkdir(parents=True)
        for name, content in files.items():
            (folder / name).write_bytes(content)
        cache_dir = Path(tmp) / "cache"
        prepare = (source, Preprocessing(), LeaveOneOut(), Path(tmp) / "data", None, cache_dir, False, False)
        try:
            data = prepare_dataset(*prepare)
        except DataError as err:
            message = str(err)
            assert message and "\n" not in message and len(message) < 1500, message
            assert leftovers(cache_dir) == []  # no partial or temporary cache file
            return None
        check_ids(data)
        cached = leftovers(cache_dir)
        assert len(cached) == 1 and cached[0].endswith(".npz"), cached
        assert prepare_dataset(*prepare).n_interactions == data.n_interactions  # the cache reads back
        return data


def csv_source(**options: Any) -> Source:
    return TabularInteractions(name="fuzz", path="i.csv", **options)


def valid_csv(sep: str = ",") -> st.SearchStrategy[bytes]:
    """A well-formed interaction CSV (header user_id,item_id,timestamp) of 0-12 rows."""
    rows = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 6), st.integers(0, 10**12)), max_size=12)
    return rows.map(lambda rs: ("user_id,item_id,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rs))
                    .replace(",", sep).encode())  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[bytes]) -> bytes:
    """A valid file truncated, with bytes replaced, inserted or deleted, or a line dropped."""
    content = bytearray(draw(valid))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["truncate", "replace", "insert", "delete", "drop line"]))
        at = draw(st.integers(0, max(len(content) - 1, 0)))
        if kind == "truncate":
            del content[at:]
        elif kind == "replace" and content:
            content[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            content[at:at] = draw(st.binary(min_size=1, max_size=4) | st.sampled_from([b",", b"\n", b'"', b"\t"]))
        elif kind == "delete":
            del content[at : at + draw(st.integers(1, 4))]
        else:
            lines = bytes(content).split(b"\n")
            del lines[draw(st.integers(0, len(lines) - 1))]
            content = bytearray(b"\n".join(lines))
    return bytes(content)


@given(content=st.binary(max_size=200) | mutated(valid_csv()), sep=st.sampled_from(SEPARATORS), header=st.booleans())
def test_csv_random_and_mutated_bytes(content: bytes, sep: str, header: bool) -> None:
    columns = {"user_col": "user_id", "item_col": "item_id", "time_col": "timestamp"}
    if not header:
        columns = {"user_col": 0, "item_col": 1, "time_col": 2}
    outcome(csv_source(sep=sep, header=header, **columns), {"i.csv": content})


@st.composite
def random_table(draw: st.DrawFn) -> tuple[pd.DataFrame, list[str]]:
    """A table with random (unique) column names and cell values; the first three columns are user, item, time."""
    names = draw(st.lists(CELL, min_size=3, max_size=5, unique=True))
    n = draw(st.integers(0, 12))
    users = draw(st.lists(st.sampled_from(["u1", "u2", "u3"]) | CELL, min_size=n, max_size=n))
    items = draw(st.lists(CELL, min_size=n, max_size=n))
    times = draw(st.lists(st.integers(0, 10**12).map(str) | st.just("") | CELL | st.dates().map(str), min_size=n,
                          max_size=n))  # fmt: skip
    extra = {name: draw(st.lists(CELL | st.just(""), min_size=n, max_size=n)) for name in names[3:]}
    return pd.DataFrame({names[0]: users, names[1]: items, names[2]: times, **extra}), names


@given(table=random_table(), sep=st.sampled_from(SEPARATORS), header=st.booleans(), same_sep=st.booleans())
def test_csv_random_names_values_and_separators(
    table: tuple[pd.DataFrame, list[str]], sep: str, header: bool, same_sep: bool
) -> None:
    """A correctly written table loads with its ids intact (or is a DataError, e.g. too little data); read with
    another separator, it is a clean dataset or a DataError too."""
    frame, names = table
    written = sep if len(sep) == 1 else ","  # pandas writes one-character separators only
    content = frame.to_csv(sep=written, index=False, header=header).encode()
    configured = written if same_sep else ";" if written != ";" else ","
    columns = dict(zip(("user_col", "item_col", "time_col"), names[:3] if header else (0, 1, 2), strict=True))
    source = csv_source(sep=configured, header=header, **columns)
    data = outcome(source, {"i.csv": content})
    if data is not None and same_sep:
        kept = set(data.user_raw_ids.tolist())
        assert kept <= set(frame.iloc[:, 0]) and set(data.item_raw_ids[1:].tolist()) <= set(frame.iloc[:, 1])


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


COLUMN_VALUES = {
    "int": st.integers(-(2**63), 2**63 - 1),
    "float": st.floats(),
    "text": st.text(max_size=5),
    "date": st.datetimes(),
    "bool": st.booleans(),
}


@st.composite
def typed_parquet(draw: st.DrawFn) -> bytes:
    """A Parquet file whose user / item / timestamp columns have random types and may hold nulls."""
    n = draw(st.integers(0, 10))
    frame = {}
    for name in ("user_id", "item_id", "timestamp"):
        values = COLUMN_VALUES[draw(st.sampled_from(sorted(COLUMN_VALUES)))]
        frame[name] = draw(st.lists(values | st.none(), min_size=n, max_size=n))
    try:
        return parquet_bytes(pd.DataFrame(frame))
    except Exception:  # a column pyarrow cannot type (e.g. all-null object); not a loader input
        assume(False)
        raise


VALID_PARQUET = valid_csv().map(lambda b: parquet_bytes(pd.read_csv(io.BytesIO(b), dtype=str)))


@given(content=typed_parquet() | mutated(VALID_PARQUET) | st.binary(max_size=100).map(lambda b: b"PAR1" + b + b"PAR1"))
def test_parquet_typed_mutated_and_random(content: bytes) -> None:
    outcome(TabularInteractions(name="fuzz", path="i.parquet", time_col="timestamp"), {"i.parquet": content})


SEQUENCE_LINES = st.lists(
    st.lists(st.integers(0, 30).map(str) | st.text(TEXT, max_size=3), min_size=0, max_size=6).map(" ".join),
    max_size=8,
).map(lambda lines: "\n".join(lines).encode())
ATTRIBUTES = st.dictionaries(st.integers(0, 30).map(str), st.lists(st.integers(0, 9), max_size=3), max_size=6)


@given(
    sequences=SEQUENCE_LINES | st.binary(max_size=100) | mutated(SEQUENCE_LINES),
    attributes=ATTRIBUTES.map(lambda a: json.dumps(a).encode()) | JSON_VALUES.map(lambda v: json.dumps(v).encode())
    | mutated(ATTRIBUTES.map(lambda a: json.dumps(a).encode())),
    gzipped=st.booleans(),
)  # fmt: skip
def test_s3rec_sequences_and_attributes(sequences: bytes, attributes: bytes, gzipped: bool) -> None:
    name = "a.json.gz" if gzipped else "a.json"
    content = gzip.compress(attributes, mtime=0) if gzipped else attributes
    source = S3RecSequences(name="fuzz", sequence_file="s.txt", attribute_file=name)
    outcome(source, {"s.txt": sequences, name: content})


REVIEW = st.fixed_dictionaries(
    {"reviewerID": st.sampled_from(["u1", "u2"]) | JSON_VALUES, "asin": st.sampled_from(["a", "b", "c"]) | JSON_VALUES},
    optional={"overall": JSON_VALUES | st.integers(1, 5), "unixReviewTime": JSON_VALUES | st.integers(0, 10**10)},
)
REVIEW_LINES = st.lists(REVIEW.map(json.dumps) | st.text(max_size=10), max_size=10).map(
    lambda lines: "\n".join(lines).encode()
)


@given(
    lines=REVIEW_LINES | st.binary(max_size=100) | mutated(REVIEW_LINES),
    gzipped=st.booleans(),
    cut=st.none() | st.integers(0, 200),
    fields=st.sampled_from([{}, {"rating_field": None, "time_field": None}]),
)
def test_json_lines_reviews(lines: bytes, gzipped: bool, cut: int | None, fields: dict[str, Any]) -> None:
    name = "r.json.gz" if gzipped else "r.json"
    content = gzip.compress(lines, mtime=0) if gzipped else lines
    content = content if cut is None else content[:cut]  # a truncated download
    data = outcome(AmazonReviews(name="fuzz", file=name, **fields), {name: content})
    if data is not None:
        assert all(isinstance(u, str) and u for u in data.user_raw_ids.tolist())


def test_clean_inputs_load() -> None:
    """The fuzzers' valid inputs really are accepted (the property is not vacuous)."""
    rows = "".join(f"{u},{i},{10 * u + i}\n" for u in range(3) for i in range(1, 5))
    data = outcome(csv_source(time_col="timestamp"), {"i.csv": f"user_id,item_id,timestamp\n{rows}".encode()})
    assert data is not None and (data.n_users, data.n_items, len(data.test)) == (3, 4, 3)
    reviews = "\n".join(json.dumps({"reviewerID": f"u{k % 2}", "asin": f"a{k}", "overall": 5, "unixReviewTime": k})
                        for k in range(8))  # fmt: skip
    assert outcome(AmazonReviews(name="fuzz", file="r.json.gz"), {"r.json.gz": gzip.compress(reviews.encode())})
    sequences = b"1 1 2 3\n2 2 3 4 5\n"
    assert outcome(S3RecSequences(name="fuzz", sequence_file="s.txt"), {"s.txt": sequences}) is not None
    frame = pd.DataFrame({USER: ["1", "1", "1"], ITEM: ["2", "3", "4"], "timestamp": pd.date_range("2020", periods=3)})
    source = TabularInteractions(name="fuzz", path="i.parquet", time_col="timestamp")
    assert outcome(source, {"i.parquet": parquet_bytes(frame)}) is not None
