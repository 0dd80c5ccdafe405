"""The HTTP route that turns a login's one-time code into the HttpOnly session cookie, called as
Starlette calls it (an ASGI request with a body): the cookie's attributes, a code used twice, and
bodies too large to be a code."""

from __future__ import annotations

import asyncio

from starlette.requests import Request

from review.sessions import COOKIE, start_session
from review.ui import server
from tests.support import build_study


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
