"""Schema, constraints and migrations, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError

from db.engine import make_engine, make_session_factory
from db.migrate import current_revision, head_revision, upgrade
from db.models import (
    Base,
    DegradedImage,
    GuidelineVersion,
    QAVerdict,
    Rating,
    Restoration,
    SourceImage,
    Study,
    StudyItem,
    User,
)


def _graph(session):
    """The smallest complete chain: user -> ... -> study item."""
    user = User(username="rev1", role="reviewer", password_hash="x")
    qa = User(username="qa1", role="qa", password_hash="x")
    gv = GuidelineVersion(slug="fidelity", version=1, title="t", body_md="b", content_sha256="0" * 64)
    src = SourceImage(sha256="a" * 64, path="aa/a.png", width=8, height=8)
    session.add_all([user, qa, gv, src])
    session.flush()
    deg = DegradedImage(source_id=src.id, recipe_key="k", kind="defocus", level=3.0,
                        sha256="b" * 64, path="bb/b.png")
    session.add(deg)
    session.flush()
    res = Restoration(degraded_id=deg.id, method="wiener", params_key="p", sha256="c" * 64,
                      path="cc/c.png")
    study = Study(name="s", guideline_version_id=gv.id)
    session.add_all([res, study])
    session.flush()
    item = StudyItem(study_id=study.id, restoration_id=res.id)
    session.add(item)
    session.flush()
    return user, qa, gv, item


def _rating(user, gv, item, score=4, **kw):
    return Rating(item_id=item.id, reviewer_id=user.id, author_id=user.id, score=score,
                  guideline_version_id=gv.id, **kw)


def test_migrations_reach_head_and_match_models(engine):
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_sqlite_connection_settings(tmp_path):
    eng = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    with eng.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000


def test_one_active_rating_per_item_and_reviewer(engine):
    sessions = make_session_factory(engine)
    with sessions() as s, s.begin():
        user, _, gv, item = _graph(s)
        s.add(_rating(user, gv, item))
    with pytest.raises(IntegrityError), sessions() as s, s.begin():
        s.add(_rating(user, gv, item, score=2))
    # Superseding: the old row is deactivated and a new row points at it; both stay.
    with sessions() as s, s.begin():
        old = s.scalar(select(Rating))
        old.active = False
        s.flush()
        s.add(_rating(user, gv, item, score=2, supersedes_id=old.id))
    with sessions() as s:
        rows = s.scalars(select(Rating).order_by(Rating.id)).all()
        assert [(r.score, r.active) for r in rows] == [(4, False), (2, True)]
        assert rows[1].supersedes_id == rows[0].id


def test_a_rating_can_be_superseded_only_once(engine):
    sessions = make_session_factory(engine)
    with sessions() as s, s.begin():
        user, qa, gv, item = _graph(s)
        first = _rating(user, gv, item, active=False)
        s.add(first)
        s.flush()
        s.add(_rating(user, gv, item, score=3, supersedes_id=first.id))
    with pytest.raises(IntegrityError), sessions() as s, s.begin():
        s.add(_rating(user, gv, item, score=1, supersedes_id=first.id, active=False))


@pytest.mark.parametrize(
    "bad",
    [
        {"score": 0},
        {"score": 11},
        {"source": "robot"},
        {"time_taken_ms": -5},
    ],
)
def test_rating_check_constraints(engine, bad):
    sessions = make_session_factory(engine)
    with sessions() as s, s.begin():
        user, _, gv, item = _graph(s)
    kwargs = {"score": 3} | bad
    with pytest.raises(IntegrityError), sessions() as s, s.begin():
        s.add(Rating(item_id=item.id, reviewer_id=user.id, author_id=user.id,
                     guideline_version_id=gv.id, **kwargs))


def test_foreign_keys_and_enums_enforced(engine):
    sessions = make_session_factory(engine)
    with pytest.raises(IntegrityError), sessions() as s, s.begin():
        s.add(Rating(item_id=999, reviewer_id=999, author_id=999, score=3, guideline_version_id=999))
    with pytest.raises(IntegrityError), sessions() as s, s.begin():
        s.add(User(username="x", role="superuser", password_hash="x"))
    with pytest.raises(IntegrityError), sessions() as s, s.begin():
        s.add(SourceImage(sha256="d" * 64, path="p", width=1, height=1))
        s.flush()
        s.add(DegradedImage(source_id=1_000_000, recipe_key="k", kind="defocus", level=1,
                            sha256="e" * 64, path="p"))


def test_qa_correction_must_name_the_new_rating(engine):
    sessions = make_session_factory(engine)
    with sessions() as s, s.begin():
        user, qa, gv, item = _graph(s)
        r = _rating(user, gv, item)
        s.add(r)
        s.flush()
        rid, qid = r.id, qa.id
    with pytest.raises(IntegrityError), sessions() as s, s.begin():
        s.add(QAVerdict(rating_id=rid, qa_user_id=qid, verdict="correct"))
    with sessions() as s, s.begin():
        s.add(QAVerdict(rating_id=rid, qa_user_id=qid, verdict="accept"))
    with pytest.raises(IntegrityError), sessions() as s, s.begin():  # one verdict per rating
        s.add(QAVerdict(rating_id=rid, qa_user_id=qid, verdict="reject", reason="late"))


def test_upgrade_from_previous_head_keeps_data(tmp_path):
    eng = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(eng, "0001")
    assert "login_attempts" not in inspect(eng).get_table_names()
    with eng.begin() as conn:
        conn.execute(text(
            "INSERT INTO users (username, display_name, role, password_hash, active, created_at) "
            "VALUES ('old', 'Old Timer', 'reviewer', 'h', 1, '2025-01-01 00:00:00')"
        ))
    upgrade(eng)
    assert current_revision(eng) == head_revision()
    with make_session_factory(eng)() as s:
        user = s.scalar(select(User).where(User.username == "old"))
        assert user.display_name == "Old Timer" and user.last_login_at is None
    assert "login_attempts" in inspect(eng).get_table_names()
    upgrade(eng)  # idempotent
    assert current_revision(eng) == head_revision()


def test_upgrade_from_previous_head_keeps_data_postgresql(pg_url):
    eng = make_engine(pg_url)
    upgrade(eng, "0001")
    with eng.begin() as conn:
        conn.execute(text(
            "INSERT INTO users (username, display_name, role, password_hash, active, created_at) "
            "VALUES ('old', 'Old Timer', 'reviewer', 'h', true, now())"
        ))
    upgrade(eng)
    with make_session_factory(eng)() as s:
        assert s.scalar(select(User.display_name).where(User.username == "old")) == "Old Timer"
    eng.dispose()


def test_reviewer_counters_are_backfilled_from_the_assignments(tmp_path):
    """0005 adds study_reviewers.finished_items: a database from before it gets the count of
    each reviewer's done and skipped assignments, not zero."""
    from alembic import command

    from db.migrate import alembic_config
    from db.models import Study, StudyReviewer
    from review.labeling.assignment import next_assignment
    from review.labeling.cohorts import finished_count
    from review.labeling.ratings import Submission, skip, submit
    from tests.support import make_study

    eng = make_engine(f"sqlite:///{tmp_path / 'counts.db'}")
    upgrade(eng)
    sessions = make_session_factory(eng)
    with sessions() as s, s.begin():
        made = make_study(s, 6, raters_per_item=2, n_reviewers=2)
        study, users = made.study, made.reviewers
        study_id, (a, b) = study.id, [u.id for u in users]
    for uid, n in ((a, 4), (b, 2)):
        for k in range(n):
            with sessions() as s, s.begin():
                lease = next_assignment(s, s.get(Study, study_id), uid)
                if k % 2:
                    skip(s, lease.assignment_id, uid, "cannot judge")
                else:
                    submit(s, lease.assignment_id, uid, Submission(score=3))
    cfg = alembic_config(eng.url)
    with eng.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0004")
    assert "finished_items" not in {c["name"] for c in inspect(eng).get_columns("study_reviewers")}
    upgrade(eng)
    with sessions() as s:
        got = dict(s.execute(select(StudyReviewer.reviewer_id, StudyReviewer.finished_items)).all())
        study = s.get(Study, study_id)
        assert got == {a: 4, b: 2} == {uid: finished_count(s, study, uid) for uid in (a, b)}
    eng.dispose()


def test_get_or_create_builds_only_when_missing_and_keeps_other_refusals(engine):
    from db.rows import get_or_create

    built = []

    def build() -> User:
        built.append(1)
        return User(username="once", role="reviewer", password_hash="x")

    sessions = make_session_factory(engine)
    with sessions() as s, s.begin():
        first, new = get_or_create(s, User, {"username": "once"}, build)
        again, new_again = get_or_create(s, User, {"username": "once"}, build)
        assert (new, new_again, again is first, len(built)) == (True, False, True, 1)
        orphan = DegradedImage(source_id=10**6, recipe_key="k", kind="defocus", sha256="e" * 64, path="p")
        with pytest.raises(IntegrityError):  # a foreign key, not a lost race: the caller hears of it
            get_or_create(s, DegradedImage, {"source_id": 10**6, "recipe_key": "k"}, lambda: orphan)
        assert s.scalar(select(User.id).where(User.username == "once")) == first.id  # still usable
    with sessions() as s:
        assert s.scalars(select(User.username)).all() == ["once"]


@pytest.mark.postgres
def test_get_or_create_returns_the_row_a_concurrent_transaction_inserted_first(pg_url):
    """On PostgreSQL two transactions can both find no row; the one that inserts second gets the
    winner's row (its insert is refused by the unique constraint inside a savepoint) and its
    transaction goes on."""
    from db.rows import get_or_create

    eng = make_engine(pg_url)
    upgrade(eng)
    sessions = make_session_factory(eng)
    try:
        with sessions() as loser, loser.begin():
            def build_after_a_rival_commits() -> User:
                with sessions() as rival, rival.begin():
                    rival.add(User(username="raced", display_name="rival", role="reviewer",
                                   password_hash="x"))
                return User(username="raced", display_name="loser", role="reviewer", password_hash="x")

            row, new = get_or_create(loser, User, {"username": "raced"}, build_after_a_rival_commits)
            assert (new, row.display_name) == (False, "rival")
            loser.add(User(username="after", role="reviewer", password_hash="x"))
        with sessions() as s:
            assert sorted(s.scalars(select(User.username))) == ["after", "raced"]
    finally:
        eng.dispose()


def _restorations_keep_keys(eng):
    import datetime as dt

    import sqlalchemy as sa

    from review.media.catalog import find_restoration, params_key

    upgrade(eng, "0012")
    when = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    wiener_key = params_key({"balance": 0.01})

    def table(name, *cols):
        return sa.table(name, *(sa.column(c, sa.JSON) if c in ("params", "provenance", "metrics")
                                else sa.column(c) for c in cols))

    with eng.begin() as conn:
        conn.execute(sa.insert(table("source_images", "id", "sha256", "path", "width", "height",
                                     "title", "origin", "licence", "content", "is_reference",
                                     "created_at")),
                     [{"id": 1, "sha256": "a" * 64, "path": "aa/a.png", "width": 8, "height": 8,
                       "title": "", "origin": "", "licence": "", "content": "scene",
                       "is_reference": True, "created_at": when}])
        conn.execute(sa.insert(table("degraded_images", "id", "source_id", "recipe_key", "kind",
                                     "level", "params", "seed", "sha256", "path", "created_at")),
                     [{"id": 1, "source_id": 1, "recipe_key": "k", "kind": "defocus", "level": 3.0,
                       "params": {}, "seed": 0, "sha256": "b" * 64, "path": "bb/b.png",
                       "created_at": when}])
        rows = [("wiener", {"balance": 0.01}, wiener_key, {"model_identity": None}),
                ("sd15_img2img", {}, "k-sd15", {"model_identity": "tiny-0123abcd", "smoke_test": True}),
                ("sd15_img2img", {}, "k-old", {"smoke_test": False})]
        conn.execute(sa.insert(table("restorations", "degraded_id", "method", "params", "params_key",
                                     "sha256", "path", "provenance", "metrics", "is_smoke_test",
                                     "created_at")),
                     [{"degraded_id": 1, "method": m, "params": p, "params_key": k,
                       "sha256": "c" * 64, "path": "cc/c.png", "provenance": prov, "metrics": {},
                       "is_smoke_test": False, "created_at": when} for m, p, k, prov in rows])
    upgrade(eng)
    with make_session_factory(eng)() as s:
        got = [(r.method, r.params_key, r.model_identity)
               for r in s.scalars(select(Restoration).order_by(Restoration.id))]
        assert got == [("wiener", wiener_key, ""), ("sd15_img2img", "k-sd15", "tiny-0123abcd"),
                       ("sd15_img2img", "k-old", "legacy-unknown")]
        assert find_restoration(s, 1, "wiener", {"balance": 0.01}).params_key == wiener_key
    eng.dispose()


def test_restorations_get_their_model_identity_and_keep_their_keys(tmp_path):
    """0013 adds restorations.model_identity: existing rows get the identity their provenance
    records (else 'legacy-unknown' for a model-backed restorer, '' for the rest) and keep their
    params_key; a classical restoration is still found by its recipe."""
    _restorations_keep_keys(make_engine(f"sqlite:///{tmp_path / 'models.db'}"))


@pytest.mark.postgres
def test_restorations_get_their_model_identity_and_keep_their_keys_postgresql(pg_url):
    _restorations_keep_keys(make_engine(pg_url))
