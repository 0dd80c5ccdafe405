"""The reviewer's bench (issue 12), in the domain, on both databases: sessions that survive a
reload and end everywhere, login throttling per (account, client), length limits, server-side
drafts, undo as a one-step correction, and a deactivated account that can no longer write."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import DataError, IntegrityError

from db.engine import make_session_factory
from db.models import Assignment, LoginAttempt, QAVerdict, Rating, RatingDraft, Study, User, utcnow
from review.accounts.check import AccountRefused
from review.accounts.sessions import exchange_handoff, is_live, resume, start_session
from review.accounts.users import (
    BACKOFF_START,
    FREE_FAILURES,
    LoginRefused,
    UserError,
    add_user,
    authenticate,
    backoff,
    reset_password,
    set_active,
    unlock,
)
from review.labeling.assignment import next_assignment
from review.labeling.drafts import Draft, load_draft, save_draft
from review.labeling.ratings import RatingError, Submission, reopen, skip, submit, undo_last
from review.labeling.views import recent_answers
from tests.support import make_study


@pytest.fixture
def sessions(engine):  # noqa: ANN001, ANN201
    return make_session_factory(engine)


@pytest.fixture
def world(sessions):  # noqa: ANN001, ANN201
    """Five single-rater items and two reviewers (ids a, b) on the `engine` database."""
    with sessions() as s, s.begin():
        made = make_study(s, 5, raters_per_item=1, n_reviewers=2)
        return sessions, made.study.id, made.reviewers[0].id, made.reviewers[1].id


def _lease(sessions, study_id: int, uid: int, now=None):  # noqa: ANN001, ANN202
    with sessions() as s, s.begin():
        return next_assignment(s, s.get(Study, study_id), uid, now)


def _rate(sessions, study_id: int, uid: int, score: int, now=None):  # noqa: ANN001, ANN202
    lease = _lease(sessions, study_id, uid, now)
    with sessions() as s, s.begin():
        submit(s, lease.assignment_id, uid, Submission(score), now)
    return lease


def _undo(sessions, study_id: int, uid: int):  # noqa: ANN001, ANN202
    with sessions() as s, s.begin():
        back = undo_last(s, s.get(Study, study_id), uid)
        return back.id if back is not None else None


# ----------------------------------------------------------------------------- sessions


def test_a_session_resumes_from_its_cookie_until_revoked_everywhere(sessions):
    with sessions() as s, s.begin():
        uid = add_user(s, "rita", "long enough", "reviewer").id
        first, code = start_session(s, uid)
        second, code2 = start_session(s, uid)  # a second browser
    with sessions() as s, s.begin():
        token = exchange_handoff(s, code)
        assert token is not None and exchange_handoff(s, code) is None  # the code works once
        token2 = exchange_handoff(s, code2)
    with sessions() as s:
        assert resume(s, token)[0] == first and resume(s, token2)[0] == second
        assert resume(s, "forged") is None and resume(s, "x" * 5000) is None
        from db.models import ReviewerSession
        stored = s.scalars(select(ReviewerSession.token_hash)).all()
        assert token not in stored and code not in stored  # only hashes are kept
    with sessions() as s, s.begin():
        set_active(s, "rita", False)  # deactivation ends every open session
    with sessions() as s:
        assert resume(s, token) is None and not is_live(s, first) and not is_live(s, second)


def test_a_handoff_code_expires_and_a_session_expires(sessions):
    with sessions() as s, s.begin():
        uid = add_user(s, "sam", "long enough", "reviewer").id
        _sid, code = start_session(s, uid)
        assert exchange_handoff(s, code, now=utcnow() + timedelta(minutes=2)) is None
        _sid, code = start_session(s, uid)
        token = exchange_handoff(s, code)
        assert resume(s, token, now=utcnow() + timedelta(days=8)) is None
        assert resume(s, token) is not None


def test_a_password_reset_ends_the_sessions(sessions):
    with sessions() as s, s.begin():
        uid = add_user(s, "tom", "long enough", "reviewer").id
        sid, code = start_session(s, uid)
        exchange_handoff(s, code)
        reset_password(s, "tom", "another password")
        assert not is_live(s, sid)


# ----------------------------------------------------------------------------- throttling, limits


def test_wrong_passwords_throttle_one_client_not_the_account(sessions):
    with sessions() as s, s.begin():
        add_user(s, "admin", "right password", "admin")
    t0 = utcnow()
    for i in range(FREE_FAILURES):
        with pytest.raises(LoginRefused, match="wrong password"):
            authenticate(sessions, "admin", "guess guess", client="10.0.0.66", now=t0 + timedelta(seconds=i))
    last = t0 + timedelta(seconds=FREE_FAILURES - 1)
    with pytest.raises(LoginRefused, match=r"from your address. Wait 30 s"):
        authenticate(sessions, "admin", "right password", client="10.0.0.66", now=last)
    # The admin at another address is not locked out by the anonymous attacker.
    assert authenticate(sessions, "admin", "right password", client="10.0.0.1", now=last).username == "admin"
    # The backoff doubles with each further failure: 30 s, 60 s, 120 s ... up to 15 minutes.
    assert [backoff(n).total_seconds() for n in (4, 5, 6, 7, 20)] == [0, 30, 60, 120, 900]
    later = last + BACKOFF_START + timedelta(seconds=1)
    with pytest.raises(LoginRefused, match="wrong password"):
        authenticate(sessions, "admin", "guess guess", client="10.0.0.66", now=later)
    with pytest.raises(LoginRefused, match="Wait 60 s"):
        authenticate(sessions, "admin", "right password", client="10.0.0.66", now=later)


def test_an_unlock_or_a_reset_clears_the_failures(sessions):
    with sessions() as s, s.begin():
        add_user(s, "ula", "right password", "reviewer")
    t0 = utcnow() - timedelta(minutes=1)
    for i in range(FREE_FAILURES + 2):
        with pytest.raises(LoginRefused):
            authenticate(sessions, "ula", "guess guess", client="c", now=t0 + timedelta(seconds=i))
    with sessions() as s, s.begin():
        unlock(s, "ula")
    assert authenticate(sessions, "ula", "right password", client="c").username == "ula"
    for _ in range(FREE_FAILURES):
        with pytest.raises(LoginRefused):
            authenticate(sessions, "ula", "guess guess", client="c")
    with sessions() as s, s.begin():
        reset_password(s, "ula", "a new password")
    assert authenticate(sessions, "ula", "a new password", client="c").username == "ula"


def test_over_long_fields_are_refused_before_hashing(sessions):
    with sessions() as s, s.begin():
        add_user(s, "vic", "long enough", "reviewer")
    started = time.perf_counter()
    with pytest.raises(LoginRefused, match="passwords at most 256"):
        authenticate(sessions, "vic", "x" * 1_000_000)
    with pytest.raises(LoginRefused, match="Usernames have at most 64"):
        authenticate(sessions, "u" * 5000, "long enough")
    with sessions() as s, s.begin():
        with pytest.raises(UserError, match="username is 5,000 characters; the limit is 64"):
            add_user(s, "u" * 5000, "long enough", "reviewer")
        with pytest.raises(UserError, match="password is 1,000,000 characters; the limit is 256"):
            add_user(s, "ok", "x" * 1_000_000, "reviewer")
        with pytest.raises(UserError, match="display name is 300 characters; the limit is 128"):
            add_user(s, "ok", "long enough", "reviewer", display_name="d" * 300)
        with pytest.raises(UserError, match="limit is 256"):
            reset_password(s, "vic", "x" * 1_000_000)
    assert time.perf_counter() - started < 0.5  # nothing was hashed (a 1 MB password takes seconds)
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(User)) == 1  # nothing else was written
        assert s.scalar(select(func.count()).select_from(LoginAttempt)) == 0


def test_the_schema_refuses_an_over_long_username(sessions):
    """SQLite does not enforce VARCHAR lengths: migration 0009's trigger does."""
    with pytest.raises((IntegrityError, DataError)), sessions() as s, s.begin():
        s.add(User(username="u" * 5000, role="reviewer", password_hash="x"))


# ----------------------------------------------------------------------------- drafts


def test_a_draft_is_kept_whole_server_side_and_dropped_on_submit(world):
    sessions, study_id, a, _b = world
    lease = _lease(sessions, study_id, a)
    comment = "the left eye is different; " * 45  # 1,215 characters
    with sessions() as s, s.begin():
        save_draft(s, lease.assignment_id, a, Draft(4, ("artifacts",), comment))
    with sessions() as s:
        assert load_draft(s, lease.assignment_id, a) == Draft(4, ("artifacts",), comment)
        assert len(comment) == 1215
    with pytest.raises(RatingError, match="2001 characters; the limit is 2000"), sessions() as s, s.begin():
        save_draft(s, lease.assignment_id, a, Draft(None, (), "c" * 2001))
    with pytest.raises(RatingError, match="Pick a score"), sessions() as s, s.begin():
        save_draft(s, lease.assignment_id, a, Draft(99, (), ""))
    with sessions() as s, s.begin():
        submit(s, lease.assignment_id, a, Submission(4, ("artifacts",), comment))
    with sessions() as s:
        assert load_draft(s, lease.assignment_id, a) is None
        assert s.scalar(select(Rating.comment)) == comment.strip()


def test_a_draft_is_only_for_the_reviewers_current_item(world):
    sessions, study_id, a, b = world
    lease = _lease(sessions, study_id, a)
    with pytest.raises(RatingError, match="not yours"), sessions() as s, s.begin():
        save_draft(s, lease.assignment_id, b, Draft(3, (), ""))


# ----------------------------------------------------------------------------- undo and reopen


def test_undo_corrects_only_the_last_answer(world):
    sessions, study_id, a, _b = world
    first = _rate(sessions, study_id, a, 2)
    second = _rate(sessions, study_id, a, 3)
    assert _undo(sessions, study_id, a) == second.assignment_id
    # Pressing Undo again does not walk back to the first rating.
    assert _undo(sessions, study_id, a) == second.assignment_id
    assert _undo(sessions, study_id, a) == second.assignment_id
    with sessions() as s:
        active = dict(s.execute(select(Rating.item_id, Rating.score).where(Rating.active.is_(True))).all())
        assert active == {first.item_id: 2}
        assert load_draft(s, second.assignment_id, a) == Draft(3, (), "")  # the retracted answer
    again = _lease(sessions, study_id, a)
    assert again.assignment_id == second.assignment_id
    with sessions() as s, s.begin():
        submit(s, again.assignment_id, a, Submission(5))
    with sessions() as s:
        assert sorted(s.scalars(select(Rating.score).where(Rating.active.is_(True)))) == [2, 5]


def test_undo_of_a_skip_brings_the_item_back(world):
    sessions, study_id, a, _b = world
    rated = _rate(sessions, study_id, a, 4)
    skipped = _lease(sessions, study_id, a)
    with sessions() as s, s.begin():
        skip(s, skipped.assignment_id, a, "cannot judge")
    assert _undo(sessions, study_id, a) == skipped.assignment_id
    assert _undo(sessions, study_id, a) == skipped.assignment_id  # still that one, not the rating
    back = _lease(sessions, study_id, a)
    assert back.item_id == skipped.item_id
    with sessions() as s, s.begin():
        submit(s, back.assignment_id, a, Submission(2))
    with sessions() as s:
        assert s.get(Assignment, skipped.assignment_id).status == "done"
        assert sorted(s.scalars(select(Rating.item_id).where(Rating.active.is_(True)))) == \
            sorted([rated.item_id, skipped.item_id])


def test_a_rating_qa_judged_is_not_withdrawn_by_its_author(world):
    sessions, study_id, a, b = world
    lease = _rate(sessions, study_id, a, 4)
    with sessions() as s, s.begin():
        rid = s.scalar(select(Rating.id))
        s.add(QAVerdict(rating_id=rid, qa_user_id=b, verdict="accept"))
    with pytest.raises(RatingError, match="QA has already judged"), sessions() as s, s.begin():
        undo_last(s, s.get(Study, study_id), a)
    with sessions() as s:
        assert s.get(Rating, rid).active
        entry = recent_answers(s, study_id, a)[0]
        assert (entry.assignment_id, entry.score, entry.judged, entry.qa_verdict) == \
            (lease.assignment_id, 4, True, None)  # the study does not show QA feedback


def test_reopen_an_earlier_item_from_the_history(world):
    sessions, study_id, a, _b = world
    first = _rate(sessions, study_id, a, 2)
    _rate(sessions, study_id, a, 3)
    with sessions() as s:
        assert [e.score for e in recent_answers(s, study_id, a)] == [3, 2]
    with sessions() as s, s.begin():
        assert reopen(s, s.get(Study, study_id), a, first.assignment_id).id == first.assignment_id
    with pytest.raises(RatingError, match="Finish the item you reopened first"), sessions() as s, s.begin():
        reopen(s, s.get(Study, study_id), a, recent_answers(s, study_id, a)[0].assignment_id)
    back = _lease(sessions, study_id, a)
    assert back.assignment_id == first.assignment_id
    with sessions() as s, s.begin():
        rating = submit(s, back.assignment_id, a, Submission(4))
        assert s.get(Rating, rating.supersedes_id).score == 2  # superseding, as before


# ----------------------------------------------------------------------------- deactivation


def test_a_deactivated_reviewer_can_no_longer_write(world):
    sessions, study_id, a, _b = world
    lease = _lease(sessions, study_id, a)
    with sessions() as s, s.begin():
        s.get(User, a).active = False
    for action in (
        lambda s: submit(s, lease.assignment_id, a, Submission(4)),
        lambda s: skip(s, lease.assignment_id, a, "cannot judge"),
        lambda s: undo_last(s, s.get(Study, study_id), a),
        lambda s: next_assignment(s, s.get(Study, study_id), a),
        lambda s: save_draft(s, lease.assignment_id, a, Draft(4, (), "")),
    ):
        with pytest.raises(AccountRefused, match="deactivated"), sessions() as s, s.begin():
            action(s)
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Rating)) == 0
        assert s.scalar(select(func.count()).select_from(RatingDraft)) == 0
