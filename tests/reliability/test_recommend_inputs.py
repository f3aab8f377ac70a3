"""``divrec recommend`` bad input (issue 16.6): k, output= and input= refused before the checkpoint is read, users=
deduplicated, all-unknown users an error; each a one-line ``UserError`` (the CLI's ``error:`` line and exit 2)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd
import pytest
from runhelpers import Run, compose_config, leftovers, run_paths

from divrec import names
from divrec.errors import UserError
from divrec.recommend import recommend


def cfg_for(tmp_path: Path, ckpt: Path, *overrides: str, data_dir: Path | None = None):
    return compose_config("recommend", [
        f"ckpt_path={ckpt}", *run_paths(tmp_path / "rec", data_dir or tmp_path / "data"), *overrides,
    ])


def no_checkpoint(tmp_path: Path, *overrides: str):
    """A config whose checkpoint does not exist: an error about anything else was raised before reading it."""
    return cfg_for(tmp_path, tmp_path / "missing.ckpt", *overrides)


def with_run(tmp_path: Path, run: Run, *overrides: str):
    return cfg_for(tmp_path, run.run_dir / "checkpoints" / "best.ckpt", *overrides, data_dir=run.data_dir)


@pytest.mark.parametrize("k", ["0", "-3", "abc", "2.5"])
def test_k_that_is_no_positive_integer_is_refused_up_front(tmp_path: Path, k: str) -> None:
    with pytest.raises(UserError, match=r"^k=.*: must be a positive integer \(the list length\), e\.g\. k=10$"):
        recommend(no_checkpoint(tmp_path, f"k={k}", f"output={tmp_path / 'r.csv'}"))


def test_output_that_cannot_be_written_is_refused_before_scoring(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    (tmp_path / "folder").mkdir()
    cases = {
        tmp_path / "r.txt": r"unknown format '\.txt'; use one of \['\.csv', '\.json', '\.parquet'\]",
        tmp_path / "folder": r"is a folder; name a file",
        blocker / "sub" / "r.csv": rf"cannot create folder {blocker / 'sub'}, {blocker} is a file",
    }
    for output, message in cases.items():
        with pytest.raises(UserError, match=message):
            recommend(no_checkpoint(tmp_path, f"output={output}"))
    assert leftovers(tmp_path) == ["a_file", "folder"]  # nothing created


def test_duplicate_users_are_written_once(tmp_path: Path, tiny_run: Run, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "recs.csv"
    with caplog.at_level(logging.WARNING, logger="divrec.recommend"):
        recommend(with_run(tmp_path, tiny_run, "users=[0,1,0,0]", "k=3", f"output={out}"))
    frame = pd.read_csv(out, dtype={names.USER: str})
    assert frame[names.USER].tolist() == ["0"] * 3 + ["1"] * 3
    warnings = [r.getMessage() for r in caplog.records if "duplicate" in r.getMessage()]
    assert warnings == ["users=: 2 duplicate id(s) dropped (e.g. ['0']); each user is written once"]


def test_all_unknown_users_are_an_error_and_write_nothing(tmp_path: Path, tiny_run: Run) -> None:
    out = tmp_path / "out" / "recs.csv"
    with pytest.raises(UserError, match=r"users=: 2 of 2 requested user id\(s\) are not in the dataset "
                                        r"\(nobody, ghost\); its user ids look like "):
        recommend(with_run(tmp_path, tiny_run, "users=[nobody,ghost]", f"output={out}"))
    assert not out.parent.exists()
    with pytest.raises(UserError, match=r"users=\[\] names no user"):
        recommend(no_checkpoint(tmp_path, "users=[]", f"output={out}"))


def test_some_unknown_users_are_reported_after_the_lists(tmp_path: Path, tiny_run: Run) -> None:
    out = tmp_path / "recs.parquet"
    recommend(with_run(tmp_path, tiny_run, "users=[2,ghost]", "k=2", f"output={out}"))
    assert set(pd.read_parquet(out)[names.USER]) == {"2"}
    assert (tmp_path / "recs.parquet.unknown_users.txt").read_text() == "ghost\n"


MALFORMED = {
    "bad json": ('{"history": ["1"]}\n{"history": [\n', r" line 2: not valid JSON \(.* at column \d+\)"),
    "not an object": ('["1", "2"]\n', r" line 1: expected a JSON object, got list"),
    "no history": ('\n{"user": "3"}\n', r" line 2: \"history\" must be a list of item ids, got None"),
    "bad item": ('{"history": ["1", 2.5]}\n', r" line 1: history\[1\]=2\.5 is not an item id"),
    "bad user": ('{"history": [], "user": [1]}\n', r" line 1: \"user\"=\[1\] is not a user id"),
    "bad k": ('{"history": ["1"]}\n{"history": ["1"], "k": 0}\n', r" line 2: \"k\"=0: must be a positive integer"),
    "typo": ('{"histroy": ["1"]}\n', r" line 1: unknown key\(s\) \['histroy'\]; allowed are \['history', 'user', 'k'"),
    "empty": ("\n\n", r": no requests \(the file is empty\)"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_input_file_names_the_file_and_line(tmp_path: Path, case: str) -> None:
    text, message = MALFORMED[case]
    source = tmp_path / "in.jsonl"
    source.write_text(text)
    with pytest.raises(UserError, match=rf"^input={re.escape(str(source))}{message}"):
        recommend(no_checkpoint(tmp_path, f"input={source}", f"output={tmp_path / 'r.csv'}"))
    assert not (tmp_path / "r.csv").exists()


def test_input_file_problems_outside_the_lines(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    with pytest.raises(UserError, match=rf"^input={re.escape(str(source))}: no such file"):
        recommend(no_checkpoint(tmp_path, f"input={source}"))
    source.write_bytes(b'{"history": ["\xff"]}\n')
    with pytest.raises(UserError, match=rf"^input={re.escape(str(source))} line 1: not UTF-8 text"):
        recommend(no_checkpoint(tmp_path, f"input={source}"))
    source.write_text('{"history": ["1"]}\n')
    with pytest.raises(UserError, match="input= takes its users from the file; drop users="):
        recommend(no_checkpoint(tmp_path, f"input={source}", "users=[1]"))
