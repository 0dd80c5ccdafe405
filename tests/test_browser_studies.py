"""The admin's study flow end to end in a real browser (issue 13): an admin creates a study on the
Study setup page, a reviewer rates it, the admin samples it for QA and downloads the ratings CSV
and the HTML report from the Analysis page. `streamlit run` in a subprocess, Debian's Chromium
driven by Playwright (never downloaded); never skipped.
"""

from __future__ import annotations

import csv
import io

from sqlalchemy import select

from db.models import QASample, Study
from review.labeling.study import close_study
from tests.support import PASSWORD, build_study
from tests.support_browser import chromium_page, log_in, log_in_admin, streamlit_server, wait_idle

NAME = "Made in the browser"


def _go(page, menu: str, heading: str) -> None:  # noqa: ANN001
    page.get_by_test_id("stSidebarNav").get_by_text(menu, exact=True).click()
    page.get_by_role("heading", name=heading).wait_for()
    wait_idle(page)


def _log_out(page) -> None:  # noqa: ANN001
    page.get_by_role("button", name="Log out").click()
    page.get_by_label("Username", exact=True).wait_for()
    wait_idle(page)


def test_admin_creates_a_study_a_reviewer_rates_it_qa_samples_and_exports(tmp_path, chromium, lab, settings):
    data_dir = settings.data_dir
    source = build_study(lab, 3, name="Source pictures", raters_per_item=1, reviewers=("alice",))
    with lab.sessions() as s, s.begin():
        close_study(s, source)  # so alice's only open study is the one made in the browser

    with streamlit_server(data_dir) as url, chromium_page() as page:
        log_in_admin(page, url)
        _go(page, "Study setup", "Study setup")
        form = page.get_by_test_id("stForm").first
        form.get_by_label("Name", exact=True).fill(NAME)
        form.get_by_text("Items: copy the restorations").locator("xpath=ancestor::div[@data-testid="
                                                                 "'stMultiSelect']").click()
        page.get_by_role("option", name="Source pictures").click()
        page.keyboard.press("Escape")
        qa_share = form.get_by_label("QA share (reviewers whose ratings go through QA)")
        qa_share.fill("1")
        qa_share.press("Tab")
        raters = form.get_by_label("Raters per item")
        raters.fill("1")
        raters.press("Tab")
        form.get_by_role("button", name="Create study").click()
        page.get_by_text(f"Study '{NAME}' created.").wait_for()
        _log_out(page)

        log_in(page, None, "alice", PASSWORD)
        for k in (1, 2, 3):
            page.get_by_text(f"Item {k} of 3").wait_for()
            page.keyboard.press("4")
            page.get_by_text("Your score: 4 ·").wait_for()
            wait_idle(page)
            page.keyboard.press("Enter")
            wait_idle(page)
        page.get_by_text("Thank you").first.wait_for()
        _log_out(page)

        log_in_admin(page, None)
        _go(page, "QA review", "QA review")
        page.get_by_text("QA settings, sampling and summary (admin)").click()
        page.get_by_role("button", name="Sample now at rate 0.20").click()
        page.get_by_text("1 rating(s) added to the QA sample.").wait_for()

        _go(page, "Analysis", "Analysis")
        page.get_by_test_id("stSelectbox").filter(has_text="Study").first.click()
        page.get_by_role("option", name=NAME).click()
        wait_idle(page)
        with page.expect_download() as got:
            page.get_by_role("button", name="Ratings (CSV)").click()
        ratings = list(csv.DictReader(io.StringIO(got.value.path().read_text(encoding="utf-8-sig"))))
        with page.expect_download() as got:
            page.get_by_role("button", name="Readable report with charts (HTML)").click()
        report_path = tmp_path / got.value.suggested_filename  # keeps .html: opened as a page
        assert report_path.suffix == ".html"
        got.value.save_as(report_path)
        report = report_path.read_text(encoding="utf-8")

        # The report opens with no network: every request that is not the file itself is refused.
        refused: list[str] = []
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                   else (refused.append(route.request.url), route.abort()))
        page.goto(report_path.as_uri())
        page.get_by_text(NAME).first.wait_for()
        assert page.evaluate("typeof vegaEmbed") == "function"  # the embedded scripts ran offline

    assert [(r["rater"], r["score"], r["study"]) for r in ratings] == [("alice", "4", NAME)] * 3
    assert report.lstrip().lower().startswith("<!doctype html") and NAME in report
    assert refused == []
    with lab.sessions() as s:
        study = s.scalar(select(Study).where(Study.name == NAME))
        assert s.scalars(select(QASample.rating_id).where(QASample.study_id == study.id)).all() != []
