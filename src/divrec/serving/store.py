"""Durable feedback events (``POST /feedback``): one SQLAlchemy table, SQLite by default, any database URL otherwise.

An ``append`` returns only after its transaction is committed, so a 200 reply means the events survive a crash. On
SQLite the file runs in WAL mode with ``synchronous=FULL`` (each commit is fsynced: ``kill -9`` or a power cut after
the reply loses nothing) and one writer at a time (a lock here, a busy timeout for other processes). Written with
SQLAlchemy's 2.0-style API (``future=True``), so it runs on 1.4 and 2.x alike.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from divrec import names
from divrec.errors import UserError

TABLE = "feedback_events"
EVENT = "event"
RECEIVED_AT = "received_at"  # server clock (unix seconds) when the event was committed
COLUMNS = ["id", names.USER, names.ITEM, EVENT, names.TIME, RECEIVED_AT]
SQLITE_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
ID_CHARS = 256  # longest raw user / item id stored
EVENT_CHARS = 64  # longest event name ("click", "purchase", ...)

_metadata = sa.MetaData()
events_table = sa.Table(
    TABLE,
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(names.USER, sa.String(ID_CHARS), nullable=False, index=True),
    sa.Column(names.ITEM, sa.String(ID_CHARS), nullable=False),
    sa.Column(EVENT, sa.String(EVENT_CHARS), nullable=False),
    sa.Column(names.TIME, sa.Float, nullable=False),  # when the user acted (client clock, unix seconds)
    sa.Column(RECEIVED_AT, sa.Float, nullable=False, index=True),
)


@dataclass(frozen=True)
class FeedbackEvent:
    """One interaction reported by a client; ``timestamp`` None = when the server received it."""

    user: str
    item: str
    event: str = "click"
    timestamp: float | None = None


class FeedbackStore:
    """Append-only log of feedback events at ``url`` (a SQLAlchemy URL); creates its table if missing."""

    def __init__(self, url: str, synchronous: str = "FULL") -> None:
        if synchronous.upper() not in SQLITE_SYNCHRONOUS:
            raise UserError(f"feedback.synchronous={synchronous!r}: use one of {list(SQLITE_SYNCHRONOUS)}")
        self.url = url
        self._lock = threading.Lock()  # one writer at a time (SQLite allows no more; harmless elsewhere)
        self.engine = _engine(url, synchronous.upper())
        try:
            _metadata.create_all(self.engine)
        except SQLAlchemyError as err:
            self.engine.dispose()
            reason = _first_line(err)
            raise UserError(f"feedback.url={safe_url(url)}: cannot open the feedback table ({reason})") from err

    def append(self, events: Iterable[FeedbackEvent]) -> int:
        """Store ``events`` in one transaction, committed before returning; the number stored."""
        now = time.time()
        rows = [
            {names.USER: e.user, names.ITEM: e.item, EVENT: e.event,
             names.TIME: now if e.timestamp is None else float(e.timestamp), RECEIVED_AT: now}
            for e in events
        ]
        if not rows:
            return 0
        with self._lock, self.engine.begin() as conn:  # commits on leaving the block, rolls back on an error
            conn.execute(events_table.insert(), rows)
        return len(rows)

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(events_table)).scalar_one())

    def read(self, since: float | None = None) -> pd.DataFrame:
        """Every event (oldest first), or those received at or after ``since`` (unix seconds)."""
        query = sa.select(events_table).order_by(events_table.c.id)
        if since is not None:
            query = query.where(events_table.c[RECEIVED_AT] >= float(since))
        with self.engine.connect() as conn:
            rows: list[Mapping[str, Any]] = [dict(r._mapping) for r in conn.execute(query)]
        return pd.DataFrame(rows, columns=COLUMNS).astype({names.USER: str, names.ITEM: str, EVENT: str})

    def close(self) -> None:
        self.engine.dispose()


def _engine(url: str, synchronous: str) -> Engine:
    """An engine for ``url``; SQLite files get their folder created, WAL mode and ``synchronous`` on every
    connection, and may be shared between threads (our lock serialises the writes)."""
    try:
        parsed = make_url(url)
    except ArgumentError as err:
        raise UserError(f"feedback.url={url!r} is not a SQLAlchemy URL; use e.g. sqlite:///feedback.sqlite") from err
    sqlite = parsed.get_backend_name() == "sqlite"
    kwargs: dict[str, Any] = {"future": True}
    if sqlite:
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            kwargs["poolclass"] = sa.pool.QueuePool  # keep connections (1.4's default NullPool reopens per use)
        else:  # one in-memory database, shared by every thread
            kwargs["poolclass"] = sa.pool.StaticPool
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    try:
        engine = sa.create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ImportError) as err:
        raise UserError(f"feedback.url={safe_url(url)}: no driver for it ({_first_line(err)}); install it") from err
    if sqlite:

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.close()

    return engine


def safe_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return repr(url)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
