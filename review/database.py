"""Open the configured database, migrated to the current schema, with one way to read and one
way to write."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from db.engine import (
    SQLITE_BEGIN_ATTEMPTS,
    SQLITE_BUSY_TIMEOUT_MS,
    is_lock_timeout,
    make_engine,
    make_session_factory,
)
from db.migrate import current_revision, head_revision, upgrade
from review.config import Settings, load_settings
from review.errors import ReviewError
from review.media.store import ImageStore


class SchemaOutOfDate(ReviewError):
    """The database is older than this code; `python -m review init` upgrades it in place."""


class DatabaseBusy(ReviewError):
    """Another process held the database's write lock for longer than we wait; nothing was
    saved, and trying again in a moment is the fix."""


@dataclass
class Lab:
    """Everything a command or page needs: settings, engines, sessions, image store.

    `write()` and `read()` are the way in: a write is one short transaction (on SQLite queued
    behind the process's other writes, see db/engine.py) that commits or rolls back as a whole;
    a read never takes the write lock. `sessions` stays for code that manages its own
    transaction boundaries (long jobs committing as they go) and writes like `write()`.
    """

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: ImageStore
    read_engine: Engine
    read_sessions: sessionmaker[Session]

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One unit of work: commit on success, roll back on any error; a write lock held
        elsewhere for too long becomes `DatabaseBusy` (a plain message, nothing half-done)."""
        try:
            with self.sessions() as session, session.begin():
                yield session
        except PoolTimeout as exc:
            raise DatabaseBusy(_busy_message("this app's other writes")) from exc
        except Exception as exc:
            if is_lock_timeout(exc):
                raise DatabaseBusy(_busy_message("another process")) from exc
            raise

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A consistent snapshot for reading; on SQLite any write through it is refused."""
        with self.read_sessions() as session, session.begin():
            yield session


def _busy_message(holder: str) -> str:
    waited = SQLITE_BUSY_TIMEOUT_MS * SQLITE_BEGIN_ATTEMPTS // 1000
    return (f"The database is busy: {holder} kept it locked for more than {waited} s, so nothing "
            "was saved. Try again in a moment; if this keeps happening, look for a stuck "
            "`python -m review` process or move the lab to PostgreSQL (README, Team deployment).")


def open_lab(settings: Settings | None = None, *, migrate: bool = False) -> Lab:
    """Connect; with `migrate` upgrade the schema, otherwise refuse an outdated schema."""
    settings = settings or load_settings()
    engine = make_engine(settings.database_url)
    if migrate:
        upgrade(engine)
    else:
        current = current_revision(engine)
        if current != head_revision():
            raise SchemaOutOfDate(
                f"The database at {settings.database_url.render_as_string()} is at schema "
                f"revision {current or 'none'}, this code needs {head_revision()}. "
                "Run `python -m review init` (or `make run`) to upgrade it in place."
            )
    settings.images_dir.mkdir(parents=True, exist_ok=True)
    # Only a SQLite file needs its own read engine (PostgreSQL's reads never block writes).
    url = settings.database_url
    sqlite_file = url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
    read_engine = make_engine(url, role="read") if sqlite_file else engine
    return Lab(settings, engine, make_session_factory(engine), ImageStore(settings.images_dir),
               read_engine, make_session_factory(read_engine))
