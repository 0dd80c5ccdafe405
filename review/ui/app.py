"""The app frame: page config, login, and the role-based navigation rebuilt on every run.

A page a role may not use is not registered in `st.navigation` for that session, so it is
neither listed nor reachable by URL; every page also re-checks the role itself.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from review.database import DatabaseBusy
from review.media.restore.runner import sd15_status
from review.ui.common import (
    account_still_valid,
    deliver_session_cookie,
    get_lab_or_stop,
    login_page,
    logout,
    resume_session,
)
from review.ui.display import inert

PAGES = Path(__file__).resolve().parent / "pages"

# role -> pages in menu order; the first is the landing page.
ROLE_PAGES: dict[str, tuple[str, ...]] = {
    "reviewer": ("rate", "try_photo"),  # try_photo explains itself until their work is done
    "admin": ("study", "study_setup", "generate", "guideline_admin", "qa", "disagreements", "analysis",
              "answer", "try_photo", "users", "audit", "rate"),
    "qa": ("qa", "disagreements", "answer", "try_photo", "guidelines"),
}
PAGE_INFO = {  # file in pages/ -> (menu title, icon, URL path)
    "rate": ("Rate", ":material/star_rate:", "rate"),
    "study": ("Studies", ":material/monitoring:", "studies"),
    "study_setup": ("Study setup", ":material/tune:", "study-setup"),
    "disagreements": ("Disagreements", ":material/compare_arrows:", "disagreements"),
    "audit": ("Audit log", ":material/history:", "audit"),
    "generate": ("Generate", ":material/auto_fix_high:", "generate"),
    "guideline_admin": ("Guidelines", ":material/menu_book:", "guidelines"),
    "guidelines": ("Guidelines", ":material/menu_book:", "guidelines"),
    "qa": ("QA review", ":material/fact_check:", "qa"),
    "analysis": ("Analysis", ":material/query_stats:", "analysis"),
    "answer": ("How far can it go?", ":material/straighten:", "answer"),
    "try_photo": ("Try your photo", ":material/add_photo_alternate:", "try-photo"),
    "users": ("Users", ":material/group:", "users"),
}


def pages_for(role: str) -> list[st.Page]:
    out = []
    for i, name in enumerate(ROLE_PAGES.get(role, ())):
        title, icon, url_path = PAGE_INFO[name]
        out.append(st.Page(PAGES / f"{name}.py", title=title, icon=icon, url_path=url_path, default=i == 0))
    return out


def main() -> None:
    st.set_page_config(page_title="Fidelity review lab", page_icon=":material/compare:", layout="wide")
    lab = get_lab_or_stop()
    user = resume_session(lab)
    if user is not None and not account_still_valid(lab, user):
        logout(lab)
        st.warning("Your session ended: your account was deactivated or changed, or you logged out "
                   "in another tab. Log in again.")
        user = None
    if user is None:
        st.navigation([st.Page(login_page, title="Log in", url_path="login", default=True)],
                      position="hidden").run()
        return
    pages = pages_for(user.role)
    if not pages:
        st.error(f"The role {user.role!r} has no pages in this app.")
        st.stop()
    nav = st.navigation(pages)
    with st.sidebar:
        st.markdown(f"**{inert(user.display_name)}**  \n{user.role}")
        deliver_session_cookie()
        if st.button("Log out", key="logout", icon=":material/logout:",
                     help="Ends your session in every browser and tab."):
            logout(lab)
            st.rerun()
        if user.role == "admin":
            st.caption(sd15_status(lab.settings))
    try:
        nav.run()
    except DatabaseBusy as exc:  # a write that waited too long for another process: say so
        st.error(str(exc))
