"""Who may do what, declared once: one row per action, naming the roles that may take it.

Everything that grants or refuses access derives from `POLICY`: the app's navigation (a page is
listed for the roles that may take its action, review/ui/app.py), each page's own guard and its
render checks (`review.ui.common.require`), the domain's checks (a QA verdict, a settlement, a
rating's browser session, adding a tried photo to the catalog) and the CLI's role choices (the
`Role` enum). A new role is a member of `Role` (with the migration widening the users table's
CHECK) and its name in the rows of the actions it may take; tests/test_policy.py shows it.
docs/access.md's table is checked against this one (tests/test_policy.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from review.enums import Role


class Action(StrEnum):
    """Something a signed-in user does that not every role may; `what` says it in words (the
    access table of docs/access.md)."""

    what: str

    RATE = "rate", "rate items (the Rate page); these ratings count as a reviewer's"
    STUDY_VIEW = "study.view", "studies and progress per reviewer"
    STUDY_EDIT = "study.edit", "create, edit, close and reopen studies"
    GENERATE = "generate", "plan and run generation jobs, add photos"
    GUIDELINE_EDIT = "guideline.edit", "write guideline versions and assign them"
    GUIDELINE_VIEW = "guideline.view", "read the guideline versions"
    QA_REVIEW = "qa.review", "judge sampled ratings (accept, reject, correct)"
    QA_SAMPLE = "qa.sample", "draw the QA sample, make an item gold"
    DISAGREEMENTS_SETTLE = "disagreements.settle", "settle an item raters disagree on"
    RATERS_NAMED = "raters.named", "see raters by name where others see pseudonyms"
    ANALYSIS_VIEW = "analysis.view", "agreement statistics and exports"
    ANSWER_VIEW = "answer.view", "the study's answer: how far a restorer can go"
    ANSWER_ACCEPT = "answer.accept", "accept a proposed blur level (queues a generation job)"
    TRY_PHOTO = "try_photo.view", "Try your photo, once no rating work is left open to them"
    TRY_PHOTO_ANYTIME = "try_photo.anytime", "Try your photo even with rating work open"
    TRY_PHOTO_ADD = "try_photo.add", "add a tried photo to the catalog"
    USERS_MANAGE = "users.manage", "add users, change roles, reset passwords"
    AUDIT_VIEW = "audit.view", "read and download the audit log"
    PARTICIPATE = "participate", "a crowd participant's flow: consent, checks, training, items"
    POOLS_MANAGE = "pools.manage", "rater pools, recruitment links and cleansing decisions"

    def __new__(cls, value: str, what: str) -> Action:
        member = str.__new__(cls, value)
        member._value_, member.what = value, what
        return member


_ADMIN = frozenset({Role.ADMIN})
_ADMIN_QA = frozenset({Role.ADMIN, Role.QA})

#: action -> the roles that may take it.
POLICY: Mapping[Action, frozenset[str]] = MappingProxyType({
    Action.RATE: frozenset({Role.REVIEWER, Role.ADMIN}),
    Action.STUDY_VIEW: _ADMIN,
    Action.STUDY_EDIT: _ADMIN,
    Action.GENERATE: _ADMIN,
    Action.GUIDELINE_EDIT: _ADMIN,
    Action.GUIDELINE_VIEW: _ADMIN_QA,
    Action.QA_REVIEW: _ADMIN_QA,
    Action.QA_SAMPLE: _ADMIN,
    Action.DISAGREEMENTS_SETTLE: _ADMIN_QA,
    Action.RATERS_NAMED: _ADMIN,
    Action.ANALYSIS_VIEW: _ADMIN,
    Action.ANSWER_VIEW: _ADMIN_QA,
    Action.ANSWER_ACCEPT: _ADMIN,
    Action.TRY_PHOTO: frozenset({Role.ADMIN, Role.QA, Role.REVIEWER}),
    Action.TRY_PHOTO_ANYTIME: _ADMIN_QA,
    Action.TRY_PHOTO_ADD: _ADMIN,
    Action.USERS_MANAGE: _ADMIN,
    Action.AUDIT_VIEW: _ADMIN,
    Action.PARTICIPATE: frozenset({Role.PARTICIPANT}),
    Action.POOLS_MANAGE: _ADMIN,
})

#: The action whose page a role lands on after login; a role not named here lands on the first
#: page of the menu it may open (review/ui/app.py's order).
HOME: Mapping[str, Action] = MappingProxyType({
    Role.ADMIN: Action.STUDY_VIEW,
    Role.REVIEWER: Action.RATE,
    Role.QA: Action.QA_REVIEW,
    Role.PARTICIPANT: Action.PARTICIPATE,
})

#: Roles whose accounts join only through a rater pool's link, never typed in by an admin.
LINK_ONLY: frozenset[str] = frozenset({Role.PARTICIPANT})

#: How refusals and pages name a role's users (a role not named here is called by its name).
ROLE_WORDS: Mapping[str, str] = MappingProxyType({
    Role.ADMIN: "admins", Role.REVIEWER: "reviewers", Role.QA: "QA reviewers",
    Role.PARTICIPANT: "crowd participants"})


def may(role: str, action: Action, policy: Mapping[Action, frozenset[str]] = POLICY) -> bool:
    """Whether a user of `role` may take `action`."""
    return role in policy[action]


def roles_for(action: Action, policy: Mapping[Action, frozenset[str]] = POLICY) -> tuple[str, ...]:
    """The roles that may take `action`, in `Role`'s order (then any other, by name): what a
    guard passes on and a refusal lists."""
    known = [r for r in Role if r in policy[action]]
    return (*known, *sorted(r for r in policy[action] if r not in known))


def typed_roles() -> tuple[str, ...]:
    """The roles an admin may give an account (the Users page, the CLI): all but LINK_ONLY."""
    return tuple(r.value for r in Role if r not in LINK_ONLY)
