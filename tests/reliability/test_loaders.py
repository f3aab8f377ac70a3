"""Loaders never traceback: every broken input file is one ``DataError`` line naming the file and the fix, the CLI
says ``error: <line>`` and exits 2, and nothing is cached. Headerless CSV files are read by column position."""

from __future__ import annotations

import gzip
import io
import json
import re
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra.utils import instantiate
from runhelpers import compose_config, leftovers

from divrec import cli
from divrec.data.errors import DataError
from divrec.data.prepare import prepare_dataset
from divrec.data.preprocess import Preprocessing
from divrec.data.sources import AmazonReviews, S3RecSequences, TabularInteractions
from divrec.data.splits import LeaveOneOut
from divrec.names import ITEM, TIME, USER

HEADER = "user_id,item_id,timestamp\n"
GOOD_ROWS = "".join(f"{u},{i},{10 * u + i}\n" for u in range(1, 5) for i in range(1, 5))


def parquet_bytes() -> bytes:
    buffer = io.BytesIO()
    table = pd.DataFrame({"user_id": ["1", "1", "1"], "item_id": ["2", "3", "qqqq"], "timestamp": [1, 2, 3]})
    table.to_parquet(buffer, compression=None)
    return buffer.getvalue()


# file name, content, expected message (regex, after the path)
BAD_TABLES = {
    "empty": ("i.csv", b"", r"the file is empty; it needs a header line naming the columns"),
    "blank lines": ("i.csv", b"\n \n\n", r"the file is empty"),
    "header only": ("i.csv", HEADER.encode(), r"no interaction rows below its header line; add one row"),
    "corrupt parquet": ("i.parquet", b"PAR1 this is not parquet", r"not a readable Parquet file \(.*\); write it"),
    "truncated parquet": ("i.parquet", parquet_bytes()[:200], r"not a readable Parquet file"),
    "parquet not utf-8": (  # found by the fuzzer: pyarrow reads it, the first use of the strings fails
        "i.parquet",
        parquet_bytes().replace(b"qqqq", b"qq\x80q"),
        r"cannot read its columns as Parquet \(.*Invalid UTF8",
    ),
    "semicolons": ("i.csv", HEADER.replace(",", ";").encode(), r"3 columns with ';'; set data\.source\.sep=';'"),
    "tabs": ("i.csv", b"user_id\titem_id\ttimestamp\n1\t2\t3\n", r"with '\\t'; set data\.source\.sep='\\t'"),
    "blank timestamp": ("i.csv", f"{HEADER}1,2,100\n1,3,\n".encode(), r"column 'timestamp' row 2 has no timestamp"),
    "malformed date": (
        "i.csv",
        f"{HEADER}1,2,2020-01-01\n1,3,2020-01-02\n1,4,1001000-01-01\n".encode(),
        r"row 3 is neither a number nor a date like row 1's '2020-01-01' \('1001000-01-01'\); fix or delete",
    ),
    "date out of range": (
        "i.csv",
        f"{HEADER}1,2,2020-01-01\n1,3,3000-01-01\n".encode(),
        r"row 2 is not a date between 1677-09-22 and 2262-04-11 \('3000-01-01'\)",
    ),
    "not a number": ("i.csv", f"{HEADER}1,2,100\n1,3,abc\n".encode(), r"row 2 is not a number \('abc'\)"),
    "ragged row": ("i.csv", f"{HEADER}1,2,3\n1,3,4,5\n".encode(), r"cannot parse as ','-separated CSV \(.*line 3"),
    "open quote": ("i.csv", f'{HEADER}1,"2,3\n'.encode(), r"cannot parse as ','-separated CSV \(.*EOF inside"),
    "not utf-8": ("i.csv", HEADER.encode() + b"1,\xff\xfe,3\n", r"cannot parse .*utf-8.*; fix the file"),
    "not utf-8 header": ("i.csv", b"user_id,\xe9tem\n1,2\n", r"line 1: not UTF-8 text .*save the file as UTF-8"),
}


def prepare(source: object, tmp_path: Path) -> None:
    prepare_dataset(source, Preprocessing(), LeaveOneOut(), tmp_path / "data", None, tmp_path / "cache", False)


def assert_one_line(err: pytest.ExceptionInfo[DataError], path: Path, pattern: str) -> None:
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}"), message
    assert re.search(pattern, message), message


@pytest.mark.parametrize("case", list(BAD_TABLES))
def test_bad_table_is_one_data_error_and_nothing_is_cached(case: str, tmp_path: Path) -> None:
    name, content, pattern = BAD_TABLES[case]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError) as err:
        prepare(TabularInteractions(path=str(path), time_col="timestamp"), tmp_path)
    assert_one_line(err, path, pattern)
    assert leftovers(tmp_path / "cache") == []


def reviews_gz(path: Path, n: int = 3000) -> bytes:
    records = ({"reviewerID": f"u{i % 50}", "asin": f"i{i}", "overall": 5.0, "unixReviewTime": i} for i in range(n))
    lines = (json.dumps(record) for record in records)
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0))
    return path.read_bytes()


def test_truncated_reviews_gz(tmp_path: Path) -> None:
    path = tmp_path / "r.json.gz"
    content = reviews_gz(path)
    path.write_bytes(content[: len(content) * 2 // 3])
    with pytest.raises(DataError) as err:
        prepare(AmazonReviews(name="x", file=str(path)), tmp_path)
    assert_one_line(err, path, r"gzip data truncated or corrupt at line \d+ \(.*\); download the file again")
    assert leftovers(tmp_path / "cache") == []
    path.write_text('{"reviewerID": "u1"}\n')  # a .gz name on plain text
    with pytest.raises(DataError, match=r"gzip data truncated or corrupt at line 1 \(Not a gzipped file"):
        AmazonReviews(name="x", file=str(path)).load(tmp_path)


def test_truncated_attributes_gz(tmp_path: Path) -> None:
    (tmp_path / "s.txt").write_text("1 1 2 3\n2 2 3 4\n")
    attributes = gzip.compress(json.dumps({str(i): [i, i + 1] for i in range(500)}).encode())
    (tmp_path / "a.json.gz").write_bytes(attributes[:-30])
    with pytest.raises(DataError) as err:
        S3RecSequences(name="x", sequence_file="s.txt", attribute_file="a.json.gz").load(tmp_path)
    assert_one_line(err, tmp_path / "a.json.gz", r"gzip data truncated or corrupt")
    (tmp_path / "a.json.gz").write_bytes(attributes)  # the same file whole: attributes may be gzipped
    data = S3RecSequences(name="x", sequence_file="s.txt", attribute_file="a.json.gz").load(tmp_path)
    assert data.item_features.loc["3", "categories"] == ["3", "4"]


@pytest.mark.parametrize(
    ("record", "pattern"),
    [
        ('{"reviewerID": null, "asin": "i1"}', r"line 2: field 'reviewerID' is None, not an id"),
        ('{"reviewerID": "u1", "asin": ["i1"]}', r"line 2: field 'asin' is \['i1'\], not an id"),
        ('{"reviewerID": "u1", "asin": "i1", "overall": "five"}', r"'overall' line 2 is not a number \('five'\)"),
        ('{"reviewerID": "u1", "asin": "i1", "overall": 1' + "1" * 5000 + "}", r"line 2: unreadable JSON"),
    ],
)
def test_bad_review_fields(record: str, pattern: str, tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text('{"reviewerID": "u0", "asin": "i0", "overall": 4}\n' + record + "\n")
    with pytest.raises(DataError, match=pattern):
        AmazonReviews(name="x", file="r.json", time_field=None).load(tmp_path)


def test_csv_without_a_path_is_a_data_error(tmp_path: Path) -> None:
    cfg = compose_config("train", ["data=csv", f"paths.data_dir={tmp_path}", "paths.output_dir=unused"])
    datamodule = instantiate(cfg.data)
    with pytest.raises(DataError, match=r"^data\.source\.path is not set: .*set data\.source\.path=/abs/path/"):
        datamodule.load()
    assert leftovers(tmp_path) == []


def write_tsv(path: Path) -> Path:
    """ml-100k's u.data layout: user, item, rating, time; tab-separated, no header."""
    path.write_text("".join(f"{u}\t{i}\t{1 + (u + i) % 5}\t{100 * u - i}\n" for u in (7, 8) for i in (3, 2, 1)))
    return path


def test_headerless_file_by_column_positions(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "u.data")
    positions = {"user_col": 0, "item_col": 1, "time_col": 3, "rating_col": 2}
    source = TabularInteractions(path=str(path), sep="\\t", header=False, **positions)  # sep='\t' from the CLI
    inter = source.load(tmp_path).interactions
    assert inter[USER].tolist() == ["7"] * 3 + ["8"] * 3 and inter[ITEM].tolist() == ["3", "2", "1"] * 2
    assert inter[TIME].tolist() == [697, 698, 699, 797, 798, 799]
    data = prepare_dataset(source, Preprocessing(), LeaveOneOut(), tmp_path, None, None)
    assert data.item_raw_ids.tolist() == ["", "3", "2", "1"]  # ids by first appearance in the file
    assert data.test.targets.tolist() == [3, 3]  # each user's latest item: "1" (largest timestamp)


@pytest.mark.parametrize(
    ("options", "pattern"),
    [
        ({"header": False}, r"data\.source\.user_col='user_id' is a column name, but data\.source\.header=false"),
        ({"user_col": 0, "item_col": 1}, r"data\.source\.user_col=0 is a column position, but data\.source\.header"),
        (
            {"header": False, "user_col": 0, "item_col": 7, "sep": "\t"},
            r"data\.source\.item_col=7 but its first line has 4 column\(s\) \(positions 0\.\.3\)",
        ),
        ({"header": False, "user_col": 0, "item_col": 1}, r"4 columns with '\\t'; set data\.source\.sep='\\t'"),
    ],
)
def test_column_positions_and_names_are_checked(options: dict, pattern: str, tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "u.data")
    with pytest.raises(DataError, match=pattern):
        TabularInteractions(path=str(path), **options).load(tmp_path)


def run_cli(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``divrec <args>`` in this process → (exit status, last stderr line)."""
    monkeypatch.setattr(sys, "argv", ["divrec", *args])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return int(exit_.value.code), lines[-1] if lines else ""


@pytest.mark.parametrize(
    ("content", "options", "expected"),
    [
        (b"", [], r"i\.csv: the file is empty"),
        (HEADER.encode(), [], r"i\.csv: no interaction rows below its header line"),
        (b"user_id;item_id\n1;2\n", ["data.source.time_col=null"], r"set data\.source\.sep=';'"),
        (f"{HEADER}1,2,100\n1,3,x\n".encode(), [], r"row 2 is not a number \('x'\)"),
        (None, [], r"data\.source\.path is not set"),
    ],
    ids=["empty", "header-only", "separator", "timestamp", "no-path"],
)
def test_cli_prints_one_error_line_exits_2_and_caches_nothing(
    content: bytes | None,
    options: list[str],
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "i.csv"
    args = ["train", "data=csv", "trainer=debug", f"paths.data_dir={tmp_path}/data", f"hydra.run.dir={tmp_path}/run"]
    if content is not None:
        path.write_bytes(content)
        args.append(f"data.source.path={path}")
    status, line = run_cli([*args, *options], monkeypatch, capsys)
    assert status == 2
    assert line.startswith("error: ") and re.search(expected, line), line
    assert leftovers(tmp_path / "data") == []


def test_a_relative_path_that_exists_here_says_relative_paths_are_read_from_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from divrec.data.locate import locate
    from divrec.data.sources import TabularInteractions

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.csv").write_text("user_id,item_id\n1,2\n")
    with pytest.raises(DataError, match=r"mine.csv exists in the current folder.*data.source.path=\$PWD/mine.csv"):
        locate(TabularInteractions(path="mine.csv"), tmp_path / "data", None, download=False)
