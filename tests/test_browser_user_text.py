"""In Chromium, with Streamlit's own Markdown renderer: a study name, a display name and a QA
reason holding a Markdown link, bold, HTML, bare URLs, an e-mail address and a directive show as
those very characters, and no link or markup comes out of them."""

from __future__ import annotations

import re

from review.ui.display import WORD_JOINER
from tests.support import PASSWORD, plant_user_text
from tests.support_browser import chromium_page, streamlit_server, wait_idle

PLANT = "[click](http://evil.example) **bold** <b>x</b> www.evil.example x@evil.example :red[hi]"


def _log_in(page, url: str, username: str) -> None:  # noqa: ANN001
    page.goto(url)
    wait_idle(page)
    page.get_by_label("Username", exact=True).fill(username)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password", exact=True).press("Enter")


def _nothing_planted_rendered(page) -> str:  # noqa: ANN001
    """The page's visible text (word joiners taken out), after checking that no link, bold, HTML
    tag or coloured text came out of the planted characters."""
    links = page.locator("a[href*='evil']:not([href^='#'])")  # a heading's own anchor stays
    assert links.count() == 0, [links.nth(i).evaluate("e => e.outerHTML") for i in range(links.count())]
    assert page.locator("strong", has_text=re.compile(r"^bold$")).count() == 0  # ours may hold it all
    html = page.evaluate("document.body.innerHTML")
    assert "<b>x</b>" not in html and "mailto:" not in html
    assert page.locator("span", has_text=re.compile(r"^hi$")).count() == 0  # :red[hi] coloured
    return page.inner_text("body").replace(WORD_JOINER, "")


def test_planted_markdown_shows_as_its_characters_in_chromium(lab, chromium) -> None:
    study_name = f"S {PLANT}"
    plant_user_text(lab, PLANT, study_name)

    with streamlit_server(lab.settings.data_dir) as url, chromium_page() as page:
        _log_in(page, url, "alice")
        page.get_by_text("You have finished your queue").wait_for()
        page.get_by_text("QA feedback on your ratings").click()
        page.get_by_text("Wrong:").wait_for()
        wait_idle(page)
        shown = _nothing_planted_rendered(page)
        assert f"Alice {PLANT}" in shown  # the sidebar
        assert f"You have finished your queue in “{study_name}”" in shown
        assert f"Wrong: {PLANT}" in shown

        admin = page.context.browser.new_page()
        _log_in(admin, url, "admin")
        admin.get_by_role("heading", name="Studies").wait_for()
        wait_idle(admin)
        heading = admin.get_by_role("heading", name=re.compile(r"^S \[click\]"))
        assert heading.inner_text().replace(WORD_JOINER, "") == study_name
        assert study_name in _nothing_planted_rendered(admin)
