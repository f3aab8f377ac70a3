"""The feedback store: round trip, SQLite durability settings, all-or-nothing appends, bad URLs.

The crash test (kill -9 of a real ``divrec serve`` after N acknowledged events) is in test_server.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from divrec import names
from divrec.errors import UserError
from divrec.serving.store import EVENT, RECEIVED_AT, TABLE, FeedbackEvent, FeedbackStore


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'nested' / 'feedback.sqlite'}"


def test_events_round_trip_in_order(tmp_path: Path) -> None:
    store = FeedbackStore(sqlite_url(tmp_path))
    assert store.append([FeedbackEvent("u1", "i1", "click", 10.0), FeedbackEvent("u2", "i2", "buy")]) == 2
    assert store.append([]) == 0
    frame = store.read()
    assert store.count() == 2
    assert list(frame[names.USER]) == ["u1", "u2"] and list(frame[names.ITEM]) == ["i1", "i2"]
    assert list(frame[EVENT]) == ["click", "buy"]
    assert frame[names.TIME].iloc[0] == 10.0
    assert frame[names.TIME].iloc[1] == frame[RECEIVED_AT].iloc[1]  # no timestamp: when it was received
    assert frame["id"].is_monotonic_increasing
    store.close()


def test_read_since_filters_on_the_receive_time(tmp_path: Path) -> None:
    store = FeedbackStore(sqlite_url(tmp_path))
    store.append([FeedbackEvent("u1", "i1")])
    cut = float(store.read()[RECEIVED_AT].max())
    assert len(store.read(since=cut)) == 1
    assert store.read(since=cut + 1).empty
    assert list(store.read(since=cut + 1).columns) == ["id", names.USER, names.ITEM, EVENT, names.TIME, RECEIVED_AT]
    store.close()


def test_sqlite_runs_in_wal_mode_with_full_sync_and_survives_reopening(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    store = FeedbackStore(url)
    store.append([FeedbackEvent("u1", "i1")])
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    store.close()
    again = FeedbackStore(url)  # the table exists already: nothing is recreated or lost
    again.append([FeedbackEvent("u2", "i2")])
    assert again.count() == 2
    assert TABLE in sa.inspect(again.engine).get_table_names()
    again.close()


def test_a_failing_append_stores_none_of_its_events(tmp_path: Path) -> None:
    store = FeedbackStore(sqlite_url(tmp_path))
    store.append([FeedbackEvent("u0", "i0")])
    bad = [FeedbackEvent("u1", "i1"), FeedbackEvent("u2", None)]  # type: ignore[arg-type]  # item NOT NULL
    with pytest.raises(sa.exc.IntegrityError):
        store.append(bad)
    assert store.count() == 1  # the whole transaction was rolled back
    store.close()


def test_any_sqlalchemy_url_works_in_memory_too() -> None:
    store = FeedbackStore("sqlite://")
    store.append([FeedbackEvent("u", "i")] * 3)
    assert store.count() == 3
    store.close()


@pytest.mark.parametrize(
    ("url", "synchronous", "message"),
    [
        ("not a url", "FULL", r"feedback.url='not a url' is not a SQLAlchemy URL"),
        ("nosuchdb://host/db", "FULL", r"feedback.url=nosuchdb://host/db: no driver for it"),
        ("sqlite:///x.sqlite", "SOMETIMES", r"feedback.synchronous='SOMETIMES': use one of"),
    ],
)
def test_bad_settings_are_one_line_user_errors(url: str, synchronous: str, message: str) -> None:
    with pytest.raises(UserError, match=message) as err:
        FeedbackStore(url, synchronous)
    assert "\n" not in str(err.value)


def test_an_unwritable_database_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()  # a folder where the file should be
    with pytest.raises(UserError, match=r"cannot open the feedback table"):
        FeedbackStore(f"sqlite:///{tmp_path / 'db'}")


POSTGRES_URL = os.environ.get("DIVREC_TEST_POSTGRES_URL")  # .ci/run starts a throwaway server (scripts/postgres.sh)


@pytest.mark.skipif(not POSTGRES_URL, reason="no PostgreSQL server: set DIVREC_TEST_POSTGRES_URL (scripts/postgres.sh)")
def test_a_real_postgresql_server_stores_commits_and_isolates_failed_batches() -> None:
    assert POSTGRES_URL is not None
    store = FeedbackStore(POSTGRES_URL)
    with store.engine.begin() as conn:  # a clean table for this test (the server is throwaway)
        conn.execute(sa.text(f"DELETE FROM {TABLE}"))
    assert store.append([FeedbackEvent("u1", "i1", "click", 1.0), FeedbackEvent("u2", "i2", "buy", 2.0)]) == 2
    with pytest.raises(sa.exc.SQLAlchemyError):  # one bad event (id longer than the column): none of its batch
        store.append([FeedbackEvent("u3", "i3"), FeedbackEvent("u4", "x" * 10_000)])
    store.close()
    reopened = FeedbackStore(POSTGRES_URL)  # committed means visible to a new connection pool
    frame = reopened.read()
    assert reopened.count() == 2 and list(frame[names.USER]) == ["u1", "u2"] and list(frame[EVENT]) == ["click", "buy"]
    reopened.close()
