"""The reviewer loop in a real browser: `streamlit run` in a subprocess, Debian's Chromium driven by
Playwright. Covers what AppTest cannot: keyboard shortcuts and real partial (fragment) reruns.

Never skipped: without Chromium the test fails with the command that installs it.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import select

from db.models import GuidelineVersion, Rating, User
from tests.support import PASSWORD, build_study, sample_pictures
from tests.support_browser import (
    RESTORATION_IMG,
    chromium_page,
    log_in,
    restoration_src,
    streamlit_server,
    wait_idle,
)

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = ROOT / "docs" / "rating_page.png"


def test_reviewer_rates_five_items_with_the_keyboard(tmp_path, chromium, lab, settings):
    data_dir = settings.data_dir
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
                # The README's screenshot (docs/rating_page.png) is refreshed only on request, so a test
                # run leaves the working tree clean: REVIEW_UPDATE_SCREENSHOT=1 make test.
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
            assert page.locator(RESTORATION_IMG).evaluate(
                "img => img.complete && img.naturalWidth > 0")

        page.keyboard.press("g")  # the guideline opens over the item
        dialog = page.get_by_role("dialog")
        dialog.get_by_text("Guideline: fidelity v3").wait_for()
        dialog.locator("img").nth(4).wait_for()  # its example pictures (they render in turn)
        page.keyboard.press("Escape")
        dialog.wait_for(state="detached")

        # An admin page by URL: the session cookie keeps alice signed in (no login form); the page
        # is not registered, Streamlit says so, and the Rate page is all there is.
        page.goto(f"{url}/users")
        page.get_by_text("Page not found").wait_for()
        page.keyboard.press("Escape")
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


def test_html_inside_a_guideline_never_runs_in_the_browser(chromium, lab, settings):
    data_dir = settings.data_dir
    hostile = GuidelineVersion(slug="hostile", version=1, title="Hostile", body_md=HOSTILE_GUIDELINE,
                               change_note="test", content_sha256="f" * 64)
    build_study(lab, 2, name="Hostile guideline", raters_per_item=1, reviewers=("alice",),
                guideline=hostile)
    with streamlit_server(data_dir) as url, chromium_page() as page:
        log_in(page, url, "alice", PASSWORD)
        page.keyboard.press("g")
        dialog = page.get_by_role("dialog")
        dialog.get_by_text("Look closely.").wait_for()
        # Count the clicks the page receives: the wait below ends once the browser has dispatched
        # the click, whose default action (following the href checked here) is then done.
        page.evaluate("window.__clicks = 0; document.addEventListener('click', () => window.__clicks++)")
        links = dialog.locator("a")
        clicked = 0
        for i in range(links.count()):
            href = links.nth(i).get_attribute("href") or ""
            assert not href.lower().startswith("javascript:")
            if "click me" in links.nth(i).inner_text():
                links.nth(i).click()
                clicked += 1
        assert clicked == 1  # the neutralised link is still there to be clicked
        page.wait_for_function(f"window.__clicks === {clicked}")
        assert page.evaluate("window.__pwned") is None
        assert dialog.locator("script").count() == 0
        assert dialog.locator("img[src='x']").count() == 0
