"""The HTTP route that turns a login's one-time code into the HttpOnly session cookie, called as
Starlette calls it (an ASGI request with a body): the cookie's attributes, a code used twice, and
bodies too large to be a code."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from sqlalchemy import select
from starlette.requests import Request

from db.models import AuditEntry, User
from review.accounts.sessions import COOKIE, revoke_all, start_session
from review.labeling.study import closed_at
from review.ui import server
from review.ui.common import SessionUser
from tests.support import build_study
from tests.support_app import page_app


def _post(body: bytes, *, headers: dict[str, str] | None = None, chunks: int = 1):  # noqa: ANN202
    """The route's response to a POST carrying `body` (sent in `chunks` pieces)."""
    size = max(1, len(body) // chunks)
    parts = [body[i:i + size] for i in range(0, len(body), size)] or [b""]
    messages = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1}
                for i, p in enumerate(parts)]

    async def receive() -> dict:
        return messages.pop(0)

    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    scope = {"type": "http", "method": "POST", "path": server.SESSION_PATH, "headers": raw,
             "query_string": b"", "scheme": "http", "server": ("testserver", 80)}
    return asyncio.run(server._session(Request(scope, receive)))


def test_a_fresh_code_becomes_an_httponly_strict_cookie_once(lab):
    build_study(lab, 1)
    server._lab.cache_clear()
    with lab.write() as s:
        _sid, code = start_session(s, 1)
    first = _post(code.encode(), headers={"x-forwarded-proto": "https"})
    cookie = first.headers["set-cookie"]
    assert first.status_code == 204 and cookie.startswith(f"{COOKIE}=")
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower() and "secure" in cookie.lower()
    again = _post(code.encode())
    assert again.status_code == 403 and "set-cookie" not in again.headers


def test_a_body_too_large_to_be_a_code_is_refused_unread(lab):
    server._lab.cache_clear()
    big = b"x" * 10_000
    assert _post(big, headers={"content-length": str(len(big))}).status_code == 413
    # a lying or missing content-length: the route stops reading after MAX_BODY bytes
    assert _post(big, chunks=40).status_code == 413


def test_a_page_action_after_the_session_ended_writes_nothing(lab):
    """Issue 21: every page action checks the tab's session in its own transaction (run_action),
    so an admin's open Studies page cannot close a study once the admin logged out in another
    tab; while the session is live the same click works."""
    study_id = build_study(lab, 1, name="One", reviewers=("alice",))
    with lab.write() as s:
        admin = s.scalar(select(User).where(User.username == "admin"))
        sid, _code = start_session(s, admin.id)
        me = SessionUser(admin.id, admin.username, admin.role, admin.display_name, sid)
    at = page_app("studies_page", me).run()
    assert not at.exception
    with lab.write() as s:
        revoke_all(s, admin.id)  # "Log out" in another tab
    (close,) = [b for b in at.button if b.label == "Close study"]
    close.click().run()
    assert not at.exception
    with lab.read() as s:
        assert closed_at(s, study_id) is None
        assert not s.scalars(select(AuditEntry).where(AuditEntry.action.like("study.clos%"))).all()
    assert at.session_state["account_check"]  # the app's next run asks for a new login

    with lab.write() as s:
        sid, _code = start_session(s, admin.id)  # signed in again
    at = page_app("studies_page", replace(me, session_id=sid)).run()
    (close,) = [b for b in at.button if b.label == "Close study"]
    close.click().run()
    assert at.success[0].value == "Study 'One' closed."
    with lab.read() as s:
        assert closed_at(s, study_id) is not None
