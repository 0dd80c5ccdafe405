"""The session in a real browser (issue 12): a reload and a second tab stay signed in through the
HttpOnly cookie, the draft comes back from the server (never from the URL), and deactivation ends
the open page at its next action and every tab's session; so do a logout, a role change and a
password reset, in every open tab (issue 21)."""

from __future__ import annotations

from sqlalchemy import func, select

from db.models import Rating, StudyReviewer, User
from review.accounts.sessions import COOKIE
from review.accounts.users import reset_password, set_active, set_role
from review.labeling import qa
from tests.support import PASSWORD, build_study, sample_pictures, wait_until
from tests.support_browser import chromium_page, log_in, restoration_src, streamlit_server, wait_idle


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


# ----------------------------------------------------------------------------- issue 21

ENDINGS = {  # how a reviewer's sessions end while a second tab stays open on the Rate page
    "alice": "logout",  # in the first tab, with its Log out button
    "bob": "role change",  # an admin makes the reviewer QA
    "carol": "password reset",
    "dave": "deactivation",
}


def _press(page, key: str) -> None:  # noqa: ANN001
    page.bring_to_front()  # keys go to the tab in front
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.keyboard.press(key)
    wait_idle(page)


def _press_until(page, key: str, shown: str) -> None:  # noqa: ANN001
    """Press `key` until `shown` appears: on a busy machine a tab that just opened may not have its
    key handler yet, and the first press is lost (pressing a score again changes nothing)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _ in range(5):
        _press(page, key)
        try:
            page.get_by_text(shown).wait_for(timeout=6_000)
            return
        except PlaywrightTimeout:
            continue
    page.get_by_text(shown).wait_for()


def _second_tab(page, url: str):  # noqa: ANN001, ANN202 - Page
    """The same browser's second tab on the Rate page (signed in through the session cookie)."""
    wait_until(lambda: any(c["name"] == COOKIE for c in page.context.cookies()), timeout=15,
               what="the session cookie")
    with page.expect_popup() as popup:
        page.evaluate(f"window.open('{url}/rate')")
    other = popup.value
    other.get_by_text("Your score:").wait_for()
    wait_idle(other)
    return other


def _ratings(lab) -> list[tuple[int, str, bool]]:  # noqa: ANN001
    with lab.read() as s:
        rows = s.execute(select(Rating.score, User.username, Rating.active)
                         .join(User, User.id == Rating.reviewer_id).order_by(Rating.id))
        return [tuple(row) for row in rows]


def test_an_ended_session_stores_nothing_from_another_open_tab(chromium, lab, settings):
    """Issue 21: after a logout a second open tab stored 3 more ratings, and after a role change to
    QA the open Rate page stored a rating counted as a reviewer's. For each way a session ends,
    the other tab's submit is refused, nothing is stored, and that tab asks for a new sign-in."""
    build_study(lab, 12, raters_per_item=1, pictures=sample_pictures(), reviewers=tuple(ENDINGS))
    with streamlit_server(settings.data_dir) as url, chromium_page() as first:
        browser = first.context.browser
        for name, ending in ENDINGS.items():
            context = browser.new_context(viewport={"width": 1440, "height": 1000})
            page = context.new_page()
            page.set_default_timeout(30_000)
            log_in(page, url, name, PASSWORD)
            other = _second_tab(page, url)
            _press_until(other, "3", "Your score: 3 ·")  # picked (its draft saved) while the session is live
            if ending == "logout":
                page.get_by_role("button", name="Log out").click()
                page.get_by_label("Password", exact=True).wait_for()
            else:
                with lab.write() as s:  # as the admin's Users page does it
                    if ending == "role change":
                        set_role(s, name, "qa")
                    elif ending == "password reset":
                        reset_password(s, name, "another-password")
                    else:
                        set_active(s, name, False)
            _press(other, "Enter")  # the other tab's submit
            other.get_by_text("Your session ended").wait_for()
            other.get_by_label("Password", exact=True).wait_for()
            assert _ratings(lab) == [], ending
            context.close()


def test_a_second_tab_on_an_item_rated_in_the_first_moves_on(chromium, lab, settings):
    """Issue 21: the second tab looped on "You already rated this item. Use Undo..." and following
    that advice withdrew the first tab's rating. Now it says so and shows the next item, and its
    Undo leaves the first tab's rating alone."""
    build_study(lab, 4, raters_per_item=1, pictures=sample_pictures(), reviewers=("alice",))
    with streamlit_server(settings.data_dir) as url, chromium_page() as page:
        log_in(page, url, "alice", PASSWORD)
        page.get_by_text("Item 1 of 4").wait_for()
        other = _second_tab(page, url)
        other.get_by_text("Item 1 of 4").wait_for()  # both tabs show the same item
        shown = restoration_src(other)
        _press(page, "2")
        _press(page, "Enter")  # the first tab rates it
        page.get_by_text("Item 2 of 4").wait_for()
        _press_until(other, "4", "Your score: 4 ·")
        _press(other, "Enter")  # the second tab's answer to the same item
        other.get_by_text("already rated this item in another tab").wait_for()
        other.get_by_text("Item 2 of 4").wait_for()  # ... and it moved on
        assert restoration_src(other) != shown
        assert _ratings(lab) == [(2, "alice", True)]
        _press(other, "u")  # the other tab's rating is not this tab's to undo
        other.get_by_text("given in another tab").wait_for()
        assert _ratings(lab) == [(2, "alice", True)]
        _press(page, "u")  # the first tab's Undo takes its own rating back
        page.get_by_text("Item 1 of 4").wait_for()
        assert _ratings(lab) == [(2, "alice", False)]
