"""Open the configured database, migrated to the current schema, with one way to read and one
way to write."""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from db.engine import (
    SQLITE_BEGIN_ATTEMPTS,
    SQLITE_BUSY_TIMEOUT_MS,
    is_lock_timeout,
    make_engine,
    make_session_factory,
)
from db.migrate import MigrationRefused, current_revision, head_revision, upgrade
from review.config import Settings, load_settings
from review.errors import ReviewError
from review.media.store import ImageStore

T = TypeVar("T")
log = logging.getLogger(__name__)

#: Times `Lab.run` tries a write that a concurrent one got in the way of (see `WriteConflict`).
WRITE_ATTEMPTS = 4


class SchemaOutOfDate(ReviewError):
    """The database is older than this code; `python -m review init` upgrades it in place."""


class SchemaUpgradeRefused(ReviewError):
    """A migration found rows that break a rule it adds and stopped; nothing was changed. The
    message names the rows and says how to go on."""


class DatabaseBusy(ReviewError):
    """Another process held the database's write lock for longer than we wait; nothing was
    saved, and trying again in a moment is the fix."""


class WriteRefused(ReviewError):
    """The database's own rules (a CHECK, a unique index, a guard trigger: migrations 0007, 0012)
    refused the write, so nothing of it was saved. The domain checks these rules first; reaching
    the database's refusal means another writer changed the data in between (a place on an item
    taken, raters per item lowered) or a bug. The message says which rule, plainly; the original
    error goes to the log."""

    def __init__(self, message: str, *, rule: str) -> None:
        super().__init__(message)
        self.rule = rule


class WriteConflict(ReviewError):
    """PostgreSQL refused the write as colliding with a concurrent one (a serialization failure
    at REPEATABLE READ or SERIALIZABLE, or a deadlock); nothing was saved, and running the whole
    transaction again is the fix (`Lab.run` does, a few times)."""

    level = "warning"


#: Plain sentences for the rules a concurrent write can make a write break (rule name -> text).
_RULE_MESSAGES = {
    "ratings_active_per_item": "This item already has all the ratings its study asks for (another "
                               "reviewer's rating, or a lower raters-per-item, came first), so this "
                               "rating was not saved. Go on with the next item.",
    "assignments_slot_in_study": "The study's raters per item was lowered while this item was being "
                                 "handed out, so it was not; ask for the next item.",
    "uq_assignments_item_slot": "Another reviewer took the same place on this item at the same "
                                "moment, so it was not handed out; ask for the next item.",
    "ratings_score_in_scale": "The score is outside the study's scale (which may just have changed), "
                              "so it was not saved.",
    "studies_keep_ratings_valid": "The study's items already hold more reviewers (or ratings outside "
                                  "the new scale) than the change allows, so it was not saved. Reload "
                                  "the page to see the current numbers.",
}
_CONFLICT = ("Another change to the same data was being saved at the same moment, so nothing was "
             "saved. Try again.")
#: PostgreSQL's SQLSTATEs for "run the transaction again": serialization failure, deadlock.
_RETRY_STATES = {"40001", "40P01"}


def _sqlstate(exc: DBAPIError) -> str | None:
    return getattr(exc.orig, "sqlstate", None)


def _rule_of(exc: IntegrityError) -> str:
    """The name of the rule an integrity error broke: a guard's name from its message ("CHECK
    constraint failed: <name>"), PostgreSQL's constraint name, or SQLite's columns."""
    text = str(exc.orig)
    named = re.search(r"CHECK constraint failed: (\w+)", text)
    if named:
        return named.group(1)
    constraint = getattr(getattr(exc.orig, "diag", None), "constraint_name", None)
    if constraint:
        return constraint
    if "assignments.item_id, assignments.slot" in text:  # SQLite names columns, not the index
        return "uq_assignments_item_slot"
    unique = re.search(r"UNIQUE constraint failed: ([\w., ]+)", text)
    return f"unique {unique.group(1)}" if unique else "an integrity rule"


def plain_refusal(exc: BaseException) -> ReviewError | None:
    """The plain refusal for a database error a write may meet when another write got in its way
    (an integrity rule, a serialization failure, a deadlock); None for anything else (a bug,
    which keeps its traceback)."""
    if isinstance(exc, IntegrityError):
        rule = _rule_of(exc)
        message = _RULE_MESSAGES.get(rule) or (
            f"The database refused this change because it would break one of its rules ({rule}), "
            "so nothing was saved. Reload the page and try again; if it happens again, report it.")
        return WriteRefused(message, rule=rule)
    if isinstance(exc, DBAPIError) and _sqlstate(exc) in _RETRY_STATES:
        return WriteConflict(_CONFLICT)
    if isinstance(exc, DBAPIError) and _sqlstate(exc) == "55P03":  # lock_timeout (PostgreSQL)
        return DatabaseBusy("The study is busy: ratings kept being saved while this change waited "
                            "for them, so it was not saved. Try again in a moment.")
    return None


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
            refusal = plain_refusal(exc)
            if refusal is None:
                raise
            log.warning("write refused by the database (%s): %s", type(refusal).__name__, exc)
            raise refusal from exc

    def run(self, action: Callable[[Session], T], *, attempts: int = WRITE_ATTEMPTS) -> T:
        """`action` in one write transaction (as `write()`), run again from the start, up to
        `attempts` times in all, when the database refused it because of a concurrent write: a
        `WriteConflict`, or a `WriteRefused` on PostgreSQL, where the second run reads what the
        other write committed and the domain gives its own answer (another slot, "the item is
        full"). The last refusal is raised as it is: a plain message. `action` must only write
        through the session (it may run more than once)."""
        for attempt in range(1, attempts + 1):
            try:
                with self.write() as session:
                    return action(session)
            except (WriteConflict, WriteRefused) as exc:
                again = isinstance(exc, WriteConflict) or self.engine.dialect.name == "postgresql"
                if not again or attempt == attempts:
                    raise
                time.sleep(random.uniform(0.005, 0.03) * attempt)
        raise AssertionError("unreachable")  # the loop returns or raises

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A consistent snapshot for reading; on SQLite any write through it is refused."""
        with self.read_sessions() as session, session.begin():
            yield session


def _busy_message(holder: str) -> str:
    waited = SQLITE_BUSY_TIMEOUT_MS * SQLITE_BEGIN_ATTEMPTS // 1000
    return (f"The database is busy: {holder} kept it locked for more than {waited} s, so nothing "
            "was saved. Try again in a moment; if this keeps happening, look for a stuck "
            "`python -m review` process or move the lab to PostgreSQL (docs/operations.md, Team deployment).")


def open_lab(settings: Settings | None = None, *, migrate: bool = False) -> Lab:
    """Connect; with `migrate` upgrade the schema, otherwise refuse an outdated schema."""
    settings = settings or load_settings()
    engine = make_engine(settings.database_url)
    if migrate:
        before = current_revision(engine)
        try:
            upgrade(engine)
        except MigrationRefused as exc:
            raise SchemaUpgradeRefused(
                f"{exc}\nThe database at {settings.database_url.render_as_string()} stays at schema "
                f"revision {before or 'none'}. Once those rows are fixed (docs/architecture.md, "
                "\"Data guarantees\", says what each rule asks), run `python -m review init` again.") from exc
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
