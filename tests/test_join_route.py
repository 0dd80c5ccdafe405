"""The `/_lab/join` route called as Starlette calls it: a genuine link sets the session cookie and
sends the participant to their page; refusals are a small escaped page with the platform's code;
over-long queries are refused unread."""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from review.accounts.links import lab_secret, sign_link
from review.accounts.sessions import COOKIE, resume
from review.database import Lab
from review.labeling.pools import PoolSpec, add_pool, set_open
from review.ui import server
from tests.support import make_study


def _get(query: dict[str, str], headers: dict[str, str] | None = None) -> Response:
    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    scope = {"type": "http", "method": "GET", "path": server.JOIN_PATH, "headers": raw,
             "query_string": urlencode(query).encode(), "scheme": "http", "server": ("testserver", 80),
             "client": ("203.0.113.9", 5555)}
    return asyncio.run(server._join_route(Request(scope, receive)))


def _link(lab: Lab) -> tuple[int, str]:
    server._lab.cache_clear()
    with lab.write() as s:
        study = make_study(s, 2).study
        pool = add_pool(s, study.id, PoolSpec(name="crowd", platform="mturk", completion_code="OK1",
                                              no_places_code="NOPE7"))
        return pool.id, sign_link(lab_secret(lab.settings), study.id, pool.id, pool.link_version)


def test_a_link_sets_the_cookie_and_redirects_to_the_participant_page(lab: Lab) -> None:
    _pool_id, token = _link(lab)
    response = _get({"t": token, "workerId": "A1B2C3", "assignmentId": "3X", "hitId": "H9"})
    assert response.status_code == 303 and response.headers["location"] == server.PARTICIPANT_PAGE
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
    value = cookie.split(";", 1)[0].split("=", 1)[1]
    with lab.read() as s:
        assert resume(s, value)[1].role == "participant"


def test_refusals_are_plain_escaped_pages_with_the_code(lab: Lab) -> None:
    pool_id, token = _link(lab)
    forged = _get({"t": token[:-2] + "xx", "workerId": "A1"})
    assert forged.status_code == 403 and b"not valid" in forged.body and "set-cookie" not in forged.headers
    markup = _get({"t": token, "workerId": "<img src=x onerror=alert(1)>"})
    assert markup.status_code == 403 and b"<img" not in markup.body and b"not a valid id" in markup.body
    with lab.write() as s:
        set_open(s, pool_id, False)
    closed = _get({"t": token, "workerId": "NEW1"})
    assert b"closed to new participants" in closed.body and b"NOPE7" in closed.body
    long = _get({"t": token, "workerId": "A" * 3000})
    assert long.status_code == 414
