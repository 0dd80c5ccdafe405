"""Ratings: idempotent submit, undo that supersedes, skip, stale leases, validation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from db.engine import make_session_factory
from db.models import Assignment, Rating, Study, utcnow
from review.labeling.assignment import next_assignment
from review.labeling.ratings import RatingError, StaleAssignment, Submission, history, skip, submit, undo_last
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
