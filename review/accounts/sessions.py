"""Signed-in browsers that survive a reload: server-side session rows behind an HttpOnly cookie.

After a login the page gets a one-time handoff code (valid HANDOFF seconds); the browser posts it
to the app's /_lab/session route (review/ui/server.py), which exchanges it for the long random
session token and sets it as an HttpOnly, SameSite=Strict cookie. Only SHA-256 hashes of the code
and the token are stored, so a copy of the database opens no session. A session ends when it
expires (SESSION_LIFETIME after login), and for every browser and tab of the account at once on
logout, a role change, a password reset or deactivation (`revoke_all`).

Every write made for a signed-in user checks, in its own transaction, that the session is still
live, the account active and its role the one the write needs (`require_session`); on PostgreSQL
it holds a share lock on the session row until it commits, so a logout (or role change, reset,
deactivation) waits for a write already under way and no write of that session passes after it.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeGuard

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.engine import rows_changed
from db.models import ReviewerSession, User, utcnow
from review.accounts.check import AccountRefused

COOKIE = "lab_session"
SESSION_LIFETIME = timedelta(days=7)
HANDOFF = timedelta(seconds=60)
MAX_TOKEN = 128  # a longer cookie value is not ours: refused before hashing
SIGNED_OUT = ("You were signed out (logout in another tab, or an admin changed your account); "
              "nothing was saved. Sign in again.")


class SessionEnded(AccountRefused):
    """The write's session was ended (logout, role change, password reset, deactivation) or
    expired, or the account lost the role the write needs: nothing was written (an account
    refusal, caught as one: review.accounts.check)."""

    level = "warning"


@dataclass(frozen=True)
class SignedIn:
    """Who a write is made for, as the browser's session knows it: the account, the role it
    signed in with and its server-side session (None only for a caller without a browser
    session: tests and the command line, which check the account alone)."""

    user_id: int
    role: str
    session_id: int | None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def start_session(session: Session, user_id: int, now: datetime | None = None) -> tuple[int, str]:
    """A new session for a user who just logged in: its id and the one-time handoff code."""
    now = now or utcnow()
    code = secrets.token_urlsafe(32)
    row = ReviewerSession(user_id=user_id, handoff_hash=_digest(code), handoff_expires_at=now + HANDOFF,
                          created_at=now, expires_at=now + SESSION_LIFETIME)
    session.add(row)
    session.flush()
    return row.id, code


def exchange_handoff(session: Session, code: str, now: datetime | None = None) -> str | None:
    """The session token for a fresh handoff code (usable once), or None."""
    now = now or utcnow()
    if not code or len(code) > MAX_TOKEN:
        return None
    row = session.scalar(select(ReviewerSession).where(ReviewerSession.handoff_hash == _digest(code)))
    if (row is None or row.revoked_at is not None or row.handoff_expires_at is None
            or _aware(row.handoff_expires_at) <= now):
        return None
    token = secrets.token_urlsafe(32)
    row.token_hash, row.handoff_hash, row.handoff_expires_at = _digest(token), None, None
    session.flush()
    return token


def _live(row: ReviewerSession | None, now: datetime) -> TypeGuard[ReviewerSession]:
    return row is not None and row.revoked_at is None and _aware(row.expires_at) > now


def resume(session: Session, token: str, now: datetime | None = None) -> tuple[int, User] | None:
    """The session id and its (active) user for a cookie's token, or None."""
    now = now or utcnow()
    if not token or len(token) > MAX_TOKEN:
        return None
    row = session.scalar(select(ReviewerSession).where(ReviewerSession.token_hash == _digest(token)))
    if not _live(row, now):
        return None
    user = session.get(User, row.user_id)
    return (row.id, user) if user is not None and user.active else None


def is_live(session: Session, session_id: int, now: datetime | None = None) -> bool:
    """Whether a session is still open (not revoked, not expired)."""
    return _live(session.get(ReviewerSession, session_id), now or utcnow())


def require_session(session: Session, who: SignedIn, roles: Collection[str] | None = None,
                    now: datetime | None = None) -> None:
    """Refuse (`SessionEnded`) unless `who`'s session is live and belongs to the account, the
    account is active, its role is still the one it signed in with and one of `roles` (when
    given): review.accounts.check.require_account's rule, joined to the session's row. One
    statement, at the start of the write's transaction; on PostgreSQL it share-locks
    the session row until the write commits, so a concurrent revocation waits for it (SQLite's
    BEGIN IMMEDIATE serialises writers already)."""
    if roles is not None and who.role not in roles:
        raise SessionEnded(SIGNED_OUT)
    now = now or utcnow()
    if who.session_id is None:
        ok = session.scalar(select(User.id).where(User.id == who.user_id, User.active.is_(True),
                                                  User.role == who.role))
    else:
        ok = session.scalar(
            select(ReviewerSession.id).join(User, User.id == ReviewerSession.user_id)
            .where(ReviewerSession.id == who.session_id, ReviewerSession.user_id == who.user_id,
                   ReviewerSession.revoked_at.is_(None), ReviewerSession.expires_at > now,
                   User.active.is_(True), User.role == who.role)
            .with_for_update(read=True, of=ReviewerSession))
    if ok is None:
        raise SessionEnded(SIGNED_OUT)


def revoke(session: Session, session_id: int) -> None:
    """End one session (logout)."""
    session.execute(update(ReviewerSession).where(ReviewerSession.id == session_id,
                                                  ReviewerSession.revoked_at.is_(None))
                    .values(revoked_at=utcnow()))


def revoke_token(session: Session, token: str) -> None:
    """End the session a cookie names (the logout route, which knows only the cookie)."""
    if token and len(token) <= MAX_TOKEN:
        session.execute(update(ReviewerSession).where(ReviewerSession.token_hash == _digest(token),
                                                      ReviewerSession.revoked_at.is_(None))
                        .values(revoked_at=utcnow()))


def revoke_all(session: Session, user_id: int) -> int:
    """End every session of an account (logout, role change, password reset, deactivation); how
    many were open. On PostgreSQL it waits for writes under way in those sessions to commit."""
    result = session.execute(update(ReviewerSession).where(ReviewerSession.user_id == user_id,
                                                           ReviewerSession.revoked_at.is_(None))
                             .values(revoked_at=utcnow()))
    return rows_changed(result)
