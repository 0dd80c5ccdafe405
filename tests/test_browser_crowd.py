"""Crowd participants in a real Chromium at 1366x768 (issue 23): one arrives by a pool's link with
Prolific's parameters, fails the viewing check once (a narrow window, wrong digits), makes the
window wider and passes, trains, fails qualification and gets the screened-out code with nothing
rated; another passes, rates with a trap in the queue, gets the completion code, and coming back
by the same link with the same id gets the same code, not a second one. Neither reaches another
page by URL, and nothing needs sideways scrolling. And the admin's side: the Crowd page shows the
Prolific pool's recruitment link with Prolific's placeholders, runs cleansing on participants who
went through the real flow, reads each decision, and nothing runs off the side of the window.
`streamlit run` in a subprocess, Debian's Chromium driven by Playwright; never skipped."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlencode

from sqlalchemy import func, select

from db.models import Assignment, Participant, ParticipantProbe, Rating
from review.accounts.links import lab_secret, sign_link
from review.database import Lab
from review.enums import AssignmentStatus, ProbePhase
from review.labeling import crowd_flow
from review.labeling.pools import PoolSettings, PoolSpec, add_pool
from review.labeling.viewing_report import reported
from tests.support import build_study, sample_pictures, wait_until
from tests.support_browser import chromium_page, log_in_admin, streamlit_server, wait_idle
from tests.support_crowd import QUICK_FLOW, TRAINING_REASON, crowd_session, crowd_study

LAPTOP = (1366, 768)
CONSENT = "You rate how faithful restored photos are. <b>Your answers</b> are kept under a pseudonym."
REASON = TRAINING_REASON
NO_SIDEWAYS_SCROLL = "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
SHOTS = os.environ.get("REVIEW_CROWD_SHOTS", "")  # a folder: screenshots of each stage go there


def _setup(lab: Lab) -> tuple[int, str]:
    """The crowd study of tests/support_crowd.py, with photos, and a Prolific pool: 2 training,
    4 qualification, 4 live items with one trap."""
    flow = PoolSettings(training_items=2, qualification_items=4, items_per_session=4, trap_rate=0.25)
    return crowd_study(lab, lab_secret(lab.settings),
                       PoolSpec(name="Prolific crowd", platform="prolific", completion_code="C1A2B3",
                                screened_out_code="SCR-OUT-9",
                                return_url="https://app.prolific.com/submissions/complete", flow=flow),
                       CONSENT, pictures=sample_pictures())


def _link(url: str, token: str, prolific_pid: str) -> str:
    return f"{url}/_lab/join?" + urlencode({"t": token, "PROLIFIC_PID": prolific_pid, "STUDY_ID": "S77",
                                           "SESSION_ID": f"sess-{prolific_pid}"})


def _newest_participant(lab: Lab) -> tuple[int, int]:
    with lab.read() as s:
        p = s.scalars(select(Participant).order_by(Participant.id.desc())).first()
        return p.id, p.user_id


def _shot(page, name: str) -> None:  # noqa: ANN001
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"))


def _fits(page) -> None:  # noqa: ANN001
    assert page.evaluate(NO_SIDEWAYS_SCROLL)


def _click(page, key: str) -> None:  # noqa: ANN001
    page.locator(f".st-key-{key} button").click()
    wait_idle(page)


def _answer_in_view(page, score: int) -> None:  # noqa: ANN001
    """Pick a score and submit, after checking the images, the scores and Submit fit the window."""
    page.locator(".fv-panel img").first.wait_for()
    wait_idle(page)
    for control in (page.locator(f".st-key-p_score-{score} button"), page.locator(".st-key-p_submit button")):
        box = control.bounding_box()
        assert box is not None and 0 <= box["y"] and box["y"] + box["height"] <= LAPTOP[1], box
    _fits(page)
    _click(page, f"p_score-{score}")
    _click(page, "p_submit")


def _consent(page) -> None:  # noqa: ANN001
    page.get_by_text("Before you start").wait_for()
    page.get_by_text(CONSENT, exact=True).wait_for()  # plain text: the tags show as typed
    assert page.get_by_text("Page not found").count() == 0  # the link lands on the page itself
    # the participant's one page, full width: no sidebar, no menu, no "Log out"
    assert page.locator("[data-testid='stSidebar']").count() == 0
    assert page.get_by_role("button", name="Log out").count() == 0
    _fits(page)
    _shot(page, "1-consent")
    page.get_by_text("I have read the text above and agree to take part.").click()
    wait_idle(page)
    _click(page, "p_continue")
    page.get_by_text("Check your screen").wait_for()


def _type_digits(page, digits: str) -> None:  # noqa: ANN001
    field = page.get_by_label("Digits you see, left to right")
    field.fill(digits)
    field.press("Enter")
    wait_idle(page)


def _stage(lab: Lab, pid: int) -> str:
    with lab.read() as s:
        return s.get(Participant, pid).stage


def test_a_participant_screened_out_and_one_who_completes(chromium, lab, settings):
    pool_id, token = _setup(lab)
    with streamlit_server(settings.data_dir) as url, chromium_page((1000, 768)) as page:
        # --- the first participant: a narrow window and wrong digits, then a retry that passes
        page.goto(_link(url, token, "PPA111"))
        page.wait_for_url(f"{url}/")
        _consent(page)
        pid, user_id = _newest_participant(lab)
        page.get_by_text("Your browser window is 1000 px wide.").wait_for()
        wait_until(lambda: getattr(_report(lab, pid), "inner_width", None) == 1000,
                   timeout=15, what="the window's measure at the route")
        _type_digits(page, "000")
        _click(page, "p_check")
        warning = page.locator("[data-testid='stAlert']").first
        warning.get_by_text("1000 px wide").wait_for()
        assert "digits you typed" in warning.inner_text() and "Attempts left: 2" in warning.inner_text()
        _shot(page, "2-viewing-failed")
        page.set_viewport_size({"width": LAPTOP[0], "height": LAPTOP[1]})  # a wider window: measured again
        page.get_by_text("Your browser window is 1366 px wide.").wait_for()
        wait_until(lambda: _report(lab, pid).inner_width == LAPTOP[0], timeout=15,
                   what="the new width at the route")
        _fits(page)
        _type_digits(page, "".join(map(str, crowd_flow.contrast_digits(pid)))[:3])
        _click(page, "p_check")
        page.get_by_text("Training: example 1 of 2").wait_for()
        assert _stage(lab, pid) == "training"

        for k in (1, 2):  # training: the guideline's answer and its reason after each answer
            page.get_by_text(f"Training: example {k} of 2").wait_for()
            _answer_in_view(page, 5)
            page.get_by_text("The guideline expects").wait_for()
            page.get_by_text(REASON).wait_for()
            _fits(page)
            if k == 1:
                _shot(page, "3-training-feedback")
            _click(page, "p_next")
        for k in range(1, 5):  # qualification: gold expects 4-5, these answers are all wrong
            page.get_by_text(f"Qualification: item {k} of 4").wait_for()
            assert page.get_by_text("The guideline expects").count() == 0
            _answer_in_view(page, 1)
        page.get_by_text("Thank you for your time").wait_for()
        page.get_by_role("heading", name="SCR-OUT-9").wait_for()
        _fits(page)
        _shot(page, "4-screened-out")
        assert _stage(lab, pid) == "screened_out"
        with lab.read() as s:
            assert s.scalar(select(func.count(Rating.id)).where(Rating.reviewer_id == user_id)) == 0

        for path in ("studies", "rate", "qa", "analysis", "users", "audit"):  # no other page by URL
            page.goto(f"{url}/{path}")
            page.get_by_role("heading", name="SCR-OUT-9").wait_for()
            wait_idle(page)
            for heading in ("Studies", "QA review", "Analysis", "Users", "Audit log"):
                assert page.get_by_role("heading", name=heading, exact=True).count() == 0, (path, heading)
            assert page.get_by_text("Your score:").count() == 0
            nav = page.locator("[data-testid='stSidebarNavLink']")
            assert nav.count() == 0 or [nav.nth(i).inner_text() for i in range(nav.count())] == ["Your study"]

        # --- the second participant: passes, rates four items and a trap, gets the code once
        page.context.clear_cookies()
        page.goto(_link(url, token, "PPB222"))
        page.wait_for_url(f"{url}/")
        _consent(page)
        pid2, user2 = _newest_participant(lab)
        assert pid2 != pid
        page.get_by_text("Your browser window is 1366 px wide.").wait_for()
        _type_digits(page, "".join(map(str, crowd_flow.contrast_digits(pid2))))
        _shot(page, "5-viewing")
        _click(page, "p_check")
        for k in (1, 2):
            page.get_by_text(f"Training: example {k} of 2").wait_for()
            _answer_in_view(page, 2)
            page.get_by_text("Right.").wait_for()
            _click(page, "p_next")
        for k in range(1, 5):
            page.get_by_text(f"Qualification: item {k} of 4").wait_for()
            _answer_in_view(page, 4)
        page.get_by_text("0 of 4 items done").wait_for()
        assert _stage(lab, pid2) == "live"

        traps = 0
        for step in range(5):  # four items and one trap, shown alike
            wait_until(lambda: _step_on_screen(lab, pid2, user2), timeout=30, what=f"step {step + 1} shown")
            wait_idle(page)
            trap = _open_trap(lab, pid2)
            wanted = trap[1] if trap else 4
            if trap:
                traps += 1
                _shot(page, "6-live-trap")
            assert page.get_by_text("Rate how faithful the restoration is").count() == 1
            _answer_in_view(page, wanted)
            wait_until(lambda n=step + 1: _answers(lab, pid2, user2) == n, timeout=30,
                       what=f"answer {step + 1} stored")
        assert traps == 1
        page.get_by_text("Thank you: you have finished").wait_for()
        page.get_by_role("heading", name="C1A2B3").wait_for()
        back = page.get_by_role("link", name="Back to the platform")
        assert back.get_attribute("href") == "https://app.prolific.com/submissions/complete"
        _fits(page)
        _shot(page, "7-completed")
        with lab.read() as s:
            assert s.scalar(select(func.count(Rating.id)).where(Rating.reviewer_id == user2)) == 4
            trap_row = s.scalars(select(ParticipantProbe).where(
                ParticipantProbe.participant_id == pid2, ParticipantProbe.phase == ProbePhase.TRAP)).one()
            assert trap_row.correct

        page.context.clear_cookies()  # coming back by the link with the same id: the same code
        page.goto(_link(url, token, "PPB222"))
        page.wait_for_url(f"{url}/")
        page.get_by_role("heading", name="C1A2B3").wait_for()
        with lab.read() as s:
            assert s.scalar(select(func.count(Participant.id)).where(Participant.pool_id == pool_id)) == 2
            assert s.get(Participant, pid2).end_code == "C1A2B3"


def _report(lab: Lab, pid: int):  # noqa: ANN202
    with lab.read() as s:
        return reported(s, pid)


def _open_trap(lab: Lab, pid: int) -> tuple[int, int] | None:
    """The trap on screen now, if it is one: (probe id, the answer its image asks for)."""
    with lab.read() as s:
        row = s.scalars(select(ParticipantProbe).where(
            ParticipantProbe.participant_id == pid, ParticipantProbe.phase == ProbePhase.TRAP.value,
            ParticipantProbe.answered_at.is_(None))).first()
        return (row.id, row.expected_min) if row else None


def _step_on_screen(lab: Lab, pid: int, user_id: int) -> bool:
    """The page has claimed what comes next: an item's lease or a trap (none is open between an
    answer and the next claim)."""
    with lab.read() as s:
        leased = s.scalar(select(func.count(Assignment.id)).where(
            Assignment.reviewer_id == user_id, Assignment.status == AssignmentStatus.LEASED)) or 0
    return leased > 0 or _open_trap(lab, pid) is not None


def _answers(lab: Lab, pid: int, user_id: int) -> int:
    """Live answers stored: ratings and answered traps."""
    with lab.read() as s:
        rated = s.scalar(select(func.count(Rating.id)).where(Rating.reviewer_id == user_id)) or 0
        trapped = s.scalar(select(func.count(ParticipantProbe.id)).where(
            ParticipantProbe.participant_id == pid, ParticipantProbe.phase == ProbePhase.TRAP.value,
            ParticipantProbe.answered_at.is_not(None))) or 0
        return rated + trapped


def test_the_crowd_page_at_1366x768(chromium, lab, settings) -> None:  # noqa: ANN001
    study_id = build_study(lab, 12, raters_per_item=2)
    secret = lab_secret(settings)
    with lab.write() as s:
        pool = add_pool(s, study_id, PoolSpec(name="Prolific wave 1", platform="prolific",
                                              completion_code="C1", flow=PoolSettings(**QUICK_FLOW)))
        token = sign_link(secret, study_id, pool.id, pool.link_version)
    for who, kwargs in (("a1", {}), ("a2", {"score": lambda _i: 4}), ("a3", {"trap_right": False})):
        crowd_session(lab, secret, token, {"PROLIFIC_PID": who, "STUDY_ID": "s1", "SESSION_ID": f"x{who}"},
                      **kwargs)
    with streamlit_server(settings.data_dir) as url, chromium_page((1366, 768)) as page:
        log_in_admin(page, url)
        page.get_by_test_id("stSidebarNav").get_by_text("Crowd", exact=True).click()
        page.get_by_role("heading", name="Crowd").wait_for()
        wait_idle(page)
        link = page.get_by_test_id("stCode").first.inner_text()
        assert link.replace("\n", "").startswith(f"{url}/_lab/join?t=")
        assert "PROLIFIC_PID={{%PROLIFIC_PID%}}" in link.replace("\n", "")
        page.get_by_text("Data cleansing", exact=True).click()
        wait_idle(page)
        page.get_by_role("button", name="Run cleansing").click()
        page.get_by_text("3 submissions cleansed: 1 accept and use, 1 accept but do not use, "
                         "1 reject.").wait_for()
        wait_idle(page)
        # the page stays on its section after the action
        assert page.get_by_text("1 accept and use · 1 accept, do not use · 1 reject").is_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 1366
