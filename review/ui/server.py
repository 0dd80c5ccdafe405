"""The one HTTP route the app adds to Streamlit's server (see serve.py): it turns a login's
one-time handoff code into the HttpOnly session cookie, which a script on the page cannot set.

Streamlit runs pages over a websocket, so a page can read cookies (`st.context.cookies`) but never
send a Set-Cookie header; `st.App` lets the app add this Starlette route next to Streamlit's own.
The page posts the code right after login (review.ui.common); the cookie is HttpOnly,
SameSite=Strict, and Secure when the request came over HTTPS (directly or via a proxy).
"""

from __future__ import annotations

from functools import cache

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from review.accounts.sessions import COOKIE, SESSION_LIFETIME, exchange_handoff
from review.config import load_settings
from review.database import DatabaseBusy, Lab, open_lab

SESSION_PATH = "/_lab/session"
MAX_BODY = 256


def _exchange(code: str) -> str | None:
    with _lab().write() as s:
        return exchange_handoff(s, code)


@cache
def _lab() -> Lab:
    return open_lab(load_settings(), migrate=False)


async def _session(request: Request) -> Response:
    if int(request.headers.get("content-length") or 0) > MAX_BODY:
        return Response("A login code is short; this request is not one.", status_code=413)
    body = b""
    async for chunk in request.stream():  # read at most MAX_BODY bytes, whatever the header said
        body += chunk
        if len(body) > MAX_BODY:
            return Response("A login code is short; this request is not one.", status_code=413)
    code = body.decode("ascii", "replace").strip()
    try:  # the database call runs in a worker thread: it must not stall the server's event loop
        token = await run_in_threadpool(_exchange, code)
    except DatabaseBusy as exc:
        return Response(str(exc), status_code=503)
    if token is None:
        return Response("This login link expired; log in again.", status_code=403)
    secure = request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
    response = Response(status_code=204)
    response.set_cookie(COOKIE, token, max_age=int(SESSION_LIFETIME.total_seconds()), path="/",
                        httponly=True, samesite="strict", secure=secure)
    return response


ROUTES = [Route(SESSION_PATH, _session, methods=["POST"])]
