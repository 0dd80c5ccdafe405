"""Login throttling counts the right address in the real server (issue 21): Chromium talks to
`streamlit run serve.py` through a small reverse proxy on 127.0.0.1 that adds X-Forwarded-For
to each connection's first request (the websocket's handshake included), as nginx does; uvicorn
under Streamlit believes that header from 127.0.0.1 by itself. Without REVIEW_TRUSTED_PROXIES a
new forged address per try buys nothing; with the proxy trusted, the client it forwarded for is
counted, not what the client put in front. (Chromium cannot add headers to a websocket itself.)"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from sqlalchemy import select

from db.models import LoginAttempt
from review.accounts.users import FREE_FAILURES, add_user, unlock
from tests.support import PASSWORD, free_port
from tests.support_browser import chromium_page, streamlit_server, wait_idle


@contextmanager
def forwarding_proxy(upstream: str, header: list[str]) -> Iterator[str]:
    """A TCP proxy on 127.0.0.1 to `upstream` that puts `X-Forwarded-For: header[0]` into the
    first request of each connection (header[0] can change between connections); yields its URL."""
    target = urlsplit(upstream)
    port = free_port()
    loop = asyncio.new_event_loop()
    started = threading.Event()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def serve(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        head = await client_r.readuntil(b"\r\n\r\n")
        first, _, rest = head.partition(b"\r\n")
        head = first + f"\r\nX-Forwarded-For: {header[0]}".encode() + b"\r\n" + rest
        up_r, up_w = await asyncio.open_connection(target.hostname, target.port)
        up_w.write(head)
        await asyncio.gather(pipe(client_r, up_w), pipe(up_r, client_w))

    async def main() -> None:
        server = await asyncio.start_server(serve, "127.0.0.1", port)
        started.set()
        async with server:
            try:
                await server.serve_forever()
            except asyncio.CancelledError:
                pass

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for task in asyncio.all_tasks(loop):
            loop.call_soon_threadsafe(task.cancel)
        thread.join(10)


def _try(page, url: str, password: str = "guess guess") -> str:  # noqa: ANN001
    """One login from a fresh page load (a fresh websocket); the message the page shows."""
    page.goto(url)
    wait_idle(page)
    page.get_by_label("Username", exact=True).fill("eve")
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Password", exact=True).press("Enter")
    alert = page.get_by_role("alert").first
    alert.wait_for()
    return alert.inner_text()


def _clients(lab) -> list[str | None]:  # noqa: ANN001
    with lab.sessions() as s:
        return list(s.scalars(select(LoginAttempt.client).order_by(LoginAttempt.id)))


def test_forged_addresses_buy_no_guesses_and_a_trusted_proxy_names_the_client(chromium, lab, settings):
    with lab.write() as s:
        add_user(s, "eve", PASSWORD, "reviewer")
    header = [""]

    # No trusted proxy: a proxy that passes on what each client claims (docs/operations.md's old nginx
    # example) lets every try claim a new address; they are all counted as "local".
    with streamlit_server(settings.data_dir) as app, forwarding_proxy(app, header) as url, \
            chromium_page() as page:
        for i in range(FREE_FAILURES):
            header[0] = f"6.6.6.{i}"
            assert "wrong password" in _try(page, url)
        header[0] = "6.6.6.99"
        assert "Too many failed logins for this account from your address" in _try(page, url, PASSWORD)
    assert _clients(lab) == ["local"] * FREE_FAILURES

    with lab.write() as s:
        unlock(s, "eve")
    # The proxy trusted: it appends the address it saw ($proxy_add_x_forwarded_for) to whatever
    # the client sent; the right-most one counts.
    with streamlit_server(settings.data_dir, {"REVIEW_TRUSTED_PROXIES": "127.0.0.1"}) as app, \
            forwarding_proxy(app, header) as url, chromium_page() as page:
        for claimed in ("6.6.6.6, 198.51.100.7", "6.6.6.7, 198.51.100.7", "198.51.100.8"):
            header[0] = claimed
            assert "wrong password" in _try(page, url)
    assert _clients(lab)[FREE_FAILURES:] == ["198.51.100.7", "198.51.100.7", "198.51.100.8"]
