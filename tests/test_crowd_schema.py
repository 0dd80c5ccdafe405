"""Migration 0014 (rater pools and crowd participants): an existing lab upgrades in place with its
rows kept, the users table then admits the participant role and still refuses unknown ones, the
new tables keep their rules, and nothing about an existing study's reviewers changes."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError

from db.engine import make_engine, make_session_factory
from db.migrate import current_revision, head_revision, upgrade
from db.models import Participant, RaterPool, StudyReviewer, User


def _old_lab(url: str):
    eng = make_engine(url)
    upgrade(eng, "0013")
    yes, no = ("1", "0") if url.startswith("sqlite") else ("true", "false")
    with eng.begin() as conn:
        conn.execute(text(
            "INSERT INTO users (username, display_name, role, password_hash, active, created_at, simulated) "
            f"VALUES ('old', 'Old Timer', 'reviewer', 'h', {yes}, CURRENT_TIMESTAMP, {no})"))
    upgrade(eng)
    return eng


def _check(eng) -> None:
    assert current_revision(eng) == head_revision()
    sessions = make_session_factory(eng)
    with sessions() as s, s.begin():
        assert s.scalar(select(User.display_name).where(User.username == "old")) == "Old Timer"
        s.add(User(username="p-1", role="participant", password_hash=""))
    with pytest.raises(IntegrityError), sessions() as s, s.begin():
        s.add(User(username="x", role="owner", password_hash=""))
    with pytest.raises(IntegrityError), sessions() as s, s.begin():
        s.add(RaterPool(study_id=10**6, name="p"))  # a pool belongs to a study
    cols = {c["name"]: c for c in inspect(eng).get_columns("study_reviewers")}
    assert cols["pool_id"]["nullable"]  # NULL: the study's in-house team, as every existing reviewer
    with sessions() as s:
        assert s.scalars(select(StudyReviewer.pool_id)).all() == []
        assert s.scalars(select(Participant)).all() == []


def test_0014_upgrades_a_lab_in_place_sqlite(tmp_path) -> None:
    eng = _old_lab(f"sqlite:///{tmp_path / 'old.db'}")
    _check(eng)
    with eng.connect() as conn:  # the edited schema is sound
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        assert "'participant'" in conn.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE name = 'users'").scalar()
    eng.dispose()


@pytest.mark.postgres
def test_0014_upgrades_a_lab_in_place_postgresql(pg_url) -> None:
    eng = _old_lab(pg_url)
    _check(eng)
    eng.dispose()
