"""Engines and session factories for any SQLAlchemy URL.

SQLite gets what a multi-process, multi-threaded app needs:

- WAL, so readers never block the writer and the writer never blocks readers;
- a *write* engine whose transactions start with `BEGIN IMMEDIATE` (two writers cannot both
  read-then-write stale data) and whose pool holds one connection: inside a process writes queue
  for that connection in order (datasette's one write connection per database), so threads never
  fight over SQLite's lock, and only other processes are left to wait for;
- a busy timeout plus a few retries of that `BEGIN IMMEDIATE` (nothing has run yet, so a retry
  is safe), before the caller gets "database is locked" to turn into a plain message;
- a *read* engine (`role="read"`) with deferred `BEGIN` and `PRAGMA query_only`: page renders
  take no write lock, and a read session that tries to write fails loudly instead of silently
  becoming a writer.

PostgreSQL needs none of this: both roles get the same ordinary engine configuration, at READ
COMMITTED even where the server's default is stricter.
"""

from __future__ import annotations

import random
import sqlite3
import time
from typing import Any, Literal

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, CursorResult, Result, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

#: How long one `BEGIN IMMEDIATE` waits inside SQLite for another process's write to end.
SQLITE_BUSY_TIMEOUT_MS = 5_000
#: Attempts at `BEGIN IMMEDIATE` (each waiting the busy timeout) before "database is locked".
SQLITE_BEGIN_ATTEMPTS = 3
#: How long a thread waits for the process's one write connection before giving up.
WRITE_QUEUE_TIMEOUT_S = 60

EngineRole = Literal["write", "read"]


def make_engine(url: str | URL, *, role: EngineRole = "write", echo: bool = False) -> Engine:
    """Create an engine; SQLite connections are configured on every connect for `role`."""
    if role not in ("write", "read"):
        raise ValueError(f"role must be 'write' or 'read', not {role!r}")
    url = make_url(url)
    on_file = url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
    options: dict = {}
    if on_file and role == "write":
        options = {"pool_size": 1, "max_overflow": 0, "pool_timeout": WRITE_QUEUE_TIMEOUT_S}
    if url.get_backend_name() == "postgresql":
        # The lab's concurrency reasoning (review/labeling/hotpath.py, migration 0012) is READ
        # COMMITTED's, whatever default the server was configured with; the schema's guards hold
        # at every level, and `Lab.run` retries what a stricter level would refuse.
        options["isolation_level"] = "READ COMMITTED"
    # A pre-ping guards against a server that dropped the connection; a SQLite file has no server.
    engine = create_engine(url, echo=echo, pool_pre_ping=url.get_backend_name() != "sqlite", **options)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine, role if on_file else "write", wal=on_file)
    return engine


def _configure_sqlite(engine: Engine, role: EngineRole, *, wal: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        if wal:
            cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.execute("PRAGMA synchronous = NORMAL")
        if role == "read":
            cur.execute("PRAGMA query_only = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if role == "read":
            conn.exec_driver_sql("BEGIN")
            return
        # Take the write lock up front: a read-then-write transaction cannot deadlock or fail
        # late with "database is locked" when another process wrote in between.
        for attempt in range(1, SQLITE_BEGIN_ATTEMPTS + 1):
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                return
            except OperationalError as exc:
                if not is_lock_timeout(exc) or attempt == SQLITE_BEGIN_ATTEMPTS:
                    raise
                time.sleep(random.uniform(0.05, 0.25) * attempt)


def is_lock_timeout(exc: BaseException) -> bool:
    """True for SQLite's "database is locked"/"busy" after its timeout: the write could not
    start, nothing was done, and the caller may say so and let the user try again."""
    text = str(getattr(exc, "orig", exc)).lower()
    return isinstance(exc, OperationalError) and ("database is locked" in text or "busy" in text)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def rows_changed(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE run through ``Session.execute`` changed. The session types
    its result as a plain Result; a DML statement's is a CursorResult, which has the count."""
    if not isinstance(result, CursorResult):
        raise TypeError(f"a {type(result).__name__} is not the result of an UPDATE or DELETE")
    return result.rowcount
