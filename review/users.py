"""Accounts: argon2 password hashes, roles, deactivation, and login rate limiting.

Throttling is per (account, client address): after FREE_FAILURES wrong passwords from one client,
that client waits BACKOFF_START, doubling with each further failure up to BACKOFF_MAX; other
clients can still log in, so nobody can lock an account (the admin's included) for everyone. An
admin's unlock or password reset clears the count. Every field has a length limit, checked before
anything is hashed or written (a 1 MB password would cost seconds of argon2).
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from db.models import ROLES, LoginAttempt, User, utcnow
from review.errors import ReviewError
from review.labeling.audit import record
from review.sessions import revoke_all

_hasher = PasswordHasher()
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{1,63}$")
MIN_PASSWORD = 8
MAX_USERNAME = 64
MAX_DISPLAY_NAME = 128
MAX_PASSWORD = 256
MAX_CLIENT = 64
FREE_FAILURES = 5
BACKOFF_START = timedelta(seconds=30)
BACKOFF_MAX = timedelta(minutes=15)
FAILURE_WINDOW = timedelta(hours=1)  # failures older than this are forgotten


class UserError(ReviewError):
    """A user-management request that cannot be carried out; the message says why."""


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_length(value: str, limit: int, what: str) -> None:
    """Refuse an over-long field before it is hashed or written."""
    if len(value) > limit:
        raise UserError(f"The {what} is {len(value):,} characters; the limit is {limit}.")


def _check_password(password: str) -> None:
    check_length(password, MAX_PASSWORD, "password")
    if len(password) < MIN_PASSWORD:
        raise UserError(f"The password must have at least {MIN_PASSWORD} characters.")


def add_user(
    session: Session, username: str, password: str, role: str, display_name: str = "",
    *, actor_id: int | None = None, actor: str = "",
) -> User:
    """Create an account (audited; `actor_id` is the admin who did it, None from the CLI)."""
    username = username.strip().lower()
    check_length(username, MAX_USERNAME, "username")
    check_length(display_name, MAX_DISPLAY_NAME, "display name")
    if not USERNAME_RE.match(username):
        raise UserError(
            f"Username {username!r} is not valid: use 2-64 lowercase letters, digits, '.', '_' or '-'."
        )
    if role not in ROLES:
        raise UserError(f"Role {role!r} is not one of: {', '.join(ROLES)}.")
    _check_password(password)
    if session.scalar(select(User).where(User.username == username)) is not None:
        raise UserError(f"User {username!r} already exists.")
    user = User(
        username=username,
        role=role,
        display_name=display_name or username,
        password_hash=hash_password(password),
        active=True,
    )
    session.add(user)
    session.flush()
    record(session, "user.create", actor_id=actor_id, actor=actor, target=username, role=role)
    return user


def get_user(session: Session, username: str) -> User:
    check_length(username.strip(), MAX_USERNAME, "username")
    user = session.scalar(select(User).where(User.username == username.strip().lower()))
    if user is None:
        raise UserError(f"No user named {username!r}.")
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.role, User.username)))


def still_active(session: Session, user_id: int, role: str) -> bool:
    """Whether a signed-in account still exists, is active and has the role it signed in with."""
    user = session.get(User, user_id)
    return user is not None and user.active and user.role == role


def set_active(session: Session, username: str, active: bool, *, actor_id: int | None = None,
               actor: str = "") -> User:
    """Deactivate or reactivate an account (audited)."""
    user = get_user(session, username)
    user.active = active
    if not active:
        revoke_all(session, user.id)  # every signed-in browser of the account stops now
    record(session, "user.activate" if active else "user.deactivate", actor_id=actor_id, actor=actor,
           target=user.username)
    return user


def set_role(session: Session, username: str, role: str, *, actor_id: int | None = None,
             actor: str = "") -> User:
    """Change an account's role (audited). The last active admin keeps the role, so the lab is
    never left without anyone who can manage it; the account's open sessions end, so the new
    role applies from its next sign-in."""
    if role not in ROLES:
        raise UserError(f"Role {role!r} is not one of: {', '.join(ROLES)}.")
    user = get_user(session, username)
    if user.role == role:
        return user
    if user.role == "admin" and user.active and not session.scalar(
            select(func.count()).select_from(User)
            .where(User.role == "admin", User.active.is_(True), User.id != user.id)):
        raise UserError(f"{user.username!r} is the last active admin and stays one; make another "
                        "account admin first.")
    old, user.role = user.role, role
    revoke_all(session, user.id)
    record(session, "user.role", actor_id=actor_id, actor=actor, target=user.username, role=role,
           previous=old)
    return user


def reset_password(session: Session, username: str, password: str, *, actor_id: int | None = None,
                   actor: str = "") -> User:
    """Set a new password (audited, the password itself never)."""
    _check_password(password)
    user = get_user(session, username)
    user.password_hash = hash_password(password)
    user.login_cleared_at = utcnow()  # a reset also unlocks, and ends the account's sessions
    revoke_all(session, user.id)
    record(session, "user.password_reset", actor_id=actor_id, actor=actor, target=user.username)
    return user


def unlock(session: Session, username: str) -> User:
    """Forget the account's failed logins, from every client (an admin's explicit unlock)."""
    user = get_user(session, username)
    user.login_cleared_at = utcnow()
    return user


class LoginRefused(ReviewError):
    """Wrong credentials, inactive account, or too many recent failures."""


def recent_failures(session: Session, username: str, client: str, now: datetime | None = None
                    ) -> tuple[int, datetime | None]:
    """Failed logins for this account from this client since its last success, an unlock or a
    reset (within FAILURE_WINDOW), and when the latest was."""
    now = now or utcnow()
    since = now - FAILURE_WINDOW
    cleared = session.scalar(select(User.login_cleared_at).where(User.username == username))
    last_ok = session.scalar(select(func.max(LoginAttempt.at)).where(
        LoginAttempt.username == username, LoginAttempt.client == client, LoginAttempt.succeeded.is_(True)))
    for ts in (cleared, last_ok):
        if ts is not None:
            since = max(since, _aware(ts))
    count, last = session.execute(
        select(func.count(), func.max(LoginAttempt.at)).where(
            LoginAttempt.username == username, LoginAttempt.client == client,
            LoginAttempt.succeeded.is_(False), LoginAttempt.at > since)).one()
    return count or 0, _aware(last) if last is not None else None


def _aware(ts: datetime) -> datetime:
    """SQLite returns naive datetimes; they are stored in UTC."""
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=utcnow().tzinfo)


def backoff(failures: int) -> timedelta:
    """How long a client waits after `failures` wrong passwords in a row (0 for the first few)."""
    if failures < FREE_FAILURES:
        return timedelta(0)
    return min(BACKOFF_MAX, BACKOFF_START * 2 ** (failures - FREE_FAILURES))


def authenticate(sessions: sessionmaker[Session], username: str, password: str, client: str = "",
                 now: datetime | None = None) -> User:
    """Return the user or raise LoginRefused; every try is committed for rate limiting, per
    (account, client address)."""
    username = username.strip().lower()
    if len(username) > MAX_USERNAME or len(password) > MAX_PASSWORD:
        raise LoginRefused(f"Usernames have at most {MAX_USERNAME} characters and passwords at most "
                           f"{MAX_PASSWORD}.")
    client = (client or "local")[:MAX_CLIENT]
    now = now or utcnow()
    # 1. The throttle check and a failed attempt, committed before the slow hash: parallel guesses
    # each count at once, and the process's write queue is not held while argon2 runs.
    with sessions() as session, session.begin():
        failures, last = recent_failures(session, username, client, now)
        wait = backoff(failures)
        if last is not None and now < last + wait:
            seconds = math.ceil((last + wait - now).total_seconds())
            raise LoginRefused(
                f"Too many failed logins for this account from your address. Wait {seconds} s and "
                "try again, or ask an admin to unlock the account or reset your password.")
        user = session.scalar(select(User).where(User.username == username))
        stored = user.password_hash if user is not None and user.active else None
        attempt = LoginAttempt(username=username, succeeded=False, client=client, at=now)
        session.add(attempt)
        session.flush()
        attempt_id, user_id = attempt.id, user.id if user is not None else None
    ok = False
    if stored is not None:
        try:
            ok = _hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            ok = False
    # 2. The outcome.
    with sessions() as session, session.begin():
        record(session, "login" if ok else "login_failed", actor_id=user_id, actor=username)
        if ok:
            session.get(LoginAttempt, attempt_id).succeeded = True
            user = session.get(User, user_id)
            if _hasher.check_needs_rehash(user.password_hash):
                user.password_hash = hash_password(password)
            user.last_login_at = now
            session.flush()
            session.expunge(user)
            return user
    raise LoginRefused("Unknown username or wrong password (or the account is deactivated).")
