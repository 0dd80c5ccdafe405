"""Accounts: argon2 password hashes, roles, deactivation, and login rate limiting."""

from __future__ import annotations

import re
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from db.models import ROLES, LoginAttempt, User, utcnow
from review.errors import ReviewError

_hasher = PasswordHasher()
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{1,63}$")
MIN_PASSWORD = 8
MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=10)


class UserError(ReviewError):
    """A user-management request that cannot be carried out; the message says why."""


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def add_user(
    session: Session, username: str, password: str, role: str, display_name: str = ""
) -> User:
    username = username.strip().lower()
    if not USERNAME_RE.match(username):
        raise UserError(
            f"Username {username!r} is not valid: use 2-64 lowercase letters, digits, '.', '_' or '-'."
        )
    if role not in ROLES:
        raise UserError(f"Role {role!r} is not one of: {', '.join(ROLES)}.")
    if len(password) < MIN_PASSWORD:
        raise UserError(f"The password must have at least {MIN_PASSWORD} characters.")
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
    return user


def get_user(session: Session, username: str) -> User:
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


def set_active(session: Session, username: str, active: bool) -> User:
    user = get_user(session, username)
    user.active = active
    return user


def reset_password(session: Session, username: str, password: str) -> User:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"The password must have at least {MIN_PASSWORD} characters.")
    user = get_user(session, username)
    user.password_hash = hash_password(password)
    return user


class LoginRefused(ReviewError):
    """Wrong credentials, inactive account, or too many recent failures."""


def recent_failures(session: Session, username: str) -> int:
    since = utcnow() - FAILURE_WINDOW
    return session.scalar(
        select(func.count())
        .select_from(LoginAttempt)
        .where(
            LoginAttempt.username == username,
            LoginAttempt.succeeded.is_(False),
            LoginAttempt.at >= since,
        )
    ) or 0


def authenticate(sessions: sessionmaker[Session], username: str, password: str) -> User:
    """Return the user or raise LoginRefused; every try is committed for rate limiting."""
    username = username.strip().lower()
    with sessions() as session, session.begin():
        if recent_failures(session, username) >= MAX_FAILURES:
            minutes = int(FAILURE_WINDOW.total_seconds() // 60)
            raise LoginRefused(
                f"Too many failed logins for this account. Wait {minutes} minutes and try "
                "again, or ask an admin to reset your password."
            )
        user = session.scalar(select(User).where(User.username == username))
        ok = False
        if user is not None and user.active:
            try:
                ok = _hasher.verify(user.password_hash, password)
            except (VerificationError, InvalidHashError):
                ok = False
        session.add(LoginAttempt(username=username, succeeded=ok))
        if ok:
            if _hasher.check_needs_rehash(user.password_hash):
                user.password_hash = hash_password(password)
            user.last_login_at = utcnow()
            session.flush()
            session.expunge(user)
            return user
    raise LoginRefused("Unknown username or wrong password (or the account is deactivated).")
