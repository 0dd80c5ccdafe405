"""The write path on SQLite: one write connection per process (threads queue, never fight over the
lock), retried `BEGIN IMMEDIATE`, a plain `DatabaseBusy` instead of "database is locked", and
reads that take no write lock and cannot write."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import OperationalError

import db.engine
from db.models import Rating, Study
from review.config import load_settings
from review.database import DatabaseBusy, open_lab
from review.labeling.assignment import next_assignment
from review.labeling.ratings import Submission, submit
from tests.support import build_study, make_study
from tests.support_app import app, login, texts


def _hold_write_lock(path: str, seconds: float, started: threading.Event) -> threading.Thread:
    """Another connection (as another process would) holds SQLite's write lock for `seconds`."""
    def hold() -> None:
        con = sqlite3.connect(path, isolation_level=None)
        con.execute("BEGIN IMMEDIATE")
        started.set()
        time.sleep(seconds)
        con.execute("ROLLBACK")
        con.close()
    thread = threading.Thread(target=hold)
    thread.start()
    started.wait(5)
    return thread


def test_threads_of_one_process_queue_for_one_write_connection(lab):
    with lab.write() as s:
        made = make_study(s, 40, raters_per_item=2, n_reviewers=8)
        study_id, reviewers = made.study.id, [u.id for u in made.reviewers]
    in_use, most = 0, 0
    guard = threading.Lock()

    @event.listens_for(lab.engine, "checkout")
    def _out(*_args) -> None:  # noqa: ANN002
        nonlocal in_use, most
        with guard:
            in_use += 1
            most = max(most, in_use)

    @event.listens_for(lab.engine, "checkin")
    def _in(*_args) -> None:  # noqa: ANN002
        nonlocal in_use
        with guard:
            in_use -= 1

    errors: list[BaseException] = []

    def reviewer(uid: int) -> None:
        try:
            while True:
                with lab.write() as s:
                    lease = next_assignment(s, s.get(Study, study_id), uid)
                    if lease is None:
                        return
                    submit(s, lease.assignment_id, uid, Submission(score=4))
        except BaseException as exc:  # noqa: BLE001 - the test reports every failure
            errors.append(exc)

    threads = [threading.Thread(target=reviewer, args=(uid,)) for uid in reviewers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert most == 1  # never two write connections at once in this process
    with lab.read() as s:
        per_item = Counter(s.scalars(select(Rating.item_id).where(Rating.active.is_(True))))
        assert s.execute(text("PRAGMA integrity_check")).scalar() == "ok"
    assert len(per_item) == 40 and set(per_item.values()) == {2}


def test_a_lock_held_past_the_retries_is_a_plain_message_and_nothing_is_written(settings, monkeypatch):
    monkeypatch.setattr(db.engine, "SQLITE_BUSY_TIMEOUT_MS", 100)
    lab = open_lab(load_settings(), migrate=True)
    started = threading.Event()
    holder = _hold_write_lock(str(settings.database_url.database), 2.0, started)
    t0 = time.monotonic()
    with pytest.raises(DatabaseBusy) as refusal:
        with lab.write() as s:
            make_study(s, 2)
    waited = time.monotonic() - t0
    holder.join()
    assert "nothing was saved" in str(refusal.value) and "Try again" in str(refusal.value)
    assert 0.3 <= waited < 2.0  # three attempts of 100 ms plus the pauses between them
    with lab.read() as s:
        assert s.scalar(select(func.count()).select_from(Study)) == 0
    with lab.write() as s:  # the lock is gone: the same write now goes through
        make_study(s, 2)


def test_a_lock_released_within_the_retries_costs_a_wait_not_an_error(settings, monkeypatch):
    monkeypatch.setattr(db.engine, "SQLITE_BUSY_TIMEOUT_MS", 150)
    lab = open_lab(load_settings(), migrate=True)
    started = threading.Event()
    holder = _hold_write_lock(str(settings.database_url.database), 0.3, started)
    with lab.write() as s:  # the first BEGIN IMMEDIATE times out after 150 ms, a retry gets in
        make_study(s, 2)
    holder.join()
    with lab.read() as s:
        assert s.scalar(select(func.count()).select_from(Study)) == 1


def test_reads_go_on_while_another_process_writes_and_cannot_write(lab, settings):
    with lab.write() as s:
        make_study(s, 3)
    started = threading.Event()
    holder = _hold_write_lock(str(settings.database_url.database), 1.0, started)
    t0 = time.monotonic()
    with lab.read() as s:
        assert s.scalar(select(func.count()).select_from(Study)) == 1
    assert time.monotonic() - t0 < 0.5  # no wait for the writer
    holder.join()
    with pytest.raises(OperationalError, match="readonly"), lab.read() as s:
        s.execute(text("UPDATE studies SET name = 'x'"))


def test_the_rating_page_says_the_database_is_busy_and_keeps_the_score(lab, settings, monkeypatch):
    build_study(lab, 3)
    monkeypatch.setattr(db.engine, "SQLITE_BUSY_TIMEOUT_MS", 100)
    at = login(app().run(), "alice")  # the app's Lab opens now, with the short timeout
    at.button(key="score:4").click().run()
    started = threading.Event()
    holder = _hold_write_lock(str(settings.database_url.database), 3.0, started)
    try:
        at.button(key="submit").click().run()
    finally:
        holder.join()
    assert not at.exception, [e.value for e in at.exception]
    page = texts(at)
    assert "The database is busy" in page and "Your score: 4" in page  # nothing lost on screen
    with lab.read() as s:
        assert s.scalar(select(func.count()).select_from(Rating)) == 0
    at.button(key="submit").click().run()  # the lock is gone: the same rating goes through
    assert not at.exception
    with lab.read() as s:
        assert list(s.scalars(select(Rating.score))) == [4]
