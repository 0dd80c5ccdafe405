"""Signed-in browsers that survive a reload: server-side session rows behind an HttpOnly cookie.

After a login the page gets a one-time handoff code (valid HANDOFF seconds); the browser posts it
to the app's /_lab/session route (review/ui/server.py), which exchanges it for the long random
session token and sets it as an HttpOnly, SameSite=Strict cookie. Only SHA-256 hashes of the code
and the token are stored, so a copy of the database opens no session. A session ends when it
expires (SESSION_LIFETIME after login), on logout, or for every browser of the account at once
when the account is deactivated or its password reset (`revoke_all`).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.models import ReviewerSession, User, utcnow

COOKIE = "lab_session"
SESSION_LIFETIME = timedelta(days=7)
HANDOFF = timedelta(seconds=60)
MAX_TOKEN = 128  # a longer cookie value is not ours: refused before hashing


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
    if row is None or row.revoked_at is not None or _aware(row.handoff_expires_at) <= now:
        return None
    token = secrets.token_urlsafe(32)
    row.token_hash, row.handoff_hash, row.handoff_expires_at = _digest(token), None, None
    session.flush()
    return token


def _live(row: ReviewerSession | None, now: datetime) -> bool:
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
    """End every session of an account (deactivation, password reset); how many were open."""
    result = session.execute(update(ReviewerSession).where(ReviewerSession.user_id == user_id,
                                                           ReviewerSession.revoked_at.is_(None))
                             .values(revoked_at=utcnow()))
    return result.rowcount or 0
