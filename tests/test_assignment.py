"""Assignment: raters per item, no reviewer twice, leases, gold mixing, concurrent reviewers."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from db.engine import make_engine, make_session_factory
from db.migrate import upgrade
from db.models import Assignment, Rating, Study, StudyItem, utcnow
from review.labeling.assignment import next_assignment, remaining_for
from review.labeling.ratings import Submission, submit
from review.labeling.settings import update_settings
from tests.support import in_threads, make_study


@pytest.fixture
def sessions(engine):
    """SQLite, then PostgreSQL, where claims and submits take the hot path (hotpath.py)."""
    return make_session_factory(engine)


@pytest.fixture
def sqlite_sessions(tmp_path):
    eng = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    upgrade(eng)
    yield make_session_factory(eng)
    eng.dispose()


def _rate_all(sessions, study_id, reviewer_id, score=4):
    done = []
    while True:
        with sessions() as s, s.begin():
            lease = next_assignment(s, s.get(Study, study_id), reviewer_id)
            if lease is None:
                return done
            submit(s, lease.assignment_id, reviewer_id, Submission(score=score))
            done.append(lease.item_id)


def test_each_item_gets_exactly_raters_per_item_never_the_same_reviewer_twice(sessions):
    with sessions() as s, s.begin():
        made = make_study(s, 30, raters_per_item=2, n_reviewers=3)
        study, users = made.study, made.reviewers
        study_id, ids = study.id, [u.id for u in users]
    per_reviewer = {uid: _rate_all(sessions, study_id, uid) for uid in ids}
    with sessions() as s:
        counts = Counter(s.scalars(select(Rating.item_id)))
    assert len(counts) == 30 and set(counts.values()) == {2}
    for items in per_reviewer.values():
        assert len(items) == len(set(items))
    # Reviewers one after another: the first two fill both slots of every item.
    assert [len(per_reviewer[uid]) for uid in ids] == [30, 30, 0]


@pytest.mark.slow
def test_orders_differ_per_reviewer_and_are_reproducible(tmp_path):
    def orders(path):
        eng = make_engine(f"sqlite:///{path}")
        upgrade(eng)
        sessions = make_session_factory(eng)
        with sessions() as s, s.begin():
            made = make_study(s, 40, raters_per_item=3, n_reviewers=3)
            study, users = made.study, made.reviewers
            study_id, ids = study.id, [u.id for u in users]
        result = [_rate_all(sessions, study_id, uid) for uid in ids]
        eng.dispose()
        return result

    first, second = orders(tmp_path / "one.db"), orders(tmp_path / "two.db")
    assert first == second  # reproducible
    assert first[0] != first[1] and first[1] != first[2] and first[0] != first[2]
    assert all(sorted(o) == sorted(first[0]) for o in first)  # everyone rated every item


def test_lease_resumes_then_expires_and_slot_moves_on(sessions):
    with sessions() as s, s.begin():
        made = make_study(s, 1, raters_per_item=1, n_reviewers=2)
        study, users = made.study, made.reviewers
        study_id, (a, b) = study.id, [u.id for u in users]
    now = utcnow()
    with sessions() as s, s.begin():
        first = next_assignment(s, s.get(Study, study_id), a, now)
    with sessions() as s, s.begin():
        again = next_assignment(s, s.get(Study, study_id), a, now + timedelta(minutes=1))
        assert again.assignment_id == first.assignment_id  # a reload resumes the same item
        assert next_assignment(s, s.get(Study, study_id), b, now + timedelta(minutes=1)) is None
    later = now + timedelta(minutes=21)  # default lease is 20 minutes
    with sessions() as s, s.begin():
        taken = next_assignment(s, s.get(Study, study_id), b, later)
        assert taken is not None and taken.item_id == first.item_id


@pytest.mark.slow
def test_gold_items_mixed_in_at_the_configured_rate(sessions):
    with sessions() as s, s.begin():
        made = make_study(s, 400, raters_per_item=1, n_reviewers=1, gold_every=2,
                          gold_rate=0.2)
        study, users = made.study, made.reviewers
        study_id, uid = study.id, users[0].id
    seen = []
    for _ in range(200):
        with sessions() as s, s.begin():
            lease = next_assignment(s, s.get(Study, study_id), uid)
            submit(s, lease.assignment_id, uid, Submission(score=5))
            seen.append(s.get(StudyItem, lease.item_id).is_gold)
    share = sum(seen) / len(seen)
    assert 0.12 <= share <= 0.28, share


def test_remaining_counts_what_a_reviewer_can_still_get(sessions):
    with sessions() as s, s.begin():
        made = make_study(s, 10, raters_per_item=1, n_reviewers=2)
        study, users = made.study, made.reviewers
        study_id, (a, b) = study.id, [u.id for u in users]
    with sessions() as s, s.begin():
        st = s.get(Study, study_id)
        assert remaining_for(s, st, a) == 10
        lease = next_assignment(s, st, a)
        submit(s, lease.assignment_id, a, Submission(score=3))
        assert remaining_for(s, st, a) == 9 and remaining_for(s, st, b) == 9


def _concurrent(url: str, n_items: int, n_reviewers: int, rpi: int):
    eng = make_engine(url)
    upgrade(eng)
    sessions = make_session_factory(eng)
    with sessions() as s, s.begin():
        made = make_study(s, n_items, raters_per_item=rpi, n_reviewers=n_reviewers)
        study, users = made.study, made.reviewers
        study_id, ids = study.id, [u.id for u in users]
    in_threads(lambda uid: _rate_all(sessions, study_id, uid), ids)
    with sessions() as s:
        per_item = Counter(s.scalars(select(Rating.item_id).where(Rating.active.is_(True))))
        pairs = s.execute(select(Rating.item_id, Rating.reviewer_id)).all()
        leased = s.scalar(select(func.count()).select_from(Assignment)
                          .where(Assignment.status == "leased"))
    eng.dispose()
    assert set(per_item.values()) == {rpi} and len(per_item) == n_items
    assert len(pairs) == len(set(pairs))
    assert leased == 0


def test_concurrent_reviewers_never_overfill_or_duplicate_sqlite(tmp_path):
    _concurrent(f"sqlite:///{tmp_path / 'c.db'}", 40, 4, 2)


def test_concurrent_reviewers_never_overfill_or_duplicate_postgresql(pg_url):
    _concurrent(pg_url, 40, 4, 2)


def test_a_per_reviewer_quota_spreads_the_work_evenly(sessions):
    with sessions() as s, s.begin():
        made = make_study(s, 30, raters_per_item=2, n_reviewers=3)
        study, users = made.study, made.reviewers
        update_settings(study, max_items_per_reviewer=20)  # 30 items x 2 raters / 3 reviewers
        study_id, ids = study.id, [u.id for u in users]
    done = [_rate_all(sessions, study_id, uid) for uid in ids]
    assert [len(d) for d in done] == [20, 20, 20]
    with sessions() as s:
        assert set(Counter(s.scalars(select(Rating.item_id))).values()) == {2}


def test_finished_counter_matches_the_assignments_after_any_mix_of_actions(sessions):
    """submit, skip, undo, expiry and re-claims in a random order: the counter the hot path reads
    always equals a count over the assignments."""
    import random

    from review.labeling.cohorts import ensure_enrolled, finished_count
    from review.labeling.ratings import skip, undo_last

    with sessions() as s, s.begin():
        made = make_study(s, 25, raters_per_item=2, n_reviewers=3)
        study, users = made.study, made.reviewers
        study_id, ids = study.id, [u.id for u in users]
    rng = random.Random(7)
    now = utcnow()
    for step in range(120):
        uid = rng.choice(ids)
        action = rng.choice(["submit", "submit", "skip", "undo", "wait"])
        with sessions() as s, s.begin():
            st = s.get(Study, study_id)
            if action == "undo":
                undo_last(s, st, uid, now)
            elif action == "wait":  # leases held now run out
                now += timedelta(minutes=25)
            else:
                lease = next_assignment(s, st, uid, now)
                if lease is not None and action == "submit":
                    submit(s, lease.assignment_id, uid, Submission(score=3), now)
                elif lease is not None:
                    skip(s, lease.assignment_id, uid, "cannot judge", now)
        now += timedelta(seconds=5)
        with sessions() as s:
            st = s.get(Study, study_id)
            for rid in ids:
                assert ensure_enrolled(s, st, rid).finished_items == finished_count(s, st, rid), step
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Rating)) > 10  # the mix did real work


@pytest.mark.slow
def test_a_claim_scans_one_window_however_much_the_reviewer_has_done(sqlite_sessions):
    """The queue cursor moves with the reviewer: after rating most of a study, a claim reads about
    one window of candidates, not the reviewer's whole history (SQLite's VM counts the work)."""
    from sqlalchemy import event

    sessions = sqlite_sessions

    with sessions() as s, s.begin():
        made = make_study(s, 1000, raters_per_item=1, n_reviewers=1)
        study, users = made.study, made.reviewers
        study_id, uid = study.id, users[0].id
    for _ in range(200):
        with sessions() as s, s.begin():
            lease = next_assignment(s, s.get(Study, study_id), uid)
            submit(s, lease.assignment_id, uid, Submission(score=2))
    steps = []
    engine = sessions.kw["bind"]

    def count_vm_steps(conn, cursor, statement, *_args):
        conn.connection.dbapi_connection.set_progress_handler(lambda: steps.append(1) and 0, 10)

    event.listen(engine, "before_cursor_execute", count_vm_steps)
    try:
        with sessions() as s, s.begin():
            lease = next_assignment(s, s.get(Study, study_id), uid)
    finally:
        event.remove(engine, "before_cursor_execute", count_vm_steps)
    assert lease is not None
    late = len(steps)
    # The same claim for a fresh reviewer on a fresh study of the same size, as the yardstick.
    with sessions() as s, s.begin():
        fresh_made = make_study(s, 1000, raters_per_item=1, n_reviewers=1, name="fresh")
        fresh, (other,) = fresh_made.study, fresh_made.reviewers
        fresh_id, other_id = fresh.id, other.id
    steps.clear()
    event.listen(engine, "before_cursor_execute", count_vm_steps)
    try:
        with sessions() as s, s.begin():
            assert next_assignment(s, s.get(Study, fresh_id), other_id) is not None
    finally:
        event.remove(engine, "before_cursor_execute", count_vm_steps)
    # SQLite VM progress ticks (one per 10 instructions) of the claim: at most 1.5x a fresh
    # reviewer's; re-walking the 200 done items from the starting offset cost 4-5x
    assert late <= 1.5 * len(steps), (late, len(steps))


def test_a_slot_that_reopens_behind_a_reviewers_cursor_is_still_handed_out(sessions):
    """A leaves an item leased; B walks past it and rates the rest. When A's lease runs out, B's
    next claim wraps around the order and gets it: no item is left short of raters."""
    with sessions() as s, s.begin():
        made = make_study(s, 10, raters_per_item=1, n_reviewers=2)
        study, users = made.study, made.reviewers
        study_id, (a, b) = study.id, [u.id for u in users]
    now = utcnow()
    with sessions() as s, s.begin():
        abandoned = next_assignment(s, s.get(Study, study_id), a, now).item_id
    rated = []
    for _ in range(9):
        with sessions() as s, s.begin():
            lease = next_assignment(s, s.get(Study, study_id), b, now)
            submit(s, lease.assignment_id, b, Submission(score=4), now)
            rated.append(lease.item_id)
    assert abandoned not in rated
    with sessions() as s, s.begin():
        assert next_assignment(s, s.get(Study, study_id), b, now) is None  # A still holds it
        later = now + timedelta(minutes=21)
        lease = next_assignment(s, s.get(Study, study_id), b, later)
        assert lease is not None and lease.item_id == abandoned


@pytest.mark.slow
def test_a_claim_the_database_refuses_is_a_plain_message_on_the_rate_page(lab):
    """The Rate page's claim runs outside `run_action`; when the database refuses it (here: another
    process holds SQLite's write lock past the lab's wait, so `DatabaseBusy`) the reviewer reads
    the plain message and a button to try again, not a traceback; once the lock is gone the button
    brings the next item."""
    import sqlite3

    from tests.support import build_study
    from tests.support_app import app, login

    sid = build_study(lab, 3)
    at = login(app().run(), "alice")
    state = at.session_state[f"rate:{sid}"]
    assert state["cur"] is not None
    state["cur"] = None  # as after a submit: the next run claims
    holder = sqlite3.connect(lab.settings.database_url.database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writing, for longer than the lab waits
    try:
        at.run(timeout=90)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert not at.exception, [e.value for e in at.exception]
    shown = [e.value for e in at.warning] + [e.value for e in at.error]
    assert any(text.startswith("The database is busy") for text in shown), shown
    at.button(key="claim_again").click().run()
    assert not at.exception and at.session_state[f"rate:{sid}"]["cur"] is not None
