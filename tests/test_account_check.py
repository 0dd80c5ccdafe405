"""The account floor (review.accounts). The account check, once (review.accounts.check): every
labeling entry point refuses a missing, deactivated or wrong-role account the same way
(`AccountRefused`, nothing written), on SQLite and on PostgreSQL (where claims and submits try the
hot path first). One way to make any account (review.accounts.users): no module outside the
package builds a `User` row, and raters who never sign in pass every account's rules."""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from db.engine import make_session_factory
from db.models import Assignment, AuditEntry, ItemSettlement, QAVerdict, Rating, RatingDraft, Study, User
from review.accounts.check import INACTIVE, AccountRefused, require_account, role_words
from review.accounts.sessions import SignedIn
from review.accounts.users import (
    MAX_DISPLAY_NAME,
    MAX_USERNAME,
    NO_LOGIN,
    LoginRefused,
    UserError,
    account_kind,
    add_user,
    authenticate,
    rater_account,
    set_active,
    still_active,
)
from review.labeling import qa
from review.labeling.assignment import claim_next, next_assignment
from review.labeling.disagreements import SETTLER_ROLES, settle_item
from review.labeling.drafts import Draft, save_draft
from review.labeling.ratings import Submission, reopen, skip, submit, undo_last
from tests.support import PASSWORD, make_study

MISSING = 999_999


@dataclass
class World:
    """A study with one rated item and one leased item of reviewer `a`, and a QA account."""

    sessions: sessionmaker[Session]
    study: int
    a: int
    qa_user: int
    leased: int  # a's live lease
    done: int  # a's finished assignment
    rating: int  # a's rating on it
    item: int


@pytest.fixture
def world(engine) -> World:
    sessions = make_session_factory(engine)
    with sessions() as s, s.begin():
        made = make_study(s, 4, raters_per_item=1, n_reviewers=1, name="acc")
        study, a = made.study.id, made.reviewers[0].id
        quinn = User(username="acc-quinn", role="qa", password_hash="x")
        s.add(quinn)
        s.flush()
        quinn = quinn.id
    with sessions() as s, s.begin():
        first = next_assignment(s, s.get(Study, study), a)
        rating = submit(s, first.assignment_id, a, Submission(4))
        rating_id, item = rating.id, rating.item_id
    with sessions() as s, s.begin():
        leased = next_assignment(s, s.get(Study, study), a).assignment_id
    return World(sessions, study, a, quinn, leased, first.assignment_id, rating_id, item)


#: Every labeling entry point that writes for an account: (name, call(session, world, user id,
#: signed)). `signed` is a browser session's SignedIn, or None for callers without one.
Call = Callable[[Session, World, int, SignedIn | None], object]
RATER_CALLS: dict[str, Call] = {
    "claim": lambda s, w, uid, signed: next_assignment(s, s.get(Study, w.study), uid),
    "claim by id": lambda s, w, uid, signed: claim_next(s, w.study, uid),
    "submit": lambda s, w, uid, signed: submit(s, w.leased, uid, Submission(3), signed=signed),
    "skip": lambda s, w, uid, signed: skip(s, w.leased, uid, "cannot judge", signed=signed),
    "undo": lambda s, w, uid, signed: undo_last(s, s.get(Study, w.study), uid, signed=signed),
    "reopen": lambda s, w, uid, signed: reopen(s, s.get(Study, w.study), uid, w.done, signed=signed),
    "save draft": lambda s, w, uid, signed: save_draft(s, w.leased, uid, Draft(3, (), "so far")),
}
#: The rater writes that take a browser session (the page checks it before a claim or a draft).
SIGNED = ("submit", "skip", "undo", "reopen")
JUDGE_CALLS: dict[str, Call] = {
    "QA accept": lambda s, w, uid, signed: qa.accept(s, w.rating, uid),
    "QA correct": lambda s, w, uid, signed: qa.correct(s, w.rating, uid, 2, "why"),
    "settle": lambda s, w, uid, signed: settle_item(s, w.item, uid, note="agreed"),
}
WRITTEN = (Assignment, Rating, RatingDraft, QAVerdict, ItemSettlement, AuditEntry)


def _counts(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions() as s:
        return {m.__name__: s.scalar(select(func.count()).select_from(m)) for m in WRITTEN}


def _refused(w: World, call: Call, uid: int, signed: SignedIn | None = None) -> str:
    """The refusal's message; asserts it is an AccountRefused and that nothing was written."""
    before = _counts(w.sessions)
    with pytest.raises(AccountRefused) as refusal, w.sessions() as s, s.begin():
        call(s, w, uid, signed)
    assert _counts(w.sessions) == before
    return str(refusal.value)


@pytest.mark.parametrize("name", [*RATER_CALLS, *JUDGE_CALLS])
def test_a_missing_or_deactivated_account_is_refused_the_same_way_everywhere(world, name):
    call, who = (JUDGE_CALLS[name], world.qa_user) if name in JUDGE_CALLS else (RATER_CALLS[name], world.a)
    assert _refused(world, call, MISSING) == INACTIVE
    with world.sessions() as s, s.begin():
        set_active(s, s.get(User, who).username, False)
    assert _refused(world, call, who) == INACTIVE


@pytest.mark.parametrize("name", JUDGE_CALLS)
def test_a_role_that_may_not_judge_is_refused_with_the_roles_that_may(world, name):
    message = _refused(world, JUDGE_CALLS[name], world.a)  # a reviewer
    roles, action = (SETTLER_ROLES, "settle items") if name == "settle" else (qa.QA_ROLES, "give QA verdicts")
    assert message == f"Only {role_words(roles)} can {action}; nothing was recorded."


@pytest.mark.parametrize("name", SIGNED)
def test_a_browser_signed_in_with_a_role_that_does_not_rate_is_refused_as_an_account(world, name):
    _refused(world, RATER_CALLS[name], world.qa_user, SignedIn(world.qa_user, "qa", None))


def test_the_rule_itself_and_the_sign_in_recheck_agree(world):
    with world.sessions() as s, s.begin():
        require_account(s, world.a)
        require_account(s, world.a, ("reviewer", "admin"), action="rate")
        with pytest.raises(AccountRefused, match=r"^Only admins can manage accounts; nothing"):
            require_account(s, world.a, ("admin",), action="manage accounts")
        assert still_active(s, world.a, "reviewer") and not still_active(s, world.a, "qa")
        assert not still_active(s, MISSING, "reviewer")
        set_active(s, s.get(User, world.a).username, False)
        assert not still_active(s, world.a, "reviewer")


def user_rows_built(source: str) -> list[int]:
    """The lines of `source` that call `User(...)` (or `models.User(...)`): building an account row."""
    return [node.lineno for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call) and (
        (isinstance(node.func, ast.Name) and node.func.id == "User")
        or (isinstance(node.func, ast.Attribute) and node.func.attr == "User"))]


def test_no_module_outside_accounts_builds_a_user_row():
    """One way to make any account (review.accounts.users: add_user, rater_account), so every
    account passes the same limits and name rules."""
    root = Path(__file__).resolve().parent.parent / "review"
    found = {str(path.relative_to(root.parent)): lines for path in sorted(root.rglob("*.py"))
             if "accounts" not in path.relative_to(root).parts[:1]
             and (lines := user_rows_built(path.read_text(encoding="utf-8")))}
    assert found == {}
    planted = "from db.models import User\n\ndef make(s):\n    s.add(User(username='x', role='qa'))\n"
    assert user_rows_built(planted) == [4]
    assert user_rows_built("import db.models as m\nm.User(username='x')\n") == [2]
    assert user_rows_built("user = session.get(User, 1)\nSessionUser(1, 'x')\n") == []


def test_raters_who_never_sign_in_are_made_under_every_account_rule(lab):
    """Simulated and imported raters come from rater_account: the limits and name rules of
    add_user, no password that can match, inactive, and one kind per name."""
    with lab.sessions() as s, s.begin():
        sim = rater_account(s, "Sim-1-001", "Simulated rater 1", kind="simulated")
        assert (sim.username, sim.simulated, sim.active, account_kind(sim)) == ("sim-1-001", True, False,
                                                                              "simulated")
        assert rater_account(s, "sim-1-001", "again", kind="simulated").id == sim.id
        ext = rater_account(s, "ext-1-ann", "Ann", kind="imported")
        assert (ext.password_hash, ext.active, account_kind(ext)) == (NO_LOGIN, False, "imported")
        person = add_user(s, "ext-1-bob", PASSWORD, "reviewer")
        assert account_kind(person) == "person"
        for username, name, kind, message in [
            ("ext-1-bob", "Bob", "imported", "is a person's account, not an imported file's rater"),
            ("sim-1-001", "x", "imported", "is a simulated rater, not an imported file's rater"),
            ("ext-1-cy", "C" * (MAX_DISPLAY_NAME + 1), "imported", "display name is 129 characters"),
            ("x" * (MAX_USERNAME + 1), "x", "simulated", "username is 65 characters"),
            ("-bad name", "x", "simulated", "is not valid"),
            ("ext-1-dee", "Dee", "person", "Kind 'person' is not one of"),
        ]:
            with pytest.raises(UserError, match=message):
                rater_account(s, username, name, kind=kind)
    with pytest.raises(LoginRefused):
        authenticate(lab.sessions, "ext-1-ann", "!")
