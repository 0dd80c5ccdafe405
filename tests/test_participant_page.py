"""The participant page (review/ui/participant_page.py) through AppTest, and the `/_lab/viewing`
route called as Starlette calls it: a participant's menu is this page alone and every other
page refuses them; consent needs the box ticked; the viewing check lists what to change and
allows a retry; training shows the guideline's answer and reason; a failed qualification ends
with the screened-out code and no rating; live items and a trap, then the completion code, the
same one on coming back."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response
from streamlit.testing.v1 import AppTest

from db.models import Participant, ParticipantProbe, Rating
from review.accounts.links import lab_secret
from review.accounts.sessions import COOKIE
from review.database import Lab
from review.enums import ProbePhase, Role
from review.labeling import crowd_flow
from review.labeling.participants import join
from review.labeling.pools import PoolSettings, PoolSpec
from review.labeling.viewing_report import WindowReport, reported, store_report
from review.ui import server
from review.ui.app import PAGE_INFO, menu
from review.ui.common import SessionUser
from tests.support_app import TIMEOUT, page_app, texts
from tests.support_crowd import TRAINING_REASON, crowd_study

pytestmark = pytest.mark.slow  # AppTest runs the page's script: a second or more each

ROOT = Path(__file__).resolve().parent.parent
PAGES = ROOT / "review" / "ui" / "pages"
CONSENT = "I agree to take part. <b>not bold</b> **not strong**"
REASON = TRAINING_REASON


def _setup(lab: Lab, flow: PoolSettings) -> str:
    """The crowd study of tests/support_crowd.py with a pool of this `flow`; returns a link token."""
    return crowd_study(lab, lab_secret(lab.settings),
                       PoolSpec(name="crowd", completion_code="DONE-77", screened_out_code="OUT-13",
                                return_url="https://example.org/back", flow=flow), CONSENT)[1]


def _participant(lab: Lab, token: str, pid: str) -> tuple[int, SessionUser, str]:
    """(participant id, the page's user, the session cookie's token)."""
    with lab.write() as s:
        joined = join(s, lab_secret(lab.settings), token, {"pid": pid}, f"addr-{pid}")
    user = SessionUser(joined.user_id, f"p-{pid}", Role.PARTICIPANT, f"p-{pid}")
    return joined.participant_id, user, joined.token


def _stage(lab: Lab, pid: int) -> str:
    with lab.read() as s:
        return s.get(Participant, pid).stage


def _run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _answer(at: AppTest, score: int) -> AppTest:
    at.button(key=f"p_score:{score}").click()
    _run(at)
    at.button(key="p_submit").click()
    return _run(at)


# ----------------------------------------------------------------------------- access


def test_a_participant_sees_this_page_alone_and_every_other_page_refuses_them(lab: Lab) -> None:
    assert menu(Role.PARTICIPANT) == ("participate",)
    assert all("participate" not in menu(role) for role in Role if role != Role.PARTICIPANT)
    token = _setup(lab, PoolSettings())
    _pid, user, _cookie = _participant(lab, token, "menu1")
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=TIMEOUT)
    at.session_state["user"] = user  # signed in, as the cookie would do
    _run(at)
    assert {Path(str(i["script_path"])).name for i in at._registered_pages.values()} == {"participate.py"}
    assert "Before you start" in texts(at)
    for name in PAGE_INFO:
        if name == "participate":
            continue
        page = AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=TIMEOUT)
        page.session_state["user"] = user
        page.run()
        assert [e.value for e in page.error] == ["This page is not available to the participant role."], name


# ----------------------------------------------------------------------------- the stages


def test_consent_viewing_check_training_and_a_failed_qualification(lab: Lab) -> None:
    token = _setup(lab, PoolSettings(training_items=2, qualification_items=4, max_viewing_attempts=3))
    pid, user, _cookie = _participant(lab, token, "q1")
    at = _run(page_app("participant_page", user))
    assert CONSENT in [t.value for t in at.text]  # plain text: neither HTML nor Markdown
    at.button(key="p_continue").click()
    _run(at)
    assert "Tick the box" in at.warning[0].value and _stage(lab, pid) == "consent"
    at.checkbox(key="p_consent").check()
    at.button(key="p_continue").click()
    _run(at)
    assert _stage(lab, pid) == "viewing" and "Check your screen" in texts(at)

    with lab.write() as s:  # what the page's script posts (the route is tested below)
        assert store_report(s, user.id, WindowReport(900, 1.0, 1.0))
    at.text_input(key="p_contrast").input("000")
    at.button(key="p_check").click()
    _run(at)
    warning = at.warning[0].value
    assert "900 px wide" in warning and "digits you typed" in warning and "Attempts left: 2" in warning
    assert _stage(lab, pid) == "viewing"
    with lab.write() as s:  # a wider window, the right digits
        store_report(s, user.id, WindowReport(1366, 1.0, 1.0))
    digits = "".join(map(str, crowd_flow.contrast_digits(pid)))
    at.text_input(key="p_contrast").input(digits[:3])
    at.button(key="p_check").click()
    _run(at)
    assert _stage(lab, pid) == "training" and "Training: example 1 of 2" in texts(at)

    at.button(key="p_submit").click()  # no score picked yet: nothing sent
    _run(at)
    assert "Pick a score first" in at.warning[0].value
    _answer(at, 5)
    assert "the guideline expects **2 · Annoying to 3 · Slightly annoying**" in at.warning[0].value
    assert f"Why: {REASON}" in [t.value for t in at.text]
    at.button(key="p_next").click()
    _run(at)
    assert "Training: example 2 of 2" in texts(at)
    _answer(at, 2)
    assert "Right." in at.success[0].value
    at.button(key="p_next").click()
    _run(at)
    assert "Qualification: item 1 of 4" in texts(at) and "guideline expects" not in texts(at)
    for k in range(4):
        assert f"Qualification: item {k + 1} of 4" in texts(at)
        _answer(at, 1)  # gold expects 4-5: every answer wrong
    assert _stage(lab, pid) == "screened_out"
    assert "Thank you for your time" in texts(at) and at.title[0].value == "OUT-13"
    assert at.code[0].value == "OUT-13"
    with lab.read() as s:
        assert s.scalars(select(Rating).where(Rating.reviewer_id == user.id)).all() == []


def test_live_items_with_a_trap_then_one_completion_code(lab: Lab) -> None:
    flow = PoolSettings(viewing_check=False, contrast_check=False, training_items=0, qualification_items=0,
                        items_per_session=4, trap_rate=0.25)
    token = _setup(lab, flow)
    pid, user, _cookie = _participant(lab, token, "live1")
    at = _run(page_app("participant_page", user))
    at.checkbox(key="p_consent").check()
    at.button(key="p_continue").click()
    _run(at)
    assert _stage(lab, pid) == "live" and "0 of 4 items done" in texts(at)
    (trap_at,) = crowd_flow.trap_positions(pid, 4, 0.25)
    for step in range(5):  # four items and one trap
        progress = texts(at)
        assert f"{min(step, 4) if step <= trap_at else step - 1} of 4 items done" in progress
        assert "trap" not in progress.lower()
        _answer(at, 4)
    assert _stage(lab, pid) == "completed" and at.title[0].value == "DONE-77"
    assert [b.proto.url for b in at.get("link_button")] == ["https://example.org/back"]
    with lab.read() as s:
        assert len(s.scalars(select(Rating).where(Rating.reviewer_id == user.id)).all()) == 4
        trap = s.scalars(select(ParticipantProbe).where(ParticipantProbe.participant_id == pid,
                                                        ParticipantProbe.phase == ProbePhase.TRAP)).one()
        assert trap.answered_at is not None and trap.answer == 4
    again = _run(page_app("participant_page", user))  # coming back: the same code, not a second one
    assert again.title[0].value == "DONE-77"


# ----------------------------------------------------------------------------- the route


def _post(body: bytes, cookie: str | None, content_type: str = "application/json") -> Response:
    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    headers = [(b"content-type", content_type.encode())]
    if cookie:
        headers.append((b"cookie", f"{COOKIE}={cookie}".encode()))
    scope = {"type": "http", "method": "POST", "path": server.VIEWING_PATH, "headers": headers,
             "query_string": b"", "scheme": "http", "server": ("testserver", 80), "client": ("127.0.0.1", 5)}
    return asyncio.run(server._viewing_route(Request(scope, receive)))


def test_the_viewing_route_keeps_a_participants_measure_and_refuses_anything_else(lab: Lab) -> None:
    server._lab.cache_clear()
    token = _setup(lab, PoolSettings())
    pid, _user, cookie = _participant(lab, token, "route1")
    good = json.dumps({"inner_width": 1366, "pixel_ratio": 1.0, "viewport_scale": 1.0}).encode()
    assert _post(good, cookie).status_code == 403  # still at consent: nothing is waiting for it
    with lab.write() as s:
        crowd_flow.give_consent(s, pid)
    assert _post(good, None).status_code == 403
    assert _post(good, "forged-token").status_code == 403
    assert _post(good, cookie, "text/plain").status_code == 415
    assert _post(b"{not json", cookie).status_code == 400
    assert _post(json.dumps({"inner_width": "wide", "pixel_ratio": 1}).encode(), cookie).status_code == 400
    assert _post(json.dumps({"inner_width": 1e12, "pixel_ratio": 1}).encode(), cookie).status_code == 400
    assert _post(b" " * 300 + good, cookie).status_code == 413
    assert _post(good, cookie).status_code == 204
    assert _post(json.dumps({"inner_width": 1500, "pixel_ratio": 1.25}).encode(), cookie).status_code == 204
    with lab.read() as s:
        assert reported(s, pid) == WindowReport(1500, 1.25, None)  # the newest, one row
        rows = s.scalars(select(ParticipantProbe).where(ParticipantProbe.participant_id == pid)).all()
        assert len(rows) == 1
