"""The account check, once: whether the account a write is made for exists, is active and has a
role the write needs. Labeling's entry points (claim, submit, skip, undo, reopen, drafts, QA
verdicts, settlements) and the sign-in's re-check call it, so a missing, deactivated or wrong-role
account is refused the same way everywhere: `AccountRefused`, nothing written.

Two copies state the same rule in SQL, in statements that read more than the account (one round
trip on the Rate page): review.accounts.sessions.require_session (the browser session's row joined
to its account) and review.labeling.hotpath (the claim's and submit's `u.active`, and the submit's
`u.role`); the ORM claim reads the flag with the reviewer's cohort row and passes it to
`check_account`.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import User
from review.errors import ReviewError
from review.policy import ROLE_WORDS

INACTIVE = "Your account is deactivated (or was removed), so nothing was recorded. Ask an admin."


class AccountRefused(ReviewError):
    """The account is missing, deactivated or lacks a role the write needs: nothing was written."""


def role_words(roles: Collection[str]) -> str:
    """The roles in words, in their given order: "QA reviewers and admins"."""
    words = [ROLE_WORDS.get(r, r) for r in roles]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def check_account(active: bool | None, role: str | None, roles: Collection[str] | None = None,
                  action: str = "do this") -> None:
    """The rule on an account's values already read (`active` None: no such account): refuse
    (`AccountRefused`) unless it is active and, when `roles` is given, its role is one of them."""
    if not active:
        raise AccountRefused(INACTIVE)
    if roles is not None and role not in roles:
        raise AccountRefused(f"Only {role_words(roles)} can {action}; nothing was recorded.")


def require_account(session: Session, user_id: int, roles: Collection[str] | None = None, *,
                    action: str = "do this") -> None:
    """Refuse (`AccountRefused`) unless account `user_id` exists, is active and, with `roles`,
    has one of them; `action` completes "Only ... can" in the refusal. One small read, in the
    caller's transaction."""
    row = session.execute(select(User.active, User.role).where(User.id == user_id)).first()
    active, role = row if row is not None else (None, None)
    check_account(active, role, roles, action)
