"""The schema refuses bad writes by itself (migration 0007), through the ORM and through raw SQL,
on SQLite and on PostgreSQL: scores outside the study's scale or not whole, more active ratings or
live assignments than raters_per_item, negative counters, booleans SQLite would store as text."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError, StatementError

from db.engine import make_engine, make_session_factory
from db.migrate import upgrade
from db.models import Assignment, Rating, Study, StudyItem, StudyReviewer, utcnow
from review.labeling.assignment import next_assignment
from review.labeling.cohorts import ensure_enrolled
from review.labeling.ratings import StaleAssignment, Submission, skip, submit, undo_last
from tests.support import make_study, wait_until

RAW_RATING = text(
    "INSERT INTO ratings (item_id, reviewer_id, author_id, source, score, flags, comment, "
    "guideline_version_id, active, created_at) VALUES (:item, :user, :user, 'reviewer', :score, '[]', '', "
    ":gv, :active, CURRENT_TIMESTAMP)")
RAW_ASSIGNMENT = text(
    "INSERT INTO assignments (item_id, reviewer_id, status, leased_at, lease_expires_at, slot) "
    "VALUES (:item, :user, :status, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, :slot)")


@pytest.fixture
def world(engine):
    """One 1-5 study with two raters per item, four reviewers enrolled, one item."""
    sessions = make_session_factory(engine)
    with sessions() as s, s.begin():
        made = make_study(s, 1, raters_per_item=2, n_reviewers=4)
        users = [u.id for u in made.reviewers]
        for uid in users:
            ensure_enrolled(s, made.study, uid)
        item = s.scalar(select(StudyItem.id))
        gv = made.study.guideline_version_id
        study_id = made.study.id
    return sessions, {"study": study_id, "item": item, "gv": gv, "users": users}


def _orm_rating(w, user, score=3, active=True):
    return Rating(item_id=w["item"], reviewer_id=user, author_id=user, score=score,
                  guideline_version_id=w["gv"], active=active)


def _raw_rating(conn, w, user, score=3, active=True):
    conn.execute(RAW_RATING, {"item": w["item"], "user": user, "score": score, "gv": w["gv"],
                              "active": active})


def _refused(sessions, engine, orm, raw, errors=(IntegrityError,)):
    """Both writes fail and leave nothing behind."""
    with pytest.raises(errors), sessions() as s, s.begin():
        orm(s)
    with pytest.raises(IntegrityError), engine.begin() as conn:
        raw(conn)


@pytest.mark.parametrize("score", [0, 6, 10])
def test_scores_outside_the_study_scale_are_refused(engine, world, score):
    sessions, w = world
    u = w["users"][0]
    _refused(sessions, engine, lambda s: s.add(_orm_rating(w, u, score)),
             lambda c: _raw_rating(c, w, u, score))
    with sessions() as s, s.begin():
        s.add(_orm_rating(w, u, 5))  # the top of the scale is fine
    with pytest.raises(IntegrityError), sessions() as s, s.begin():  # and an update cannot leave it
        s.execute(update(Rating).values(score=6))


def test_fractional_scores_are_refused(engine, world):
    sessions, w = world
    u = w["users"][0]
    with pytest.raises(StatementError), sessions() as s, s.begin():
        s.add(_orm_rating(w, u, 4.5))
    if engine.dialect.name == "sqlite":  # SQLite would keep 4.5 in an INTEGER column
        with pytest.raises(IntegrityError), engine.begin() as conn:
            _raw_rating(conn, w, u, 4.5)
    else:  # PostgreSQL converts to its integer column type: never a fraction stored
        with engine.begin() as conn:
            _raw_rating(conn, w, u, 4.4)
            stored = conn.execute(text("SELECT score, pg_typeof(score)::text FROM ratings")).one()
            assert tuple(stored) == (4, "integer")


def test_no_more_active_ratings_than_raters_per_item(engine, world):
    sessions, w = world
    a, b, c, _ = w["users"]
    with sessions() as s, s.begin():
        s.add_all([_orm_rating(w, a), _orm_rating(w, b)])
    _refused(sessions, engine, lambda s: s.add(_orm_rating(w, c)), lambda conn: _raw_rating(conn, w, c))
    with sessions() as s, s.begin():  # an inactive (retracted) third rating is fine
        s.add(_orm_rating(w, c, active=False))
    with pytest.raises(IntegrityError), sessions() as s, s.begin():  # and cannot be switched on
        s.execute(update(Rating).where(Rating.reviewer_id == c).values(active=True))


def test_an_item_has_raters_per_item_slots(engine, world):
    sessions, w = world
    a, b, c, _ = w["users"]

    def orm(user, slot, status="leased"):
        return lambda s: s.add(Assignment(item_id=w["item"], reviewer_id=user, status=status, slot=slot,
                                          lease_expires_at=utcnow()))

    def raw(user, slot, status="leased"):
        return lambda conn: conn.execute(RAW_ASSIGNMENT, {"item": w["item"], "user": user,
                                                          "status": status, "slot": slot})

    _refused(sessions, engine, orm(a, 2), raw(a, 2))  # slots are 0 and 1
    _refused(sessions, engine, orm(a, -1), raw(a, -1))
    _refused(sessions, engine, orm(a, None), raw(a, None))  # a live lease holds a slot
    _refused(sessions, engine, orm(a, 0, "skipped"), raw(a, 0, "skipped"))  # a skip holds none
    with sessions() as s, s.begin():
        orm(a, 0)(s)
        orm(b, 1)(s)
    _refused(sessions, engine, orm(c, 1), raw(c, 1))  # the third reviewer finds no slot
    with sessions() as s, s.begin():
        orm(c, None, "expired")(s)


def test_counters_cannot_go_negative(engine, world):
    sessions, w = world
    for column in ("finished_items", "queue_cursor"):
        _refused(sessions, engine,
                 lambda s, col=column: s.execute(update(StudyReviewer).values({col: -1})),
                 lambda conn, col=column: conn.execute(text(f"UPDATE study_reviewers SET {col} = -1")))


def test_a_text_true_cannot_slip_past_the_one_active_rating_index(engine, world):
    """SQLite would store 't' as text, which its partial index reads as false; PostgreSQL reads it
    as true, so its index refuses the duplicate."""
    sessions, w = world
    a = w["users"][0]
    with engine.begin() as conn:
        _raw_rating(conn, w, a)
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO ratings (item_id, reviewer_id, author_id, source, score, flags, comment, "
            "guideline_version_id, active, created_at) "
            "VALUES (:item, :user, :user, 'reviewer', 3, '[]', '', :gv, 't', CURRENT_TIMESTAMP)"),
            {"item": w["item"], "user": a, "gv": w["gv"]})


BOOLEANS = [("users", "active"), ("login_attempts", "succeeded"), ("source_images", "is_reference"),
            ("restorations", "is_smoke_test"), ("study_reviewers", "qa_enabled"),
            ("study_items", "is_gold"), ("ratings", "active"), ("generation_jobs", "cancel_requested")]


def test_every_boolean_column_refuses_other_values_on_sqlite(tmp_path):
    eng = make_engine(f"sqlite:///{tmp_path / 'b.db'}")
    upgrade(eng)
    sessions = make_session_factory(eng)
    with sessions() as s, s.begin():
        made = make_study(s, 1, n_reviewers=1)
        u = made.reviewers[0].id
        s.add(_orm_rating({"item": s.scalar(select(StudyItem.id)), "gv": made.study.guideline_version_id}, u))
        s.add(StudyReviewer(study_id=made.study.id, reviewer_id=u,
                            guideline_version_id=made.study.guideline_version_id))
        s.execute(text("INSERT INTO login_attempts (username, succeeded, at) "
                       "VALUES ('x', 1, CURRENT_TIMESTAMP)"))
        s.execute(text("INSERT INTO generation_jobs (plan, status, progress_done, progress_total, "
                       "cancel_requested, created_at) VALUES ('{}', 'queued', 0, 0, 0, CURRENT_TIMESTAMP)"))
    for table, column in BOOLEANS:
        for bad in ("'t'", "2"):
            with pytest.raises(IntegrityError, match=f"ck_{table}_{column}_bool"), eng.begin() as conn:
                conn.execute(text(f"UPDATE {table} SET {column} = {bad}"))
    eng.dispose()


def test_a_study_scale_cannot_shrink_under_its_ratings(engine, world):
    sessions, w = world
    a, b, *_ = w["users"]
    with sessions() as s, s.begin():
        s.add_all([_orm_rating(w, a, 5), _orm_rating(w, b, 2)])
    with pytest.raises(IntegrityError), sessions() as s, s.begin():
        s.get(Study, w["study"]).scale_max = 4
    with pytest.raises(IntegrityError), sessions() as s, s.begin():
        s.get(Study, w["study"]).raters_per_item = 1
    with sessions() as s, s.begin():
        s.get(Study, w["study"]).scale_max = 7


def _slots(sessions):
    with sessions() as s:
        return sorted((a.reviewer_id, a.status, a.slot) for a in s.scalars(select(Assignment)))


def test_claims_take_and_give_back_slots(engine, world):
    """The app's own flows keep the slots straight: claim, skip, a lease that runs out and goes to
    someone else, a late rating refused, undo."""
    sessions, w = world
    a, b, c, d = w["users"]
    now = utcnow()

    def claim(uid, at=now):
        with sessions() as s, s.begin():
            return next_assignment(s, s.get(Study, w["study"]), uid, at)

    la, lb = claim(a), claim(b)
    assert claim(c) is None  # both slots taken
    with sessions() as s, s.begin():
        skip(s, lb.assignment_id, b, "cannot judge", now)
    lc = claim(c)
    assert _slots(sessions) == [(a, "leased", 0), (b, "skipped", None), (c, "leased", 1)]
    later = now + timedelta(hours=2)  # a's lease ran out: d takes its slot
    assert claim(d, later).item_id == w["item"]
    after_d = [(a, "expired", None), (b, "skipped", None), (c, "leased", 1), (d, "leased", 0)]
    assert _slots(sessions) == after_d
    with sessions() as s, s.begin():  # late too, but c's slot is still c's
        submit(s, lc.assignment_id, c, Submission(score=4), later)
    with pytest.raises(StaleAssignment), sessions() as s, s.begin():
        submit(s, la.assignment_id, a, Submission(score=3), later)
    with sessions() as s, s.begin():
        assert undo_last(s, s.get(Study, w["study"]), c, later) is not None
    assert _slots(sessions) == after_d  # c's slot stays c's


def _insert(conn, table: str, **values) -> int:  # noqa: ANN001
    """A row in a table as the database has it now (reflected, not today's models): NOT NULL
    columns without a default get a neutral value unless given."""
    t = sa.Table(table, sa.MetaData(), autoload_with=conn)
    for col in t.columns:
        if col.name in values or col.nullable or col.server_default is not None or col.primary_key:
            continue
        kind = col.type.python_type if hasattr(col.type, "python_type") else str
        values[col.name] = {bool: False, int: 0, float: 0.0, dict: {}, list: []}.get(kind, "") \
            if kind is not datetime else utcnow()
    return conn.execute(t.insert().values(**values)).inserted_primary_key[0]


def _old_study(s: sa.Connection) -> tuple[int, int, int]:
    """A guideline version, a degraded image and a 2-rater study on 1-5, written through the
    database's own columns (an old schema): their ids."""
    gv = _insert(s, "guideline_versions", slug="g", version=1, title="t", body_md="b",
                 content_sha256="0" * 64)
    src = _insert(s, "source_images", sha256="a" * 64, path="aa/a.png", width=8, height=8)
    deg = _insert(s, "degraded_images", source_id=src, recipe_key="k", kind="defocus", level=3.0,
                  sha256="b" * 64, path="bb/b.png")
    study = _insert(s, "studies", name="s", raters_per_item=2, guideline_version_id=gv,
                    scale_min=1, scale_max=5)
    return gv, deg, study


def test_the_migration_numbers_slots_and_names_rows_that_break_a_rule(tmp_path):
    eng = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(eng, "0006")
    with eng.begin() as s:  # rows written by the 0006 schema, through its own columns
        gv, deg, study = _old_study(s)
        item1, item2 = (_insert(s, "study_items", study_id=study, order_key=f"k{i}", restoration_id=_insert(
            s, "restorations", degraded_id=deg, method="wiener", params_key=f"p{i}", sha256="c" * 64,
            path="cc/c.png")) for i in range(2))
        a, b = (_insert(s, "users", username=f"r{i}", role="reviewer", password_hash="x", active=True)
                for i in range(2))
        future = utcnow() + timedelta(hours=1)
        for item, user, status in ((item1, a, "done"), (item1, b, "leased"), (item2, a, "skipped")):
            s.execute(text("INSERT INTO assignments (item_id, reviewer_id, status, leased_at, "
                           "lease_expires_at) VALUES (:i, :u, :st, CURRENT_TIMESTAMP, :e)"),
                      {"i": item, "u": user, "st": status, "e": future})
        s.execute(RAW_RATING, {"item": item1, "user": a, "score": 9, "gv": gv, "active": True})
        s.execute(text("INSERT INTO study_reviewers (study_id, reviewer_id, guideline_version_id, "
                       "qa_enabled, cohort, joined_at, finished_items) "
                       "VALUES (:s, :u, :g, 0, '', CURRENT_TIMESTAMP, -2)"),
                  {"s": study, "u": a, "g": gv})
    with pytest.raises(RuntimeError) as err:
        upgrade(eng)
    message = str(err.value)
    assert "1 ratings with a score outside their study's scale" in message
    assert "1 study reviewers with a negative finished_items" in message and "nothing was changed" in message
    with eng.begin() as conn:
        conn.execute(text("UPDATE ratings SET score = 4"))
        conn.execute(text("UPDATE study_reviewers SET finished_items = 1"))
    upgrade(eng)
    with eng.connect() as conn:
        got = conn.execute(text("SELECT reviewer_id, status, slot FROM assignments ORDER BY id")).all()
    assert [tuple(r) for r in got] == [(a, "done", 0), (b, "leased", 1), (a, "skipped", None)]
    eng.dispose()


def test_the_guards_downgrade_and_upgrade_again(engine, world):
    from alembic import command

    from db.migrate import alembic_config

    sessions, w = world
    a, b, *_ = w["users"]
    with sessions() as s, s.begin():
        s.add(Assignment(item_id=w["item"], reviewer_id=a, status="done", slot=0))
        s.add(Assignment(item_id=w["item"], reviewer_id=b, status="skipped"))
    cfg = alembic_config(engine.url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0006")
    with engine.begin() as conn:  # the old schema took a third active rating
        for user in w["users"][:3]:
            _raw_rating(conn, w, user)
        conn.execute(text("DELETE FROM ratings"))
    upgrade(engine)
    with engine.connect() as conn:
        got = conn.execute(text("SELECT reviewer_id, status, slot FROM assignments ORDER BY id")).all()
    assert [tuple(r) for r in got] == [(a, "done", 0), (b, "skipped", None)]
    with pytest.raises(IntegrityError), engine.begin() as conn:
        _raw_rating(conn, w, a, 6)


# PostgreSQL under concurrency (issue 21): a rule that spans a study and its items holds when the
# write that lowers raters_per_item and the write that adds to an item run at the same time, at
# READ COMMITTED (the default) and at REPEATABLE READ / SERIALIZABLE (a server configured so), in
# either order. Raw SQL in two connections, so the schema alone is what is tested.

_LOWER = "UPDATE studies SET raters_per_item = 2 WHERE id = %(study)s"
_THIRD_RATING = ("INSERT INTO ratings (item_id, reviewer_id, author_id, source, score, flags, comment, "
                 "guideline_version_id, active, created_at) "
                 "VALUES (%(item)s, %(user)s, %(user)s, 'reviewer', 3, '[]', '', %(gv)s, true, now())")
_SLOT_TWO = ("INSERT INTO assignments (item_id, reviewer_id, status, leased_at, lease_expires_at, slot) "
             "VALUES (%(item)s, %(user)s, 'leased', now(), now() + interval '1 hour', 2)")
#: What a refused or retried write may raise: the rule (23514), a serialization failure, a deadlock.
_REFUSALS = {"23514", "40001", "40P01"}
_OVERFILL = """
SELECT count(*) FROM study_items i JOIN studies s ON s.id = i.study_id WHERE
  (SELECT count(*) FROM ratings r WHERE r.item_id = i.id AND r.active) > s.raters_per_item
  OR EXISTS (SELECT 1 FROM assignments a WHERE a.item_id = i.id AND a.slot >= s.raters_per_item)"""


def _pg_world(pg_url: str, raters: int, ratings: int):  # noqa: ANN202 - (psycopg dsn, ids)
    eng = make_engine(pg_url)
    upgrade(eng)
    sessions = make_session_factory(eng)
    with sessions() as s, s.begin():
        made = make_study(s, 1, raters_per_item=raters, n_reviewers=4)
        w = {"study": made.study.id, "item": s.scalar(select(StudyItem.id)),
             "gv": made.study.guideline_version_id, "users": [u.id for u in made.reviewers]}
        for user in w["users"][:ratings]:
            s.add(_orm_rating(w, user))
    eng.dispose()
    return pg_url.replace("+psycopg", ""), w


def _race(dsn: str, level: str, first: tuple[str, dict], second: tuple[str, dict], *,
          first_commits_before: bool) -> list[str]:
    """Two transactions at `level`, both with their snapshot taken; `first` writes, then `second`
    writes (in a thread: it may wait for `first`'s lock), with `first` committing before or after
    `second`'s statement. The SQLSTATEs the two raised."""
    import threading

    import psycopg

    conns = [psycopg.connect(dsn) for _ in range(2)]
    raised: list[str] = []
    for conn in conns:
        conn.execute(f"SET TRANSACTION ISOLATION LEVEL {level}")
        conn.execute("SELECT 1 FROM studies LIMIT 1")  # the snapshot (REPEATABLE READ) is now taken

    def attempt(conn: psycopg.Connection, statement: tuple[str, dict], commit: bool) -> None:
        try:
            conn.execute(*statement)
            if commit:
                conn.commit()
        except psycopg.Error as exc:
            raised.append(exc.sqlstate or "?")
            conn.rollback()

    one, two = conns
    attempt(one, first, commit=first_commits_before)
    later = threading.Thread(target=attempt, args=(two, second, True))
    later.start()
    with psycopg.connect(dsn, autocommit=True) as watch:  # until `two` is done or waits for a lock
        wait_until(lambda: not later.is_alive() or watch.execute(
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s",
            (two.info.backend_pid,)).fetchone()[0], timeout=10, what="the second writer to finish or wait")
    if not first_commits_before and one.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
        try:
            one.commit()
        except psycopg.Error as exc:
            raised.append(exc.sqlstate or "?")
    later.join(timeout=30)
    assert not later.is_alive(), "the second writer never finished"
    for conn in conns:
        conn.close()
    return raised


@pytest.mark.postgres
@pytest.mark.parametrize("level", ["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"])
@pytest.mark.parametrize("first_commits_before", [False, True], ids=["overlapping", "one-after-the-other"])
@pytest.mark.parametrize("adding", ["rating", "slot"])
@pytest.mark.parametrize("lowering_first", [False, True], ids=["adder-first", "lowering-first"])
def test_lowering_raters_per_item_while_an_item_fills_never_overfills(
        pg_url, level, first_commits_before, adding, lowering_first):
    """An item with 2 active ratings (or slots 0 and 1 live) on a 3-rater study: one transaction adds
    a third (rating, or a lease in slot 2), the other lowers raters per item to 2. One of them must
    be refused; 0007's triggers let both through (the item lock did not meet the study's change)."""
    import psycopg

    dsn, w = _pg_world(pg_url, raters=3, ratings=2 if adding == "rating" else 0)
    a, b, c, _ = w["users"]
    if adding == "slot":
        with psycopg.connect(dsn) as conn:
            for user, slot in ((a, 0), (b, 1)):
                conn.execute("INSERT INTO assignments (item_id, reviewer_id, status, leased_at, "
                             "lease_expires_at, completed_at, slot) VALUES (%s, %s, 'done', now(), now(), "
                             "now(), %s)", (w["item"], user, slot))
    add = (_THIRD_RATING if adding == "rating" else _SLOT_TWO, {"item": w["item"], "user": c, "gv": w["gv"]})
    lower = (_LOWER, {"study": w["study"]})
    first, second = (lower, add) if lowering_first else (add, lower)
    raised = _race(dsn, level, first, second, first_commits_before=first_commits_before)
    with psycopg.connect(dsn) as conn:
        overfilled = conn.execute(_OVERFILL).fetchone()[0]
        per_item = conn.execute("SELECT raters_per_item FROM studies").fetchone()[0]
    assert overfilled == 0, f"{overfilled} item(s) over raters_per_item={per_item}; refusals: {raised}"
    assert set(raised) <= _REFUSALS, raised
    assert len(raised) <= 1, raised  # never both refused


@pytest.mark.postgres
@pytest.mark.parametrize("level", ["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"])
def test_two_raters_of_one_item_cannot_both_take_its_last_place(pg_url, level):
    """A 2-rater item holding one rating: two transactions that took their snapshots before either
    wrote each add a rating. 0007's item lock serialised them at READ COMMITTED only: at REPEATABLE
    READ the second counted from its snapshot, saw 1 and stored a 3rd active rating."""
    import psycopg

    dsn, w = _pg_world(pg_url, raters=2, ratings=1)
    _a, b, c, _ = w["users"]
    raised = _race(dsn, level, (_THIRD_RATING, {"item": w["item"], "user": b, "gv": w["gv"]}),
                   (_THIRD_RATING, {"item": w["item"], "user": c, "gv": w["gv"]}), first_commits_before=True)
    with psycopg.connect(dsn) as conn:
        active = conn.execute("SELECT count(*) FROM ratings WHERE active").fetchone()[0]
    assert active == 2 and len(raised) == 1 and set(raised) <= _REFUSALS, (active, raised)


# What the user sees when a guard refuses (issue 21): a plain message, never a traceback.


def _lab_on(engine, tmp_path):  # noqa: ANN001, ANN202
    from review.config import load_settings
    from review.database import Lab
    from review.media.store import ImageStore

    sessions = make_session_factory(engine)
    return Lab(load_settings({"REVIEW_DATA_DIR": str(tmp_path / "data")}), engine, sessions,
               ImageStore(tmp_path / "images"), engine, sessions)


def test_a_guard_refusal_is_a_plain_message(engine, world, tmp_path):
    """A write the schema refuses (an item's third active rating, a slot taken twice) reaches the
    page or command as a `ReviewError` with a sentence, through the one way the lab writes."""
    from review.database import WriteRefused
    from review.errors import ReviewError

    sessions, w = world
    a, b, c, _ = w["users"]
    lab = _lab_on(engine, tmp_path)
    with lab.write() as s:
        s.add_all([_orm_rating(w, a), _orm_rating(w, b)])
        s.add(Assignment(item_id=w["item"], reviewer_id=a, status="done", slot=0))
    with pytest.raises(ReviewError) as third:
        with lab.write() as s:
            s.add(_orm_rating(w, c))
    assert isinstance(third.value, WriteRefused) and third.value.rule == "ratings_active_per_item"
    assert str(third.value).startswith("This item already has all the ratings its study asks for")
    with pytest.raises(WriteRefused) as twice:
        with lab.write() as s:
            s.add(Assignment(item_id=w["item"], reviewer_id=b, status="leased", slot=0,
                             lease_expires_at=utcnow() + timedelta(hours=1)))
    assert "took the same place on this item" in str(twice.value)
    with sessions() as s:  # nothing of either was kept
        assert s.scalar(select(sa.func.count()).select_from(Rating)) == 2
        assert s.scalar(select(sa.func.count()).select_from(Assignment)) == 1


@pytest.mark.postgres
def test_a_serialization_failure_is_run_again_then_refused_plainly(pg_url, tmp_path):
    """At REPEATABLE READ a rating whose snapshot predates a change of its study fails with 40001
    (migration 0012); `Lab.run` runs the whole transaction again, which then succeeds, and with
    no attempt left the user reads a plain `WriteConflict`."""
    import psycopg

    from review.database import WriteConflict

    dsn, w = _pg_world(pg_url, raters=3, ratings=0)
    engine = make_engine(pg_url).execution_options(isolation_level="REPEATABLE READ")
    lab, calls = _lab_on(engine, tmp_path), []

    def rate(s):  # noqa: ANN001, ANN202
        calls.append(1)
        s.execute(text("SELECT 1"))  # the snapshot is taken
        if len(calls) % 2:  # every other try: the study changes meanwhile
            with psycopg.connect(dsn, autocommit=True) as other:
                other.execute("UPDATE studies SET description = description || '.'")
        s.add(_orm_rating(w, w["users"][len(calls) - 1]))
        s.flush()
        return len(calls)

    assert lab.run(rate) == 2
    with pytest.raises(WriteConflict) as refused:
        lab.run(rate, attempts=1)
    assert str(refused.value).startswith("Another change to the same data was being saved")
    engine.dispose()


def test_init_over_rows_a_guard_forbids_says_which_and_changes_nothing(tmp_path):
    """`python -m review init` on a database at 0006 holding an item with 3 active ratings on a
    2-rater study (which 0007 forbids): one short paragraph naming the items and what to do, exit
    status 1, no traceback, and the database as it was (revision, rows)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    db = tmp_path / "old.db"
    eng = make_engine(f"sqlite:///{db}")
    upgrade(eng, "0006")
    with eng.begin() as s:
        gv, deg, study = _old_study(s)
        res = _insert(s, "restorations", degraded_id=deg, method="wiener", params_key="p",
                      sha256="c" * 64, path="cc/c.png")
        item = _insert(s, "study_items", study_id=study, order_key=1, restoration_id=res)
        for i in range(3):
            user = _insert(s, "users", username=f"r{i}", role="reviewer", password_hash="x", active=True)
            s.execute(RAW_RATING, {"item": item, "user": user, "score": 3, "gv": gv, "active": True})
    env = {**os.environ, "REVIEW_DATA_DIR": str(tmp_path / "data"), "REVIEW_DATABASE_URL": f"sqlite:///{db}"}
    done = subprocess.run([sys.executable, "-m", "review", "init"], env=env, capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent, timeout=120)
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) <= 6, done.stderr
    assert "1 items with more active ratings than their study's raters_per_item (ids 1)" in done.stderr
    assert "stays at schema revision 0006" in done.stderr and "python -m review init" in done.stderr
    with eng.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0006"
        assert conn.execute(text("SELECT count(*) FROM ratings WHERE active")).scalar() == 3
        assert conn.execute(text("SELECT count(*) FROM guideline_versions")).scalar() == 1
    eng.dispose()


@pytest.mark.parametrize("lowering_first", [False, True], ids=["adder-first", "lowering-first"])
def test_sqlite_runs_the_same_race_one_writer_at_a_time(tmp_path, lowering_first):
    """SQLite needs no study lock (migration 0012 leaves its triggers): a transaction that read
    before another's write committed cannot write on its old snapshot ("database is locked": WAL
    refuses to upgrade a stale read), and one that waits for the write lock reads the latest rows,
    so the triggers always count the latest data. Raw sqlite3, deferred transactions (what a
    script would use; the lab itself begins every write with BEGIN IMMEDIATE)."""
    import sqlite3

    db = tmp_path / "race.db"
    eng = make_engine(f"sqlite:///{db}")  # WAL, as the lab's engine sets it
    upgrade(eng)
    sessions = make_session_factory(eng)
    with sessions() as s, s.begin():
        made = make_study(s, 1, raters_per_item=3, n_reviewers=4)
        w = {"study": made.study.id, "item": s.scalar(select(StudyItem.id)),
             "gv": made.study.guideline_version_id, "users": [u.id for u in made.reviewers]}
        for user in w["users"][:2]:
            s.add(_orm_rating(w, user))
    eng.dispose()
    add = ("INSERT INTO ratings (item_id, reviewer_id, author_id, source, score, flags, comment, "
           "guideline_version_id, active, created_at) VALUES (?, ?, ?, 'reviewer', 3, '[]', '', ?, 1, "
           "CURRENT_TIMESTAMP)", (w["item"], w["users"][2], w["users"][2], w["gv"]))
    lower = ("UPDATE studies SET raters_per_item = 2 WHERE id = ?", (w["study"],))
    first, second = (lower, add) if lowering_first else (add, lower)
    one, two = (sqlite3.connect(db, isolation_level=None, timeout=0.2) for _ in range(2))
    refused = []
    for conn in (one, two):
        conn.execute("BEGIN")
        conn.execute("SELECT count(*) FROM ratings").fetchone()  # each holds a read snapshot
    one.execute(*first)
    one.execute("COMMIT")
    try:
        two.execute(*second)
        two.execute("COMMIT")
    except sqlite3.DatabaseError as exc:  # locked (stale snapshot) or the rule itself
        refused.append(str(exc))
        two.execute("ROLLBACK")
    with sqlite3.connect(db) as conn:
        active = conn.execute("SELECT count(*) FROM ratings WHERE active").fetchone()[0]
        per_item = conn.execute("SELECT raters_per_item FROM studies").fetchone()[0]
    one.close()
    two.close()
    assert active <= per_item and len(refused) == 1, (active, per_item, refused)


@pytest.mark.postgres
def test_a_study_edit_that_cannot_get_the_study_says_it_is_busy(pg_url, tmp_path, monkeypatch):
    """A rating in flight holds the study FOR SHARE; an edit of the study waits for it at most
    EDIT_LOCK_WAIT_S (1 s here), then the admin reads that the study is busy, and nothing changed."""
    import psycopg

    from review.database import DatabaseBusy
    from review.labeling import study as study_module
    from review.labeling.study import StudyEdit, edit_study

    monkeypatch.setattr(study_module, "EDIT_LOCK_WAIT_S", 1)
    dsn, w = _pg_world(pg_url, raters=3, ratings=0)
    lab = _lab_on(make_engine(pg_url), tmp_path)
    with psycopg.connect(dsn) as rater:
        rater.execute("SELECT 1 FROM studies WHERE id = %s FOR SHARE", (w["study"],))
        with pytest.raises(DatabaseBusy) as busy:
            lab.run(lambda s: edit_study(s, w["study"], StudyEdit("", 2, 0.0, None, ())))
        rater.rollback()
    assert str(busy.value).startswith("The study is busy")
    with lab.read() as s:
        assert s.get(Study, w["study"]).raters_per_item == 3
    lab.engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("level", ["READ COMMITTED", "REPEATABLE READ"])
@pytest.mark.parametrize("first_commits_before", [False, True], ids=["overlapping", "one-after-the-other"])
@pytest.mark.parametrize("narrowing_first", [False, True], ids=["rater-first", "narrowing-first"])
def test_narrowing_the_scale_while_a_score_is_stored_never_leaves_it_outside(
        pg_url, level, first_commits_before, narrowing_first):
    """The same race for the score rule: a rating of 5 on a 1-5 study while the scale becomes 1-4.
    One of the two must be refused (0007's score trigger locked nothing)."""
    import psycopg

    dsn, w = _pg_world(pg_url, raters=3, ratings=0)
    rate = (_THIRD_RATING.replace("'reviewer', 3,", "'reviewer', 5,"),
            {"item": w["item"], "user": w["users"][0], "gv": w["gv"]})
    narrow = ("UPDATE studies SET scale_max = 4 WHERE id = %(study)s", {"study": w["study"]})
    first, second = (narrow, rate) if narrowing_first else (rate, narrow)
    raised = _race(dsn, level, first, second, first_commits_before=first_commits_before)
    with psycopg.connect(dsn) as conn:
        outside = conn.execute(
            "SELECT count(*) FROM ratings r JOIN study_items i ON i.id = r.item_id "
            "JOIN studies s ON s.id = i.study_id WHERE r.score > s.scale_max").fetchone()[0]
    assert outside == 0 and len(raised) <= 1 and set(raised) <= _REFUSALS, (outside, raised)
