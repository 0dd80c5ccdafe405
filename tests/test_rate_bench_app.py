"""The reviewer's bench through AppTest (issue 12): undo as a one-step correction, a QA-judged
rating that stays, the history list, QA feedback, deactivation in an open page, and login limits.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from db.models import Rating, StudyReviewer, User
from review.accounts.users import set_active
from review.labeling import qa
from review.labeling.study import study_by_id
from tests.support import build_study
from tests.support_app import app, login, texts

pytestmark = pytest.mark.slow


def _aid(at, sid: int) -> int:  # noqa: ANN001
    return at.session_state[f"rate:{sid}"]["cur"].assignment_id


def _rate(at, score: int) -> None:  # noqa: ANN001
    at.button(key=f"score:{score}").click().run()
    at.button(key="submit").click().run()


def _alice_ratings(lab) -> list[tuple[int, bool]]:  # noqa: ANN001
    with lab.sessions() as s:
        uid = s.scalar(select(User.id).where(User.username == "alice"))
        return [(r.score, r.active) for r in s.scalars(
            select(Rating).where(Rating.reviewer_id == uid).order_by(Rating.id))]


def _judge(lab, sid: int, verdict: str) -> None:  # noqa: ANN001
    """QA ("admin") judges alice's first rating; the study shows QA feedback."""
    with lab.sessions() as s, s.begin():
        alice = s.scalar(select(User.id).where(User.username == "alice"))
        boss = s.scalar(select(User.id).where(User.username == "admin"))
        s.scalar(select(StudyReviewer).where(StudyReviewer.reviewer_id == alice)).qa_enabled = True
        rid = s.scalar(select(Rating.id).where(Rating.reviewer_id == alice).order_by(Rating.id))
        if verdict == "correct":
            qa.correct(s, rid, boss, 4, "The eyes changed: that is worse than you thought.")
        else:
            qa.accept(s, rid, boss)
        qa.set_qa_options(s, study_by_id(s, sid), show_feedback=True)


def test_undo_goes_back_one_step_only(lab):
    sid = build_study(lab, 4)
    at = login(app().run(), "alice")
    _rate(at, 2)
    second = _aid(at, sid)
    _rate(at, 3)
    for _ in range(3):
        at.button(key="undo").click().run()
    assert "already changing this answer" in at.info[0].value
    assert _aid(at, sid) == second
    assert "Your score: 3" in texts(at)  # the withdrawn answer is the draft
    assert _alice_ratings(lab) == [(2, True), (3, False)]


def test_a_judged_rating_is_kept_and_the_feedback_is_shown(lab):
    sid = build_study(lab, 4)
    at = login(app().run(), "alice")
    _rate(at, 2)
    _judge(lab, sid, "correct")
    at = login(app().run(), "alice")
    shown = texts(at)
    assert "QA feedback on your ratings (1)" in shown
    assert "you gave **2** — QA: **correct**, corrected to **4**" in shown
    assert "The eyes changed" in shown
    at.button(key="undo").click().run()
    assert "QA has already judged your rating of this item" in at.error[0].value
    assert _alice_ratings(lab) == [(2, False), (4, True)]  # her 2, superseded by QA's 4, stays
    reopen = [b for b in at.button if b.key.startswith("reopen:")]
    assert len(reopen) == 1 and reopen[0].disabled


def test_reopen_an_earlier_answer_from_the_history(lab):
    sid = build_study(lab, 4)
    at = login(app().run(), "alice")
    first = _aid(at, sid)
    _rate(at, 2)
    _rate(at, 4)
    at.button(key=f"reopen:{first}").click().run()
    assert _aid(at, sid) == first
    assert "Your score: 2" in texts(at)
    _rate(at, 5)
    assert sorted(_alice_ratings(lab)) == [(2, False), (4, True), (5, True)]


def test_a_deactivated_reviewer_is_stopped_at_the_next_action(lab):
    sid = build_study(lab, 4)
    at = login(app().run(), "alice")
    assert _aid(at, sid)
    with lab.sessions() as s, s.begin():
        set_active(s, "alice", False)
    at.button(key="score:4").click().run()  # the first action after deactivation ends the page
    assert _alice_ratings(lab) == []
    assert "user" not in at.session_state  # back at the login page
    assert "deactivated" in at.warning[0].value


def test_over_long_login_fields_get_a_plain_message(lab):
    build_study(lab, 1)
    at = login(app().run(), "u" * 5000, "x" * 1_000_000)
    assert "Usernames have at most 64 characters and passwords at most 256" in at.error[0].value
    assert "user" not in at.session_state
