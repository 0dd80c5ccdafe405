"""Accounts: argon2 hashes, validation, deactivation, login rate limiting."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from db.models import LoginAttempt, User
from review.users import (
    FREE_FAILURES,
    LoginRefused,
    UserError,
    add_user,
    authenticate,
    reset_password,
    set_active,
)


def test_add_and_authenticate(lab):
    with lab.sessions() as s, s.begin():
        add_user(s, "Alice", "correct horse", "reviewer")
    with lab.sessions() as s:
        stored = s.scalar(select(User))
        assert stored.username == "alice" and stored.password_hash.startswith("$argon2")
        assert "correct horse" not in stored.password_hash
    user = authenticate(lab.sessions, "alice", "correct horse")
    assert user.role == "reviewer" and user.last_login_at is not None


@pytest.mark.parametrize("args, message", [
    (("x", "long enough", "reviewer"), "not valid"),
    (("bob", "short", "reviewer"), "at least 8"),
    (("bob", "long enough", "boss"), "not one of"),
])
def test_invalid_users_refused(lab, args, message):
    with pytest.raises(UserError, match=message), lab.sessions() as s, s.begin():
        add_user(s, *args)


def test_duplicate_username_refused(lab):
    with lab.sessions() as s, s.begin():
        add_user(s, "bob", "long enough", "reviewer")
    with pytest.raises(UserError, match="already exists"), lab.sessions() as s, s.begin():
        add_user(s, "BOB", "long enough", "qa")


def test_wrong_password_and_deactivated_user_refused(lab):
    with lab.sessions() as s, s.begin():
        add_user(s, "carol", "long enough", "qa")
    with pytest.raises(LoginRefused, match="wrong password"):
        authenticate(lab.sessions, "carol", "wrong one!")
    with lab.sessions() as s, s.begin():
        set_active(s, "carol", False)
    with pytest.raises(LoginRefused):
        authenticate(lab.sessions, "carol", "long enough")
    with lab.sessions() as s, s.begin():
        set_active(s, "carol", True)
        reset_password(s, "carol", "a new password")
    assert authenticate(lab.sessions, "carol", "a new password").username == "carol"


@pytest.mark.slow
def test_failed_logins_are_rate_limited_even_with_the_right_password(lab):
    with lab.sessions() as s, s.begin():
        add_user(s, "dave", "long enough", "reviewer")
    for _ in range(FREE_FAILURES):
        with pytest.raises(LoginRefused, match="wrong password"):
            authenticate(lab.sessions, "dave", "guess guess")
    with pytest.raises(LoginRefused, match="Too many failed logins for this account from your address"):
        authenticate(lab.sessions, "dave", "long enough")
    with lab.sessions() as s:
        assert len(s.scalars(select(LoginAttempt)).all()) == FREE_FAILURES


def test_role_changes_keep_one_active_admin(lab):
    from review.users import UserError, add_user, set_active, set_role

    with lab.sessions() as s, s.begin():
        add_user(s, "root", "root-pass-1", "admin")
        add_user(s, "ann", "ann-pass-12", "reviewer")
    with lab.sessions() as s, s.begin(), pytest.raises(UserError, match="'root' is the last active admin"):
        set_role(s, "root", "qa")
    with lab.sessions() as s, s.begin(), pytest.raises(UserError, match="not one of"):
        set_role(s, "ann", "boss")
    with lab.sessions() as s, s.begin():
        assert set_role(s, "ann", "admin").role == "admin"
        set_role(s, "root", "reviewer")  # ann is an active admin now
    with lab.sessions() as s, s.begin():
        set_active(s, "root", False)
        set_role(s, "root", "admin")  # an inactive admin does not count as the lab's admin
    with lab.sessions() as s, s.begin(), pytest.raises(UserError, match="'ann' is the last active admin"):
        set_role(s, "ann", "qa")
    with lab.sessions() as s:
        assert dict(s.execute(select(User.username, User.role)).all()) == {"root": "admin", "ann": "admin"}
