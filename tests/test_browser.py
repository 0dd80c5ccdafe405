"""The reviewer loop in a real browser: `streamlit run` in a subprocess, Debian's Chromium driven by
Playwright. Covers what AppTest cannot: keyboard shortcuts and real partial (fragment) reruns.

Never skipped: without Chromium the test fails with the command that installs it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select

from db.models import Rating, User
from review.config import load_settings
from review.database import open_lab

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = ROOT / "docs" / "rating_page.png"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"


def chromium_path() -> str:
    """Debian's real Chromium binary (the /usr/bin launcher script is the fallback)."""
    for candidate in ("/usr/lib/chromium/chromium", "/usr/bin/chromium"):
        if os.path.exists(candidate):
            return candidate
    raise RuntimeError("chromium is missing: run 'apt-get install -y chromium'")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_server(data_dir: Path, extra_env: dict[str, str] | None = None,
                     timeout: float = 90.0) -> Iterator[str]:
    """`streamlit run streamlit_app.py` on a free port; yields its base URL once healthy."""
    port = free_port()
    env = {**os.environ, "REVIEW_DATA_DIR": str(data_dir), **(extra_env or {})}
    env.pop("REVIEW_DATABASE_URL", None)
    log = open(data_dir / f"streamlit-{port}.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"),
         "--server.port", str(port), "--server.headless", "true", "--server.address", "127.0.0.1",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited early: {(data_dir / log.name).read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("streamlit did not become healthy in time")
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@contextmanager
def chromium_page(viewport: tuple[int, int] = (1440, 1000)) -> Iterator:  # noqa: ANN401 - Page
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


def wait_idle(page) -> None:  # noqa: ANN001
    page.wait_for_selector(IDLE, state="attached")


def log_in(page, url: str | None, username: str, password: str) -> None:  # noqa: ANN001
    """Fill the login form (at `url`, or on the page already open) and wait for the Rate page."""
    if url is not None:
        page.goto(url)
    wait_idle(page)
    page.get_by_label("Username", exact=True).fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Password", exact=True).press("Enter")
    page.get_by_text("Your score:").wait_for()
    page.evaluate("document.activeElement && document.activeElement.blur()")  # shortcuts need no input focus
    wait_idle(page)


def restoration_src(page) -> str:  # noqa: ANN001
    """The src of the restoration image (the last image in the rating area)."""
    return page.locator("[data-testid='stImage'] img").last.get_attribute("src")


def sample_pictures(max_side: int = 384) -> list[Image.Image]:
    """scikit-image's bundled photos (no download), shrunk: realistic pages for the screenshot."""
    import numpy as np
    from skimage import data

    out = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "camera", "text"):
        img = Image.fromarray(np.asarray(getattr(data, name)())).convert("RGB")
        scale = max_side / max(img.size)
        out.append(img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS))
    return out


def test_reviewer_rates_five_items_with_the_keyboard(tmp_path, monkeypatch):
    if not (os.path.exists("/usr/lib/chromium/chromium") or shutil.which("chromium")):
        pytest.fail("chromium is missing: run 'apt-get install -y chromium'", pytrace=False)
    from tests.test_app import PASSWORD, build_study

    data_dir = tmp_path / "data"
    monkeypatch.setenv("REVIEW_DATA_DIR", str(data_dir))
    monkeypatch.delenv("REVIEW_DATABASE_URL", raising=False)
    lab = open_lab(load_settings(), migrate=True)
    build_study(lab, 8, name="Portraits and objects", raters_per_item=1, pictures=sample_pictures(),
                reviewers=("alice",))

    pressed = [5, 4, 2, 3, 1]
    with streamlit_server(data_dir) as url, chromium_page() as page:
        log_in(page, url, "alice", PASSWORD)
        for k, score in enumerate(pressed, start=1):
            page.get_by_text(f"Item {k} of 8").wait_for()
            before = restoration_src(page)
            page.keyboard.press(str(score))
            page.get_by_text(f"Your score: {score} ·").wait_for()
            wait_idle(page)
            if k == 2:
                # The README's screenshot is refreshed only on request, so a test run leaves
                # the working tree clean: REVIEW_UPDATE_SCREENSHOT=1 make test.
                shot = SCREENSHOT if os.environ.get("REVIEW_UPDATE_SCREENSHOT") == "1" \
                    else tmp_path / "rating_page.png"
                shot.parent.mkdir(exist_ok=True)
                page.screenshot(path=str(shot), full_page=True)
                assert shot.stat().st_size > 10_000
            page.keyboard.press("Enter")
            page.get_by_text(f"Item {k + 1} of 8").wait_for()
            page.get_by_text("Your score: —").wait_for()
            wait_idle(page)
            assert restoration_src(page) != before
            assert page.locator("[data-testid='stImage'] img").last.evaluate(
                "img => img.complete && img.naturalWidth > 0")

        page.keyboard.press("g")  # the guideline opens over the item
        dialog = page.get_by_role("dialog")
        dialog.get_by_text("Guideline: fidelity v3").wait_for()
        dialog.locator("img").nth(4).wait_for()  # its example pictures (they render in turn)
        page.keyboard.press("Escape")
        dialog.wait_for(state="detached")

        # An admin page by URL: a page load is a new session (log in again); the page is not
        # registered, Streamlit says so, and after login the Rate page is all there is.
        page.goto(f"{url}/users")
        page.get_by_text("Page not found").wait_for()
        page.keyboard.press("Escape")
        log_in(page, None, "alice", PASSWORD)
        page.get_by_text("Item 6 of 8").wait_for()
        assert page.get_by_text("Add a user").count() == 0 and page.get_by_text("Accounts").count() == 0

    with lab.sessions() as s:
        uid = s.scalar(select(User.id).where(User.username == "alice"))
        rows = s.scalars(select(Rating).where(Rating.reviewer_id == uid, Rating.active.is_(True))
                         .order_by(Rating.id)).all()
        assert [r.score for r in rows] == pressed
        assert all(r.time_taken_ms is not None and r.time_taken_ms > 0 for r in rows)


HOSTILE_GUIDELINE = """# Rate fidelity

<script>window.__pwned = 1</script>
Look closely. <img src=x onerror="window.__pwned = 2"> Then rate.
<scr<script>ipt>window.__pwned = 3</script>
[click me](javascript:window.__pwned=4)
"""


def test_html_inside_a_guideline_never_runs_in_the_browser(tmp_path, monkeypatch):
    if not (os.path.exists("/usr/lib/chromium/chromium") or shutil.which("chromium")):
        pytest.fail("chromium is missing: run 'apt-get install -y chromium'", pytrace=False)
    from db.models import GuidelineVersion
    from tests.test_app import PASSWORD, build_study

    data_dir = tmp_path / "data"
    monkeypatch.setenv("REVIEW_DATA_DIR", str(data_dir))
    monkeypatch.delenv("REVIEW_DATABASE_URL", raising=False)
    lab = open_lab(load_settings(), migrate=True)
    hostile = GuidelineVersion(slug="hostile", version=1, title="Hostile", body_md=HOSTILE_GUIDELINE,
                               change_note="test", content_sha256="f" * 64)
    build_study(lab, 2, name="Hostile guideline", raters_per_item=1, reviewers=("alice",),
                guideline=hostile)
    with streamlit_server(data_dir) as url, chromium_page() as page:
        log_in(page, url, "alice", PASSWORD)
        page.keyboard.press("g")
        dialog = page.get_by_role("dialog")
        dialog.get_by_text("Look closely.").wait_for()
        links = dialog.locator("a")
        for i in range(links.count()):
            href = links.nth(i).get_attribute("href") or ""
            assert not href.lower().startswith("javascript:")
            if "click me" in links.nth(i).inner_text():
                links.nth(i).click()
        page.wait_for_timeout(500)
        assert page.evaluate("window.__pwned") is None
        assert dialog.locator("script").count() == 0
        assert dialog.locator("img[src='x']").count() == 0
