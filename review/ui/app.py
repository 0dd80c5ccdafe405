"""The app frame: page config, login, and the role-based navigation rebuilt on every run.

A page a role may not use is not registered in `st.navigation` for that session, so it is
neither listed nor reachable by URL; every page also re-checks the role itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from review.database import DatabaseBusy
from review.media.restore.runner import sd15_status
from review.policy import HOME, POLICY, Action, may
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


@dataclass(frozen=True)
class PageInfo:
    """A page of the menu: its menu title, icon and URL path, and the action (review/policy.py)
    its roles may take; its script in pages/ checks the same action (tests/test_policy.py)."""

    title: str
    icon: str
    url_path: str
    action: Action


#: file in pages/ -> its page, in menu order. A role sees the pages whose action it may take, its
#: landing page (`policy.HOME`) first; where two pages share a URL path, the earlier one is shown
#: (an admin's guideline editor, not the read-only list).
PAGE_INFO = {
    "study": PageInfo("Studies", ":material/monitoring:", "studies", Action.STUDY_VIEW),
    "study_setup": PageInfo("Study setup", ":material/tune:", "study-setup", Action.STUDY_EDIT),
    "generate": PageInfo("Generate", ":material/auto_fix_high:", "generate", Action.GENERATE),
    "guideline_admin": PageInfo("Guidelines", ":material/menu_book:", "guidelines", Action.GUIDELINE_EDIT),
    "qa": PageInfo("QA review", ":material/fact_check:", "qa", Action.QA_REVIEW),
    "disagreements": PageInfo("Disagreements", ":material/compare_arrows:", "disagreements",
                              Action.DISAGREEMENTS_SETTLE),
    "analysis": PageInfo("Analysis", ":material/query_stats:", "analysis", Action.ANALYSIS_VIEW),
    "answer": PageInfo("How far can it go?", ":material/straighten:", "answer", Action.ANSWER_VIEW),
    # try_photo explains itself to a reviewer until their rating work is done
    "try_photo": PageInfo("Try your photo", ":material/add_photo_alternate:", "try-photo", Action.TRY_PHOTO),
    "guidelines": PageInfo("Guidelines", ":material/menu_book:", "guidelines", Action.GUIDELINE_VIEW),
    "crowd": PageInfo("Crowd", ":material/groups:", "crowd", Action.POOLS_MANAGE),
    "users": PageInfo("Users", ":material/group:", "users", Action.USERS_MANAGE),
    "audit": PageInfo("Audit log", ":material/history:", "audit", Action.AUDIT_VIEW),
    "rate": PageInfo("Rate", ":material/star_rate:", "rate", Action.RATE),
    "participate": PageInfo("Your study", ":material/assignment:", "participate", Action.PARTICIPATE),
}


def menu(role: str, policy: Mapping[Action, frozenset[str]] = POLICY,
         home: Mapping[str, Action] = HOME) -> tuple[str, ...]:
    """The pages (files in pages/) a role sees, in menu order, its landing page first."""
    names: list[str] = []
    for name, info in PAGE_INFO.items():
        if may(role, info.action, policy) and all(PAGE_INFO[n].url_path != info.url_path for n in names):
            names.append(name)
    landing = [n for n in names if role in home and PAGE_INFO[n].action == home[role]][:1]
    return (*landing, *(n for n in names if n not in landing))


def pages_for(role: str) -> list[st.Page]:
    out = []
    for i, name in enumerate(menu(role)):
        info = PAGE_INFO[name]
        out.append(st.Page(PAGES / f"{name}.py", title=info.title, icon=info.icon, url_path=info.url_path,
                           default=i == 0))
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
    if may(user.role, Action.PARTICIPATE):
        # A participant's one page, full width: no sidebar (the viewing check wants the room for
        # images at 1:1) and no "Log out" (their platform's link is how they come back).
        deliver_session_cookie()
        nav = st.navigation(pages, position="hidden")
    else:
        nav = st.navigation(pages)
        with st.sidebar:
            st.markdown(f"**{inert(user.display_name)}**  \n{user.role}")
            deliver_session_cookie()
            if st.button("Log out", key="logout", icon=":material/logout:",
                         help="Ends your session in every browser and tab."):
                logout(lab)
                st.rerun()
            if may(user.role, Action.GENERATE):
                st.caption(sd15_status(lab.settings))
    try:
        nav.run()
    except DatabaseBusy as exc:  # a write that waited too long for another process: say so
        st.error(str(exc))
