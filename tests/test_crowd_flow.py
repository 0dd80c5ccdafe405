"""A crowd participant's flow (review.labeling.crowd_flow) on a real study: consent, the viewing
check failed once and passed, training with the expected answer and reason, qualification failed
(screened out, nothing rated) or passed, live items with traps at the drawn positions, the
completion code once and only once, and the admins' live view."""

from __future__ import annotations

import pytest
from sqlalchemy import event, select

from db.models import Participant, ParticipantProbe, Rating, StudyItem
from review.database import Lab
from review.labeling import crowd_flow as flow
from review.labeling.assignment import Lease
from review.labeling.participants import join
from review.labeling.pools import PoolSettings, PoolSpec
from review.labeling.ratings import Submission, submit
from review.media.store import load_rgb
from tests.support_crowd import crowd_study

SECRET = b"f" * 48
GOOD = flow.ViewingMeasures(inner_width=1366, pixel_ratio=1.0, viewport_scale=1.0)


def _setup(lab: Lab, settings: PoolSettings) -> tuple[int, str]:
    """The crowd study of tests/support_crowd.py with a pool of these flow `settings`."""
    spec = PoolSpec(name="crowd", completion_code="DONE-77", screened_out_code="OUT-13",
                    return_url="https://example.org/back", flow=settings)
    return crowd_study(lab, SECRET, spec, "I agree to take part.")


def _join(lab: Lab, token: str, pid: str) -> int:
    with lab.write() as s:
        return join(s, SECRET, token, {"pid": pid}, f"a-{pid}").participant_id


def _through_viewing(lab: Lab, pid: int) -> None:
    with lab.write() as s:
        flow.give_consent(s, pid)
        digits = "".join(map(str, flow.contrast_digits(pid)))
        assert flow.check_viewing(s, pid, flow.ViewingMeasures(1366, 1.0, 1.0, digits[:3])).passed


def _stage(lab: Lab, pid: int) -> str:
    with lab.read() as s:
        return s.get(Participant, pid).stage


def test_the_viewing_check_explains_and_lets_the_participant_retry(lab: Lab) -> None:
    _pool, token = _setup(lab, PoolSettings(max_viewing_attempts=2))
    pid = _join(lab, token, "v1")
    with lab.read() as s:
        assert flow.consent_text(s, pid) == "I agree to take part."
    with lab.write() as s:
        flow.give_consent(s, pid)
        verdict = flow.check_viewing(s, pid, flow.ViewingMeasures(800, 0.8, 1.0, "000"))
    assert not verdict.passed and verdict.attempts_left == 1
    assert len(verdict.problems) == 3 and "800 px wide" in verdict.problems[0]
    assert "zoom to 100 %" in verdict.problems[1] and "digits you typed" in verdict.problems[2]
    with lab.write() as s:
        digits = "".join(map(str, flow.contrast_digits(pid)))
        assert flow.check_viewing(s, pid, flow.ViewingMeasures(1366, 1.0, 1.0, digits[:3])).passed
    assert _stage(lab, pid) == "training"
    with pytest.raises(flow.FlowError), lab.write() as s:  # a replayed check cannot run twice
        flow.check_viewing(s, pid, GOOD)


def test_failing_the_viewing_check_too_often_screens_out_with_the_code(lab: Lab) -> None:
    _pool, token = _setup(lab, PoolSettings(max_viewing_attempts=1, contrast_check=False))
    pid = _join(lab, token, "v2")
    with lab.write() as s:
        flow.give_consent(s, pid)
        assert flow.check_viewing(s, pid, flow.ViewingMeasures(None, None, None)).attempts_left == 0
    with lab.write() as s:
        done = flow.next_live(s, pid, lab.store)
    assert done == flow.Done("screened_out", "OUT-13", "https://example.org/back")


def test_training_shows_the_expected_answer_and_the_reason(lab: Lab) -> None:
    _pool, token = _setup(lab, PoolSettings(training_items=2, qualification_items=4))
    pid = _join(lab, token, "t1")
    _through_viewing(lab, pid)
    with lab.write() as s:
        first = flow.next_probe_item(s, pid)
        feedback = flow.answer_training(s, pid, first, 5)
    assert (feedback.right, feedback.expected_min, feedback.expected_max) == (False, 2, 3)
    assert feedback.reason.startswith("The face changed")
    with lab.write() as s:
        second = flow.next_probe_item(s, pid)
        assert second != first and flow.answer_training(s, pid, second, 2).right
    assert _stage(lab, pid) == "qualification"


def test_a_failed_qualification_screens_out_and_leaves_no_rating(lab: Lab) -> None:
    _pool, token = _setup(lab, PoolSettings(training_items=0, qualification_items=4))
    pid = _join(lab, token, "q1")
    _through_viewing(lab, pid)
    assert _stage(lab, pid) == "qualification"  # no training wanted: passed over
    for _ in range(4):
        with lab.write() as s:
            flow.answer_qualification(s, pid, flow.next_probe_item(s, pid), 1)  # gold expects 4-5
    with lab.write() as s:
        assert flow.qualification_score(s, pid) == (0, 4)
        assert flow.next_live(s, pid, lab.store) == flow.Done("screened_out", "OUT-13", "https://example.org/back")
    with lab.read() as s:
        user_id = s.get(Participant, pid).user_id
        assert s.scalars(select(Rating).where(Rating.reviewer_id == user_id)).all() == []


def test_a_passing_participant_rates_meets_traps_and_gets_one_completion_code(lab: Lab) -> None:
    settings = PoolSettings(training_items=0, qualification_items=4, items_per_session=5, trap_rate=0.4)
    _pool, token = _setup(lab, settings)
    pid = _join(lab, token, "ok1")
    _through_viewing(lab, pid)
    for _ in range(4):
        with lab.write() as s:
            flow.answer_qualification(s, pid, flow.next_probe_item(s, pid), 3)  # within one step of 4-5
    assert _stage(lab, pid) == "live"
    positions = flow.trap_positions(pid, 5, 0.4)
    assert len(positions) == 2 and 0 not in positions
    seen: list[str] = []
    with lab.read() as s:
        user_id = s.get(Participant, pid).user_id
    for _ in range(20):
        with lab.write() as s:
            step = flow.next_live(s, pid, lab.store)
            if isinstance(step, flow.Done):
                break
            if isinstance(step, flow.Trap):
                seen.append(f"trap@{step.position}")
                probe = s.get(ParticipantProbe, step.probe_id)
                assert load_rgb(lab.store.root, step.view.restoration.relpath).size == (96, 72)
                flow.answer_trap(s, pid, step.probe_id, probe.expected_min, seconds=3.0)
            else:
                assert isinstance(step, Lease)
                seen.append("item")
                submit(s, step.assignment_id, user_id, Submission(score=4, time_taken_ms=6000))
    assert step == flow.Done("completed", "DONE-77", "https://example.org/back")
    assert seen.count("item") == 5 and [x for x in seen if x != "item"] == [f"trap@{p}" for p in positions]
    with lab.write() as s:  # coming back: the same code, never a second one
        assert flow.next_live(s, pid, lab.store).code == "DONE-77"
        assert s.get(Participant, pid).end_code == "DONE-77"
        (state,) = flow.live_state(s, _pool)
    assert (state.stage, state.items_done, state.traps_right, state.traps_answered) == ("completed", 5, 2, 2)
    assert state.median_seconds == 6.0 and state.qualification == (4, 4)


def test_the_pools_live_state_reads_every_participant_in_four_queries(lab: Lab) -> None:
    """One participant screened out with 3 of 4 right (80 % needed), two who only joined: each their own
    figures, and the admin view costs the same four queries whatever the pool's size."""
    settings = PoolSettings(training_items=0, qualification_items=4, items_per_session=5, trap_rate=0.4)
    pool, token = _setup(lab, settings)
    first = _join(lab, token, "q1")
    _through_viewing(lab, first)
    for answer in (3, 3, 3, 1):
        with lab.write() as s:
            flow.answer_qualification(s, first, flow.next_probe_item(s, first), answer)
    others = [_join(lab, token, f"new{k}") for k in range(2)]
    statements: list[str] = []
    listen = lambda *args: statements.append(args[2])  # noqa: E731  (conn, cursor, statement, ...)
    event.listen(lab.read_engine, "before_cursor_execute", listen)
    try:
        with lab.read() as s:
            states = flow.live_state(s, pool)
    finally:
        event.remove(lab.read_engine, "before_cursor_execute", listen)
    assert [st.participant_id for st in states] == [first, *others]
    assert states[0].qualification == (3, 4) and states[0].stage == "screened_out"
    assert all(st.qualification == (0, 0) and st.items_done == 0 and st.traps_answered == 0
               and st.median_seconds is None for st in states[1:])
    assert len([q for q in statements if q.lstrip().upper().startswith("SELECT")]) == 4


def test_training_examples_are_never_live_items(lab: Lab) -> None:
    settings = PoolSettings(training_items=0, qualification_items=0, items_per_session=50, trap_rate=0.0,
                            viewing_check=False, contrast_check=False)
    _pool, token = _setup(lab, settings)
    pid = _join(lab, token, "all")
    with lab.write() as s:
        flow.give_consent(s, pid)
    assert _stage(lab, pid) == "live"
    rated: list[int] = []
    with lab.read() as s:
        user_id = s.get(Participant, pid).user_id
    while True:
        with lab.write() as s:
            step = flow.next_live(s, pid, lab.store)
            if isinstance(step, flow.Done):
                break
            rated.append(step.item_id)
            submit(s, step.assignment_id, user_id, Submission(score=4))
    with lab.read() as s:
        training = set(s.scalars(select(StudyItem.id).where(StudyItem.is_training.is_(True))))
    assert len(rated) == 10 and not training & set(rated)
