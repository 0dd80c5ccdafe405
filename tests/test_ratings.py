"""Ratings: idempotent submit, undo that supersedes, skip, stale leases, validation."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from db.engine import make_engine, make_session_factory
from db.migrate import upgrade
from db.models import Assignment, Rating, Study, User, utcnow
from review.accounts.sessions import SessionEnded, SignedIn, revoke_all, start_session
from review.accounts.users import reset_password, set_active, set_role
from review.labeling.assignment import next_assignment
from review.labeling.ratings import (
    AlreadyRated,
    RatingError,
    StaleAssignment,
    Submission,
    history,
    reopen,
    skip,
    submit,
    undo_last,
)
from tests.support import make_study, rate_next, statements


@dataclass
class World:
    """A study of six single-rater items and two reviewers."""

    sessions: sessionmaker
    study_id: int
    a: int
    b: int
    gv: int


@pytest.fixture
def world(engine) -> World:
    """On SQLite, then on PostgreSQL, where submits and claims take the hot path (hotpath.py)."""
    sessions = make_session_factory(engine)
    with sessions() as s, s.begin():
        made = make_study(s, 6, raters_per_item=1, n_reviewers=2)
        study, (a, b) = made.study, made.reviewers
        return World(sessions, study.id, a.id, b.id, study.guideline_version_id)


def _lease(sessions, study_id, uid, now=None):
    with sessions() as s, s.begin():
        return next_assignment(s, s.get(Study, study_id), uid, now)


def test_submit_records_score_flags_guideline_and_time(world):
    sessions, study_id, a, gv = world.sessions, world.study_id, world.a, world.gv
    lease = _lease(sessions, study_id, a)
    with sessions() as s, s.begin():
        r = submit(s, lease.assignment_id, a, Submission(4, ("artifacts", "still_blurry"),
                                                         " soft ", 1234, "tok-1"))
        assert (r.score, r.flags, r.comment, r.time_taken_ms, r.guideline_version_id) == \
            (4, ["artifacts", "still_blurry"], "soft", 1234, gv)
        assert s.get(Assignment, lease.assignment_id).status == "done"


def test_double_submit_with_same_token_is_idempotent(world):
    sessions, study_id, a = world.sessions, world.study_id, world.a
    lease = _lease(sessions, study_id, a)
    for _ in range(3):
        with sessions() as s, s.begin():
            submit(s, lease.assignment_id, a, Submission(5, client_token="same"))
    with sessions() as s:
        assert len(s.scalars(select(Rating)).all()) == 1
    with pytest.raises(RatingError, match="already rated"), sessions() as s, s.begin():
        submit(s, lease.assignment_id, a, Submission(2, client_token="other"))


def test_undo_supersedes_and_keeps_history(world):
    sessions, study_id, a = world.sessions, world.study_id, world.a
    lease = _lease(sessions, study_id, a)
    with sessions() as s, s.begin():
        submit(s, lease.assignment_id, a, Submission(2, client_token="t1"))
    _lease(sessions, study_id, a)  # the reviewer moved on to the next item
    with sessions() as s, s.begin():
        back = undo_last(s, s.get(Study, study_id), a)
        assert back.id == lease.assignment_id
    again = _lease(sessions, study_id, a)
    assert again.assignment_id == lease.assignment_id  # the undone item comes back first
    with sessions() as s, s.begin():
        submit(s, again.assignment_id, a, Submission(4, client_token="t2"))
    with sessions() as s:
        rows = history(s, lease.item_id, a)
        assert [(r.score, r.active) for r in rows] == [(2, False), (4, True)]
        assert rows[1].supersedes_id == rows[0].id


def test_undo_with_nothing_to_undo(world):
    sessions, study_id, a = world.sessions, world.study_id, world.a
    with sessions() as s, s.begin():
        assert undo_last(s, s.get(Study, study_id), a) is None


def test_skip_hands_the_item_to_someone_else(world):
    sessions, study_id, a, b = world.sessions, world.study_id, world.a, world.b
    lease = _lease(sessions, study_id, a)
    with pytest.raises(RatingError), sessions() as s, s.begin():
        skip(s, lease.assignment_id, a, "  ")
    with sessions() as s, s.begin():
        skip(s, lease.assignment_id, a, "cannot judge")
    seen_by_b = set()
    while (lease_b := _lease(sessions, study_id, b)) is not None:
        seen_by_b.add(lease_b.item_id)
        with sessions() as s, s.begin():
            submit(s, lease_b.assignment_id, b, Submission(3))
    assert lease.item_id in seen_by_b
    assert _lease(sessions, study_id, a) is None  # everything else is full


def test_stale_lease_taken_by_another_reviewer_is_refused_clearly(world):
    sessions, study_id, a, b = world.sessions, world.study_id, world.a, world.b
    now = utcnow()
    lease = _lease(sessions, study_id, a, now)
    later = now + timedelta(hours=1)
    taken = None
    while (nxt := _lease(sessions, study_id, b, later)) is not None:
        if nxt.item_id == lease.item_id:
            taken = nxt
            break
        with sessions() as s, s.begin():
            submit(s, nxt.assignment_id, b, Submission(3), now=later)
    assert taken is not None
    with pytest.raises(StaleAssignment, match="another reviewer"), sessions() as s, s.begin():
        submit(s, lease.assignment_id, a, Submission(4), now=later)


def test_expired_lease_still_accepted_while_the_slot_is_free(world):
    sessions, study_id, a = world.sessions, world.study_id, world.a
    now = utcnow()
    lease = _lease(sessions, study_id, a, now)
    with sessions() as s, s.begin():
        r = submit(s, lease.assignment_id, a, Submission(4), now=now + timedelta(hours=2))
        assert r.active


@pytest.mark.parametrize("sub, message", [
    (Submission(0), "score from 1 to 5"),
    (Submission(6), "score from 1 to 5"),
    (Submission(3, flags=("pretty",)), "Unknown flags"),
    (Submission(3, comment="x" * 2001), "limit is 2000"),
])
def test_invalid_submissions_are_refused_and_nothing_is_stored(world, sub, message):
    sessions, study_id, a = world.sessions, world.study_id, world.a
    lease = _lease(sessions, study_id, a)
    with pytest.raises(RatingError, match=message), sessions() as s, s.begin():
        submit(s, lease.assignment_id, a, sub)
    with sessions() as s:
        assert s.scalars(select(Rating)).all() == []


def test_someone_elses_assignment_is_refused(world):
    sessions, study_id, a, b = world.sessions, world.study_id, world.a, world.b
    lease = _lease(sessions, study_id, a)
    with pytest.raises(StaleAssignment), sessions() as s, s.begin():
        submit(s, lease.assignment_id, b, Submission(3))


#: Statements one rating sends as the Rate page makes it (claim and show, then submit; BEGIN
#: aside), each a round trip. SQLite, the ORM path: the claim reads the cohort row, live lease and
#: account in one, the submit everything it checks in one. PostgreSQL, the hot path
#: (review/labeling/hotpath.py): the study's settings with the reviewer's state and open window,
#: the lease with the item's images, and the submit, one statement each. Issue 11 measured 18 on
#: both (PostgreSQL p50 11.9 ms), then 14 on PostgreSQL after the account check, drafts and audit log.
STATEMENTS_PER_RATING = {"sqlite": 12, "postgresql": 3}


def test_one_rating_costs_a_pinned_number_of_statements(engine):
    sessions = make_session_factory(engine)
    with sessions() as s, s.begin():
        made = make_study(s, 300, raters_per_item=2, n_reviewers=1)  # one window, no wrap-around
        study_id, uid = made.study.id, made.reviewers[0].id
    rate_next(sessions, study_id, uid)  # the first rating also enrols the reviewer
    with statements(engine) as sent:
        assert rate_next(sessions, study_id, uid) is not None
    assert len(sent) == STATEMENTS_PER_RATING[engine.dialect.name], "\n".join(sent)
    with sessions() as s:
        assert [r.score for r in s.scalars(select(Rating))] == [3, 3]


# ----------------------------------------------------------------------------- sessions (issue 21)


def _signed_in(sessions, uid: int) -> SignedIn:
    """A browser session of reviewer `uid`, as the Rate page holds it."""
    with sessions() as s, s.begin():
        sid, _code = start_session(s, uid)
    return SignedIn(uid, "reviewer", sid)


def _count(sessions, model) -> int:  # noqa: ANN001
    with sessions() as s:
        return s.scalar(select(func.count()).select_from(model))


ENDINGS = {  # how an account's sessions end, in another tab or on the admin's Users page
    "logout": lambda s, name: revoke_all(s, s.scalar(select(User.id).where(User.username == name))),
    "role change": lambda s, name: set_role(s, name, "qa"),
    "password reset": lambda s, name: reset_password(s, name, "a-new-password"),
    "deactivation": lambda s, name: set_active(s, name, False),
}


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_no_write_passes_once_the_session_ended(world, ending):
    """Issue 21: after a logout in one tab a second tab stored 3 more ratings, and after a role
    change to QA the open Rate page stored a rating counted as a reviewer's. Every rating write
    checks the tab's session in its transaction (on PostgreSQL the hot path's SQL too)."""
    sessions, study_id, a = world.sessions, world.study_id, world.a
    tab = _signed_in(sessions, a)
    first = _lease(sessions, study_id, a)
    with sessions() as s, s.begin():
        submit(s, first.assignment_id, a, Submission(3, client_token="t0"), signed=tab)
    lease = _lease(sessions, study_id, a)
    with sessions() as s, s.begin():
        name = s.get(User, a).username
        ENDINGS[ending](s, name)
    stored = (_count(sessions, Rating), _count(sessions, Assignment))
    for write in (lambda s: submit(s, lease.assignment_id, a, Submission(4, client_token="t1"), signed=tab),
                  lambda s: skip(s, lease.assignment_id, a, "cannot judge", signed=tab),
                  lambda s: undo_last(s, s.get(Study, study_id), a, signed=tab),
                  lambda s: reopen(s, s.get(Study, study_id), a, first.assignment_id, signed=tab)):
        with pytest.raises(SessionEnded, match="signed out"), sessions() as s, s.begin():
            write(s)
    assert (_count(sessions, Rating), _count(sessions, Assignment)) == stored
    with sessions() as s:
        assert s.get(Assignment, lease.assignment_id).status == "leased"
        assert [r.score for r in s.scalars(select(Rating))] == [3]


def test_a_session_signed_in_as_a_reviewer_rates_only_as_one(world):
    """A role that does not rate (or another account's session) stores nothing, hot path or not."""
    sessions, study_id, a = world.sessions, world.study_id, world.a
    tab = _signed_in(sessions, a)
    lease = _lease(sessions, study_id, a)
    for who in (SignedIn(a, "qa", tab.session_id), SignedIn(world.b, "reviewer", tab.session_id)):
        with pytest.raises(SessionEnded), sessions() as s, s.begin():
            submit(s, lease.assignment_id, a, Submission(4, client_token="t1"), signed=who)
    assert _count(sessions, Rating) == 0
    with sessions() as s, s.begin():
        submit(s, lease.assignment_id, a, Submission(4, client_token="t1"), signed=tab)
    assert _count(sessions, Rating) == 1


def test_a_second_tab_moves_on_and_never_undoes_the_first_tabs_rating(world):
    """Issue 21: a second tab on an item the first already rated looped on "You already rated
    this item. Use Undo..." and that advice withdrew the other tab's rating."""
    sessions, study_id, a = world.sessions, world.study_id, world.a
    tab = _signed_in(sessions, a)
    lease = _lease(sessions, study_id, a)  # both tabs show this item
    with sessions() as s, s.begin():  # tab 1 rates it
        submit(s, lease.assignment_id, a, Submission(2, client_token="tab-1"), signed=tab)
    for write in (lambda s: submit(s, lease.assignment_id, a, Submission(5, client_token="tab-2"),
                                   signed=tab),
                  lambda s: skip(s, lease.assignment_id, a, "cannot judge", signed=tab)):
        with pytest.raises(AlreadyRated, match="another tab.*next item"), sessions() as s, s.begin():
            write(s)
    assert issubclass(AlreadyRated, StaleAssignment)  # the page loads the next item
    with pytest.raises(RatingError, match="another tab"), sessions() as s, s.begin():  # tab 2's Undo
        undo_last(s, s.get(Study, study_id), a, signed=tab, answered_here=set())
    with sessions() as s:
        assert [(r.score, r.active) for r in s.scalars(select(Rating))] == [(2, True)]
    with sessions() as s, s.begin():  # tab 1's Undo takes its own rating back
        back = undo_last(s, s.get(Study, study_id), a, signed=tab, answered_here={lease.assignment_id})
        assert back.id == lease.assignment_id
    with sessions() as s:
        assert [(r.score, r.active) for r in s.scalars(select(Rating))] == [(2, False)]


@pytest.mark.postgres
def test_a_logout_waits_for_a_rating_under_way_and_none_passes_after_it(pg_url):
    """PostgreSQL: the write share-locks its session row, so the logout's revocation commits after
    the rating under way, and the next rating sees it."""
    engine = make_engine(pg_url)
    upgrade(engine)
    sessions = make_session_factory(engine)
    try:
        with sessions() as s, s.begin():
            made = make_study(s, 4, raters_per_item=1, n_reviewers=1)
            study_id, a = made.study.id, made.reviewers[0].id
        tab = _signed_in(sessions, a)
        lease = _lease(sessions, study_id, a)
        ended: list[float] = []

        def log_out() -> None:
            with sessions() as s, s.begin():
                revoke_all(s, a)
            ended.append(time.monotonic())

        with sessions() as s, s.begin(), statements(engine) as sent:
            submit(s, lease.assignment_id, a, Submission(3, client_token="t1"), signed=tab)
            assert [q[:9] for q in sent] == ["WITH a AS"]  # the hot path's one statement took the lock
            worker = threading.Thread(target=log_out)
            worker.start()
            time.sleep(0.5)
            assert not ended  # the logout waits for this rating
            committed = time.monotonic()
        worker.join(10)
        assert ended and ended[0] >= committed
        nxt = _lease(sessions, study_id, a)
        with pytest.raises(SessionEnded), sessions() as s, s.begin():
            submit(s, nxt.assignment_id, a, Submission(4, client_token="t2"), signed=tab)
        assert _count(sessions, Rating) == 1

        # The other order: a rating sent while a logout is committing waits for it, then stores nothing.
        again = _signed_in(sessions, a)
        outcome: list[BaseException | None] = []

        def rate() -> None:
            try:
                with sessions() as s, s.begin():
                    submit(s, nxt.assignment_id, a, Submission(4, client_token="t3"), signed=again)
                outcome.append(None)
            except SessionEnded as exc:
                outcome.append(exc)

        with sessions() as s, s.begin():
            revoke_all(s, a)
            worker = threading.Thread(target=rate)
            worker.start()
            time.sleep(0.5)
            assert not outcome  # the rating waits for the logout
        worker.join(10)
        assert len(outcome) == 1 and isinstance(outcome[0], SessionEnded)
        assert _count(sessions, Rating) == 1
    finally:
        engine.dispose()
