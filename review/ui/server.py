"""The HTTP routes the app adds to Streamlit's server (see serve.py): one turns a login's
one-time handoff code into the HttpOnly session cookie, which a script on the page cannot set; the
other admits a crowd participant by a rater pool's link (`/_lab/join`) and sets the same cookie;
a third takes the participant page's measure of the browser window (`/_lab/viewing`).

Streamlit runs pages over a websocket, so a page can read cookies (`st.context.cookies`) but never
send a Set-Cookie header; `st.App` lets the app add this Starlette route next to Streamlit's own.
The page posts the code right after login (review.ui.common); the cookie is HttpOnly,
SameSite=Strict, and Secure when the request came over HTTPS (directly or via a proxy).
"""

from __future__ import annotations

import html
import json
from functools import cache
from typing import Literal

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from review.accounts.addresses import Trust, client_address
from review.accounts.links import lab_secret
from review.accounts.sessions import COOKIE, SESSION_LIFETIME, exchange_handoff, resume
from review.config import load_settings
from review.database import DatabaseBusy, Lab, open_lab
from review.errors import ReviewError
from review.labeling.participants import Joined, JoinRefused, join
from review.labeling.viewing_report import WindowReport, parse_report, store_report

SESSION_PATH = "/_lab/session"
JOIN_PATH = "/_lab/join"
VIEWING_PATH = "/_lab/viewing"
#: Where a link sends the participant: the app's root. Their one page ("participate",
#: review/ui/app.py) is their landing page, which Streamlit serves at the root; its own path would
#: first show Streamlit's "Page not found" dialog over the page.
PARTICIPANT_PAGE = "/"
MAX_BODY = 256
MAX_QUERY = 2048  # a recruitment link with its platform parameters is far shorter


def _exchange(code: str) -> str | None:
    with _lab().write() as s:
        return exchange_handoff(s, code)


@cache
def _lab() -> Lab:
    return open_lab(load_settings(), migrate=False)


async def _bounded_body(request: Request) -> bytes | None:
    """The request's body, or None when it is (or says it is) longer than MAX_BODY bytes: at most
    MAX_BODY + one chunk is read, whatever the header said."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return None
    return body


async def _session(request: Request) -> Response:
    body = await _bounded_body(request)
    if body is None:
        return Response("A login code is short; this request is not one.", status_code=413)
    code = body.decode("ascii", "replace").strip()
    try:  # the database call runs in a worker thread: it must not stall the server's event loop
        token = await run_in_threadpool(_exchange, code)
    except DatabaseBusy as exc:
        return Response(str(exc), status_code=503)
    if token is None:
        return Response("This login link expired; log in again.", status_code=403)
    return _with_cookie(Response(status_code=204), request, token)


def _with_cookie(response: Response, request: Request, token: str,
                 samesite: Literal["strict", "lax"] = "strict") -> Response:
    secure = request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
    response.set_cookie(COOKIE, token, max_age=int(SESSION_LIFETIME.total_seconds()), path="/",
                        httponly=True, samesite=samesite, secure=secure)
    return response


def _refusal(message: str, code: str = "", status: int = 403) -> HTMLResponse:
    """A small page with one plain line (escaped) and the platform code to enter, if any."""
    code_line = (f"<p>Enter this code on your platform: <strong>{html.escape(code)}</strong></p>"
                 if code else "")
    return HTMLResponse("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Study link"
                        "</title></head><body style='font-family:sans-serif;margin:3rem'>"
                        f"<p>{html.escape(message)}</p>{code_line}</body></html>", status_code=status)


def _join(token: str, params: dict[str, str], address: str) -> Joined:
    lab = _lab()
    with lab.write() as s:
        return join(s, lab_secret(lab.settings), token, params, address)


async def _join_route(request: Request) -> Response:
    """Open a pool's link: admit or resume the participant, set the session cookie, go to the
    participant page. The cookie is SameSite=Lax here: the link arrives from another site (the
    platform), and a Strict cookie set on that navigation would not be sent on the redirect."""
    if len(request.url.query) > MAX_QUERY:
        return _refusal("This study link is not valid. Open the link exactly as the study page gave it.",
                        status=414)
    params = {k: v for k, v in request.query_params.items() if k != "t"}
    lab = _lab()
    address = client_address(request.client.host if request.client else None,
                             request.headers.getlist("x-forwarded-for"),
                             Trust.of_app(lab.settings.trusted_proxies))
    try:
        joined = await run_in_threadpool(_join, request.query_params.get("t", ""), params, address)
    except JoinRefused as exc:
        return _refusal(str(exc), exc.code)
    except DatabaseBusy as exc:
        return _refusal(str(exc), status=503)
    except ReviewError as exc:  # LinkRefused and other plain refusals
        return _refusal(str(exc))
    return _with_cookie(RedirectResponse(PARTICIPANT_PAGE, status_code=303), request, joined.token, "lax")


def _store_viewing(token: str, report: WindowReport) -> bool:
    with _lab().write() as s:
        found = resume(s, token)
        return found is not None and store_report(s, found[1].id, report)


async def _viewing_route(request: Request) -> Response:
    """The participant page's measure of the browser window (review/ui/participant_page.py), kept
    for the viewing check. Only JSON (a cross-site form cannot send it without the browser asking
    first), only with a live session cookie of a participant at the viewing check, at most
    MAX_BODY bytes."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return Response("Send the measures as JSON.", status_code=415)
    token = request.cookies.get(COOKIE, "")
    if not token:
        return Response("Open the study link first.", status_code=403)
    body = await _bounded_body(request)
    if body is None:
        return Response("The measures are short; this request is not one.", status_code=413)
    try:
        report = parse_report(json.loads(body.decode("utf-8")))
    except (UnicodeDecodeError, json.JSONDecodeError):
        report = None
    if report is None:
        return Response("These are not a window's measures.", status_code=400)
    try:
        kept = await run_in_threadpool(_store_viewing, token, report)
    except DatabaseBusy as exc:
        return Response(str(exc), status_code=503)
    return Response(status_code=204) if kept else Response("No viewing check is waiting for this session.",
                                                           status_code=403)


ROUTES = [Route(SESSION_PATH, _session, methods=["POST"]), Route(JOIN_PATH, _join_route, methods=["GET"]),
          Route(VIEWING_PATH, _viewing_route, methods=["POST"])]
