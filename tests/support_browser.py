"""The real-browser harness: `streamlit run` in a subprocess and Debian's Chromium driven by
Playwright (used by tests/test_browser.py and bench/rating_loop.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support import PASSWORD, free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"


def chromium_path() -> str:
    """Debian's real Chromium binary (the /usr/bin launcher script is the fallback)."""
    for candidate in ("/usr/lib/chromium/chromium", "/usr/bin/chromium"):
        if os.path.exists(candidate):
            return candidate
    raise RuntimeError("chromium is missing: run 'apt-get install -y chromium'")


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@contextmanager
def streamlit_server(data_dir: Path, extra_env: dict[str, str] | None = None,
                     timeout: float = 90.0) -> Iterator[str]:
    """`streamlit run serve.py` (the app and its session-cookie route) on a free port; yields its
    base URL once healthy."""
    port = free_port()
    env = {**os.environ, "REVIEW_DATA_DIR": str(data_dir), **(extra_env or {})}
    env.pop("REVIEW_DATABASE_URL", None)
    log_path = data_dir / f"streamlit-{port}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "serve.py"),
         "--server.port", str(port), "--server.headless", "true", "--server.address", "127.0.0.1",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited early: {log_path.read_text()[-2000:]}")
        return _healthy(url)

    try:
        wait_until(up, timeout=timeout, what="streamlit to become healthy", interval=0.25)
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


RESTORATION_IMG = ".fv-panel[data-role='restoration'] img"  # in the viewer (review/ui/viewer.py)


def restoration_src(page) -> str:  # noqa: ANN001
    """The src of the restoration image in the rating page's viewer."""
    return page.locator(RESTORATION_IMG).get_attribute("src")


def log_in_admin(page, url: str | None) -> None:  # noqa: ANN001
    """Sign in as `admin` (at `url`, or on the page already open) and wait for the Studies page."""
    if url is not None:
        page.goto(url)
    wait_idle(page)
    page.get_by_label("Username", exact=True).fill("admin")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password", exact=True).press("Enter")
    page.get_by_role("heading", name="Studies").wait_for()
    wait_idle(page)
