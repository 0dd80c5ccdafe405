"""The audit log: who did what and when (logins, rating changes, QA verdicts, study settings,
guideline assignments, user changes).

Each domain function that changes something calls `record` with the session of its own
transaction, so an entry is committed together with the change it describes and rolled back with
it: the log never shows an action that did not happen. Entries are only ever added.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, String, func, select
from sqlalchemy.orm import Session

from db.models import AuditEntry, User
from review.errors import ReviewError

#: Every action the domain writes, for the page's filter.
ACTIONS = (
    "login", "login_failed",
    "rating.submit", "rating.supersede", "rating.withdraw",
    "qa.accept", "qa.reject", "qa.correct", "qa.sample",
    "study.create", "study.edit", "study.close", "study.reopen", "study.settle",
    "settings.change", "guideline.assign", "guideline.experiment",
    "user.create", "user.deactivate", "user.activate", "user.role", "user.password_reset",
    "pool.create", "pool.edit", "pool.open", "pool.close", "pool.void_links",
    "participant.join", "cleansing.decide", "cleansing.override", "participant.block",
)


def _max_length(column: str) -> int:
    kind = AuditEntry.__table__.c[column].type
    if not isinstance(kind, String) or kind.length is None:
        raise TypeError(f"audit_log.{column} is not a string column of bounded length")
    return kind.length


#: The log's column limits (db/models.py): `record` cuts an entry's actor and target to them, and
#: so does the hot path's SQL (review/labeling/hotpath.py).
ACTOR_MAX: int = _max_length("actor")
TARGET_MAX: int = _max_length("target")
#: A rating's entry (submit, supersede, withdraw): its target names the item, its details are
#: these keys in this order (`rating_details`); the hot path's SQL writes the same JSON text.
ITEM_TARGET = "item "
RATING_DETAILS = ("study", "score", "rating")
MAX_ROWS = 10_000  # per CSV download: narrow the filters for older entries
PAGE_ROWS = 200  # per page on screen
#: A spreadsheet runs a cell that starts with one of these as a formula (OWASP CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class AuditError(ReviewError):
    """An audit query that cannot be answered as asked."""


def record(session: Session, action: str, *, actor_id: int | None = None, actor: str = "",
           target: str = "", **details: Any) -> AuditEntry:
    """Add one entry to the caller's transaction. `actor` defaults to the user's name; "cli" or
    "system" when no signed-in user acted."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    if not actor:
        user = session.get(User, actor_id) if actor_id is not None else None
        actor = user.username if user is not None else "system"
    entry = AuditEntry(actor_id=actor_id, actor=actor[:ACTOR_MAX], action=action,
                       target=target[:TARGET_MAX], details=details)
    session.add(entry)
    return entry


def rating_details(item_id: int, study: str, score: int, rating_id: int) -> dict[str, Any]:
    """The target and details of a rating's entry, as `record` takes them (RATING_DETAILS)."""
    return {"target": f"{ITEM_TARGET}{item_id}",
            **dict(zip(RATING_DETAILS, (study, score, rating_id), strict=True))}


@dataclass(frozen=True)
class AuditRow:
    """One entry as the page and the CSV show it."""

    at: datetime
    actor: str
    action: str
    target: str
    details: str


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _filtered(query: Select, *, actor: str | None, actions: tuple[str, ...], since: date | None,
              until: date | None) -> Select:
    """`query` narrowed to the entries the filters select (UTC days, both ends included)."""
    if since is not None and until is not None and since > until:
        raise AuditError(f"The start day {since} is after the end day {until}; swap them.")
    if actor:
        query = query.where(AuditEntry.actor == actor.strip().lower())
    if actions:
        query = query.where(AuditEntry.action.in_(actions))
    if since is not None:
        query = query.where(AuditEntry.at >= _day_start(since))
    if until is not None:
        query = query.where(AuditEntry.at < _day_start(until + timedelta(days=1)))
    return query


def audit_entries(session: Session, *, actor: str | None = None, actions: tuple[str, ...] = (),
                  since: date | None = None, until: date | None = None,
                  limit: int = MAX_ROWS, offset: int = 0) -> list[AuditRow]:
    """Entries newest first, filtered by actor name, actions and a day range (UTC, both ends
    included); at most `limit` rows after skipping the `offset` newest (the page's paging)."""
    if offset < 0 or limit < 1:
        raise AuditError("Pages start at 1 and hold at least one entry.")
    q = _filtered(select(AuditEntry), actor=actor, actions=actions, since=since, until=until)
    q = q.order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit).offset(offset)
    return [AuditRow(e.at if e.at.tzinfo else e.at.replace(tzinfo=UTC), e.actor, e.action, e.target,
                     ", ".join(f"{k}={v}" for k, v in sorted((e.details or {}).items())))
            for e in session.scalars(q)]


def count_entries(session: Session, *, actor: str | None = None, actions: tuple[str, ...] = (),
                  since: date | None = None, until: date | None = None) -> int:
    """How many entries the same filters select (for 'page k of n')."""
    q = _filtered(select(func.count()).select_from(AuditEntry), actor=actor, actions=actions,
                  since=since, until=until)
    return session.scalar(q) or 0


def actor_names(session: Session) -> list[str]:
    """Every actor name that appears in the log, for the page's filter."""
    return sorted(set(session.scalars(select(AuditEntry.actor).distinct())))


def _cell(value: str) -> str:
    """A text cell a spreadsheet shows as text: a leading formula character gets a quote."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def audit_csv(rows: list[AuditRow]) -> bytes:
    """The rows as UTF-8 CSV (with BOM, so Excel reads it as UTF-8), formulas neutralised."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["at_utc", "actor", "action", "target", "details"])
    for r in rows:
        writer.writerow([r.at.isoformat(timespec="seconds"), _cell(r.actor), r.action, _cell(r.target),
                         _cell(r.details)])
    return ("\ufeff" + out.getvalue()).encode()
