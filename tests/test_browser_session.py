"""The session in a real browser (issue 12): a reload and a second tab stay signed in through the
HttpOnly cookie, the draft comes back from the server (never from the URL), and deactivation ends
the open page at its next action and every tab's session."""

from __future__ import annotations

from sqlalchemy import func, select

from db.models import Rating, StudyReviewer, User
from review.labeling import qa
from review.sessions import COOKIE
from review.users import set_active
from tests.support import PASSWORD, build_study, sample_pictures
from tests.support_browser import chromium_page, log_in, streamlit_server, wait_idle


def test_a_reload_keeps_the_session_and_deactivation_ends_it(chromium, lab, settings):
    data_dir = settings.data_dir
    build_study(lab, 4, raters_per_item=1, pictures=sample_pictures(), reviewers=("alice",))

    with streamlit_server(data_dir) as url, chromium_page() as page:
        log_in(page, url, "alice", PASSWORD)
        page.get_by_text("Item 1 of 4").wait_for()
        page.keyboard.press("3")
        page.get_by_text("Your score: 3 ·").wait_for()
        wait_idle(page)
        cookie = [c for c in page.context.cookies() if c["name"] == COOKIE]
        assert cookie and cookie[0]["httpOnly"] and cookie[0]["sameSite"] == "Strict"
        assert COOKIE not in page.evaluate("document.cookie")  # no script can read it

        page.reload()  # a reload: no login form, the same item, the draft from the server
        page.get_by_text("Your score: 3 ·").wait_for()
        assert page.get_by_label("Password", exact=True).count() == 0
        assert "?" not in page.url  # nothing of the draft (or the login) in the URL

        with page.expect_popup() as popup:  # a second tab on a typed URL
            page.evaluate(f"window.open('{url}/rate')")
        second = popup.value
        second.get_by_text("Your score: 3 ·").wait_for()

        with lab.sessions() as s, s.begin():
            set_active(s, "alice", False)
        page.evaluate("document.activeElement && document.activeElement.blur()")
        page.keyboard.press("Enter")  # the open page's next action is refused and ends it
        page.get_by_text("your account was deactivated").wait_for()
        page.get_by_label("Password", exact=True).wait_for()
        second.reload()  # the other tab's session ended too
        second.get_by_label("Password", exact=True).wait_for()

    with lab.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Rating)) == 0


def test_undo_rules_with_the_keyboard(chromium, lab, settings):
    """U reopens the last answer once (pressing it three times is not a walk back through
    history), U after a skip brings the skipped item back, and a rating QA has judged stays."""
    build_study(lab, 5, raters_per_item=1, pictures=sample_pictures(), reviewers=("alice",))

    def ratings() -> list[tuple[int, bool]]:
        with lab.read() as s:
            return [(r.score, r.active) for r in s.scalars(select(Rating).order_by(Rating.id))]

    def press(page, key: str) -> None:  # noqa: ANN001
        page.evaluate("document.activeElement && document.activeElement.blur()")
        page.keyboard.press(key)
        wait_idle(page)

    with streamlit_server(settings.data_dir) as url, chromium_page((1366, 768)) as page:
        log_in(page, url, "alice", PASSWORD)
        page.get_by_text("Item 1 of 5").wait_for()
        press(page, "2")
        press(page, "Enter")
        page.get_by_text("Item 2 of 5").wait_for()
        press(page, "3")
        press(page, "Enter")
        page.get_by_text("Item 3 of 5").wait_for()
        for _ in range(3):
            press(page, "u")
        page.get_by_text("Item 2 of 5").wait_for()  # one step back, not three
        page.get_by_text("Your score: 3 ·").wait_for()  # the withdrawn answer is the draft
        assert ratings() == [(2, True), (3, False)]
        press(page, "4")
        press(page, "Enter")  # the correction supersedes the withdrawn rating
        page.get_by_text("Item 3 of 5").wait_for()
        assert ratings() == [(2, True), (3, False), (4, True)]

        page.locator(".st-key-skip_reason").click()  # skip item 3 ...
        page.get_by_role("option", name="cannot judge").click()
        wait_idle(page)
        press(page, "s")
        page.get_by_text("Item 4 of 5").wait_for()
        press(page, "u")  # ... and U brings it back
        page.get_by_text("Item 3 of 5").wait_for()

        press(page, "5")
        press(page, "Enter")
        page.get_by_text("Item 4 of 5").wait_for()
        with lab.write() as s:  # QA judges that rating: its author cannot withdraw it
            boss = s.scalar(select(User.id).where(User.username == "admin"))
            last = s.scalar(select(Rating.id).order_by(Rating.id.desc()))
            s.scalar(select(StudyReviewer)).qa_enabled = True  # alice's cohort goes through QA
            qa.accept(s, last, boss)
        before = ratings()
        press(page, "u")
        page.get_by_text("QA has already judged your rating of this item").wait_for()
        assert page.get_by_text("Item 4 of 5").count() == 1 and ratings() == before
