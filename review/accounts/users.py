"""Accounts: argon2 password hashes, roles, deactivation, and login rate limiting. Every account
is made here, under one set of limits and name rules: a person's by `add_user`, a rater's who never
signs in (a simulated panel's, an imported file's) by `rater_account`.

Throttling has two levels. Per (account, client address): after FREE_FAILURES wrong passwords
from one address, that address waits BACKOFF_START, doubling with each further failure up to
BACKOFF_MAX, while other addresses can still log in. Per account, whatever the address: after
ACCOUNT_FREE_FAILURES wrong passwords within FAILURE_WINDOW the account's logins pause the same
way, so changing addresses (or forging them) buys no more guesses. The price of that ceiling: an
attacker can keep one account's logins paused (for at most BACKOFF_MAX at a time, never for
good); an admin's unlock or password reset clears both counts. The count and the record of a try
are one transaction serialised per account (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory
lock on the account name), so a burst of parallel guesses reaches the password check exactly
the allowed number of times. The client address is resolved by review.accounts.addresses. Every field
has a length limit, checked before anything is hashed or written (a 1 MB password would cost
seconds of argon2).
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select, true
from sqlalchemy.orm import Session, sessionmaker

from db.models import LoginAttempt, User, utcnow
from db.rows import get_or_create
from review.accounts.audit import record
from review.accounts.check import AccountRefused, require_account
from review.accounts.sessions import revoke_all
from review.enums import Role
from review.errors import ReviewError

_hasher = PasswordHasher()
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{1,63}$")
MIN_PASSWORD = 8
MAX_USERNAME = 64
MAX_DISPLAY_NAME = 128
MAX_PASSWORD = 256
MAX_CLIENT = 64
FREE_FAILURES = 5  # per (account, address)
ACCOUNT_FREE_FAILURES = 20  # per account, from all addresses together
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


def _checked(username: str, role: str, display_name: str) -> str:
    """The username as stored (trimmed, lower case), once it, the display name and the role pass
    the limits every account has, whatever its kind."""
    username = username.strip().lower()
    check_length(username, MAX_USERNAME, "username")
    check_length(display_name, MAX_DISPLAY_NAME, "display name")
    if not USERNAME_RE.match(username):
        raise UserError(
            f"Username {username!r} is not valid: use 2-64 lowercase letters, digits, '.', '_' or '-'."
        )
    if role not in tuple(Role):
        raise UserError(f"Role {role!r} is not one of: {', '.join(Role)}.")
    return username


def _new(username: str, role: str, display_name: str, password_hash: str, *, active: bool,
         simulated: bool = False) -> User:
    """The one place a `User` row is built (tests/test_account_check.py keeps it so)."""
    return User(username=username, role=role, display_name=display_name or username,
                password_hash=password_hash, active=active, simulated=simulated)


def add_user(
    session: Session, username: str, password: str, role: str, display_name: str = "",
    *, actor_id: int | None = None, actor: str = "",
) -> User:
    """Create a person's account (audited; `actor_id` is the admin who did it, None from the CLI)."""
    username = _checked(username, role, display_name)
    _no_typed_participants(role)
    _check_password(password)
    if session.scalar(select(User).where(User.username == username)) is not None:
        raise UserError(f"User {username!r} already exists.")
    user = _new(username, role, display_name, hash_password(password), active=True)
    session.add(user)
    session.flush()
    record(session, "user.create", actor_id=actor_id, actor=actor, target=username, role=role)
    return user


#: The password hash of an account that never signs in: not a valid argon2 hash, so no password
#: matches it (authenticate also refuses the account as inactive).
NO_LOGIN = "!"
#: Who an account stands for: a person who signs in (`add_user`), a simulated panel's rater
#: (review.labeling.simulated_panel) or the rater of an imported ratings file
#: (review.analysis.ratings_import); the last two never sign in (`rater_account`); a crowd
#: participant signs in only through a pool's link (`participant_account`).
ACCOUNT_KINDS = ("person", "simulated", "imported", "participant")
_KIND_WORDS = {"person": "a person's account", "simulated": "a simulated rater",
               "imported": "an imported file's rater", "participant": "a crowd participant"}


def account_kind(user: User) -> str:
    """Which of ACCOUNT_KINDS the account is (told from its row: no column needed)."""
    if user.simulated:
        return "simulated"
    if user.role == Role.PARTICIPANT:
        return "participant"
    return "imported" if user.password_hash == NO_LOGIN else "person"


def rater_account(session: Session, username: str, display_name: str, *, kind: str,
                  role: str = Role.REVIEWER) -> User:
    """The account of a rater who never signs in (`kind` "simulated" or "imported"): the existing
    one of that name and kind, or a new, inactive one with NO_LOGIN, under the limits and name
    rules of every account. An account of that name and another kind is refused (its ratings
    would mix). Not audited: no person can act through it. The insert runs in a savepoint, so two
    imports racing for one name share the winner's row."""
    if kind not in ("simulated", "imported"):
        raise UserError(f"Kind {kind!r} is not one of: simulated, imported.")
    username = _checked(username, role, display_name)
    user, _created = get_or_create(session, User, {"username": username}, lambda: _new(
        username, role, display_name, NO_LOGIN, active=False, simulated=kind == "simulated"))
    if account_kind(user) != kind:
        raise UserError(f"Account {username!r} exists and is {_KIND_WORDS[account_kind(user)]}, not "
                        f"{_KIND_WORDS[kind]}; rename it first.")
    return user


def _no_typed_participants(role: str) -> None:
    if role == Role.PARTICIPANT:
        raise UserError("Crowd participants join through a rater pool's link (Study setup, Pools); "
                        "they are not typed in or made from another account.")


def participant_account(session: Session, username: str, *, simulated: bool = False) -> User:
    """A new crowd participant's account (review.labeling.participants): role participant, active,
    no password (NO_LOGIN: only a pool's link signs it in, through a browser session), under the
    name rules of every account. `simulated` marks a simulated crowd's participant (the demo)."""
    username = _checked(username, Role.PARTICIPANT, "")
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise UserError(f"User {username!r} already exists.")
    user = _new(username, Role.PARTICIPANT, "", NO_LOGIN, active=True, simulated=simulated)
    session.add(user)
    session.flush()
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
    """Whether a signed-in account still exists, is active and has the role it signed in with
    (review.accounts.check's rule)."""
    try:
        require_account(session, user_id, (role,))
    except AccountRefused:
        return False
    return True


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
    _no_typed_participants(role)
    if role not in tuple(Role):
        raise UserError(f"Role {role!r} is not one of: {', '.join(Role)}.")
    user = get_user(session, username)
    if user.role == role:
        return user
    if user.role == Role.ADMIN and user.active and not session.scalar(
            select(func.count()).select_from(User)
            .where(User.role == Role.ADMIN, User.active.is_(True), User.id != user.id)):
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


def recent_failures(session: Session, username: str, client: str | None, now: datetime | None = None
                    ) -> tuple[int, datetime | None]:
    """Failed logins for this account from this client since its last success from it, an unlock
    or a reset (within FAILURE_WINDOW), and when the latest was. With `client` None: from every
    address, since an unlock or a reset (a success elsewhere does not clear them, or a guesser
    would get a fresh allowance each time the owner logs in)."""
    now = now or utcnow()
    since = now - FAILURE_WINDOW
    from_client = LoginAttempt.client == client if client is not None else true()
    cleared = session.scalar(select(User.login_cleared_at).where(User.username == username))
    last_ok = None if client is None else session.scalar(select(func.max(LoginAttempt.at)).where(
        LoginAttempt.username == username, from_client, LoginAttempt.succeeded.is_(True)))
    for ts in (cleared, last_ok):
        if ts is not None:
            since = max(since, _aware(ts))
    count, last = session.execute(
        select(func.count(), func.max(LoginAttempt.at)).where(
            LoginAttempt.username == username, from_client,
            LoginAttempt.succeeded.is_(False), LoginAttempt.at > since)).one()
    return count or 0, _aware(last) if last is not None else None


def _aware(ts: datetime) -> datetime:
    """SQLite returns naive datetimes; they are stored in UTC."""
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=utcnow().tzinfo)


def backoff(failures: int, free: int = FREE_FAILURES) -> timedelta:
    """How long a client (or, with `free`=ACCOUNT_FREE_FAILURES, everyone) waits after `failures`
    wrong passwords (0 for the first `free`)."""
    if failures < free:
        return timedelta(0)
    return min(BACKOFF_MAX, BACKOFF_START * 2 ** min(failures - free, 16))


#: The first key of the PostgreSQL advisory locks that serialise one account's login tries (the
#: second is hashtext(username)); "lgin" in ASCII, so no other lock of the lab's shares it.
LOGIN_LOCK_SPACE = 0x6C67696E


def _serialise_account(session: Session, username: str) -> None:
    """Hold this account's login lock until the transaction ends, so that counting the recent
    failures and recording this try happen for one try at a time. SQLite needs nothing: the write
    transaction began with BEGIN IMMEDIATE, which already excludes every other writer. Any name
    can be locked, existing or not, so an unknown name is throttled the same way (and does not
    tell a guesser which names exist)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(LOGIN_LOCK_SPACE, func.hashtext(username))))


def _throttled(session: Session, username: str, client: str, now: datetime) -> str | None:
    """Why this try must wait (None when it may go ahead): the address's own count first, then
    the account's ceiling over every address."""
    for who, free in ((client, FREE_FAILURES), (None, ACCOUNT_FREE_FAILURES)):
        failures, last = recent_failures(session, username, who, now)
        wait = backoff(failures, free)
        # Below the free count nothing waits, even when a parallel try that read the clock later
        # was recorded first (its `at` is after this try's `now`).
        if last is None or not wait or now >= last + wait:
            continue
        seconds = math.ceil((last + wait - now).total_seconds())
        if who is not None:
            return (f"Too many failed logins for this account from your address. Wait {seconds} s "
                    "and try again, or ask an admin to unlock the account or reset your password.")
        return (f"Too many failed logins for this account from several addresses, so its logins "
                f"are paused for everyone for {seconds} s (this slows down password guessing). "
                "Try again then, or ask an admin to unlock the account.")
    return None


def authenticate(sessions: sessionmaker[Session], username: str, password: str, client: str = "",
                 now: datetime | None = None) -> User:
    """Return the user or raise LoginRefused; every try is committed for rate limiting, per
    (account, client address) and per account (module docstring). `client` is the address
    review.accounts.addresses resolved."""
    username = username.strip().lower()
    if len(username) > MAX_USERNAME or len(password) > MAX_PASSWORD:
        raise LoginRefused(f"Usernames have at most {MAX_USERNAME} characters and passwords at most "
                           f"{MAX_PASSWORD}.")
    client = (client or "local")[:MAX_CLIENT]
    now = now or utcnow()
    # 1. The throttle check and a failed attempt, committed before the slow hash: parallel guesses
    # each count at once, and the process's write queue is not held while argon2 runs.
    with sessions() as session, session.begin():
        _serialise_account(session, username)
        refusal = _throttled(session, username, client, now)
        if refusal is not None:
            raise LoginRefused(refusal)
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
            session.get_one(LoginAttempt, attempt_id).succeeded = True
            user = session.get_one(User, user_id)
            if _hasher.check_needs_rehash(user.password_hash):
                user.password_hash = hash_password(password)
            user.last_login_at = now
            session.flush()
            session.expunge(user)
            return user
    raise LoginRefused("Unknown username or wrong password (or the account is deactivated).")
