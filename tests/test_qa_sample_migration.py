"""The QA sample's own table (qa_samples): migration 0006 moves a study's settings["qa_sample"]
into it and back, and the table keeps one row per rating even when two samplers race; on SQLite
and on PostgreSQL."""

from __future__ import annotations

import threading

import pytest
from alembic import command
from sqlalchemy import JSON, column, func, inspect, select, table, text, update
from sqlalchemy.exc import IntegrityError

from db.engine import make_engine, make_session_factory
from db.migrate import alembic_config, current_revision, head_revision, upgrade
from db.models import QASample, Study, User
from review.labeling import qa
from review.labeling.assignment import next_assignment
from review.labeling.ratings import Submission, submit
from review.labeling.settings import StudySettings, update_settings
from tests.support import make_study, wait_until

_studies = table("studies", column("id"), column("settings", JSON()))


def _rated_study(sessions, n_items: int = 6) -> tuple[int, int]:
    """A study whose three reviewers (all QA on) rated every item through the real flow, and a QA
    user; returns (study id, QA user id)."""
    with sessions() as s, s.begin():
        made = make_study(s, n_items, raters_per_item=3, n_reviewers=3, name="qa-mig")
        update_settings(made.study, qa_share=1.0)
        checker = User(username="checker", role="qa", password_hash="x")
        s.add(checker)
        s.flush()
        study_id, reviewers, checker_id = made.study.id, [u.id for u in made.reviewers], checker.id
    for reviewer in reviewers:
        for _ in range(n_items):
            with sessions() as s, s.begin():
                lease = next_assignment(s, s.get(Study, study_id), reviewer)
                submit(s, lease.assignment_id, reviewer, Submission(score=3))
    return study_id, checker_id


def _queue(sessions, study_id: int, checker: int) -> tuple[list[int], qa.QAProgress, int | None]:
    with sessions() as s:
        study = s.get(Study, study_id)
        task = qa.next_qa_task(s, study, checker)
        return qa.qa_sample(s, study), qa.qa_progress(s, study, checker), task and task.rating_id


def _downgrade(eng, revision: str) -> None:
    cfg = alembic_config(eng.url)
    with eng.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def test_upgrade_moves_the_settings_sample_into_the_table_and_the_queue_is_unchanged(engine):
    sessions = make_session_factory(engine)
    study_id, checker = _rated_study(sessions)
    with sessions() as s, s.begin():
        sampled = qa.sample_for_qa(s, s.get(Study, study_id), 0.5, seed=3)
        qa.accept(s, sampled[0], checker)  # one verdict, so progress has something judged
    before = _queue(sessions, study_id, checker)
    assert before[0] == sampled and before[1] == qa.QAProgress(len(sampled), 1, len(sampled) - 1)

    _downgrade(engine, "0005")  # the schema before the table: the sample lives in the settings
    assert "qa_samples" not in inspect(engine).get_table_names()
    with engine.begin() as conn:
        stored = conn.execute(select(_studies.c.settings).where(_studies.c.id == study_id)).scalar()
        assert stored == {"qa_share": 1.0, "qa_sample": sampled}
        # As an old database may hold it: plus an id whose rating does not exist.
        conn.execute(update(_studies).where(_studies.c.id == study_id)
                     .values(settings={**stored, "qa_sample": [*sampled, 10**6]}))

    upgrade(engine)
    assert current_revision(engine) == head_revision()
    with sessions() as s:
        rows = s.execute(select(QASample.rating_id, QASample.sampled_at)
                         .where(QASample.study_id == study_id).order_by(QASample.rating_id)).all()
        assert [r for r, _at in rows] == sampled  # exactly the sampled ratings, the dangling id dropped
        assert {at for _r, at in rows} == {None}  # the settings never said when they were drawn
        study = s.get(Study, study_id)
        assert study.settings == {"qa_share": 1.0}  # the key is gone
        assert StudySettings.of(study) == StudySettings(qa_share=1.0)
    assert _queue(sessions, study_id, checker) == before
    with sessions() as s, s.begin():
        assert qa.sample_for_qa(s, s.get(Study, study_id), 0.5, seed=3) == []  # still at the rate


def test_one_row_per_rating(engine):
    sessions = make_session_factory(engine)
    study_id, _checker = _rated_study(sessions, n_items=2)
    with sessions() as s, s.begin():
        first = qa.sample_for_qa(s, s.get(Study, study_id), 1.0)
        assert qa.sample_for_qa(s, s.get(Study, study_id), 1.0) == []
    with pytest.raises(IntegrityError), sessions() as s, s.begin():
        s.add(QASample(study_id=study_id, rating_id=first[0]))
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(QASample)) == len(first) == 6


def test_concurrent_samplers_never_draw_a_rating_twice_postgresql(pg_url):
    """The second sampler waits on the study's row lock while the first holds it, then finds the
    strata full: no duplicate rows and no draw past the rate."""
    eng = make_engine(pg_url)
    upgrade(eng)
    sessions = make_session_factory(eng)
    try:
        study_id, _checker = _rated_study(sessions)
        result: dict[str, list[int]] = {}

        def second_sampler() -> None:
            with sessions() as s, s.begin():
                result["drawn"] = qa.sample_for_qa(s, s.get(Study, study_id), 0.5, seed=9)

        with sessions() as first, first.begin():
            drawn = qa.sample_for_qa(first, first.get(Study, study_id), 0.5, seed=9)
            thread = threading.Thread(target=second_sampler)
            thread.start()
            waiting = text("SELECT count(*) FROM pg_locks WHERE NOT granted")
            with eng.connect() as conn:
                wait_until(lambda: conn.execute(waiting).scalar(), timeout=30,
                           what="the second sampler to wait for the study's row lock")
        thread.join(timeout=30)
        assert not thread.is_alive() and result["drawn"] == []
        with sessions() as s:
            ids = list(s.scalars(select(QASample.rating_id).where(QASample.study_id == study_id)))
        assert sorted(ids) == drawn and len(drawn) == 3 * 3  # ceil(0.5 * 6) per reviewer
    finally:
        eng.dispose()
