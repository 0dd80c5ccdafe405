"""What every page shares: the cached Lab, the signed-in user, role checks, login and logout.

The Lab (engine + sessionmaker + image store) is one object per process, shared by all browser
sessions through `st.cache_resource`; that is safe because SQLAlchemy engines and sessionmakers are
thread-safe and every page opens its own short-lived Session from it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

import streamlit as st
from sqlalchemy.orm import Session

from db.engine import transaction
from db.models import User
from review.config import ConfigError, Settings, load_settings
from review.database import Lab, SchemaOutOfDate, open_lab
from review.users import LoginRefused, authenticate

USER_KEY = "user"


@dataclass(frozen=True)
class SessionUser:
    """The signed-in account as the UI keeps it: no password hash, no ORM object."""

    id: int
    username: str
    role: str
    display_name: str


SETTINGS_ENV = ("REVIEW_DATA_DIR", "REVIEW_DATABASE_URL", "REVIEW_SD15_PATH")


@st.cache_resource(show_spinner=False)
def _open_lab(env: tuple[tuple[str, str], ...]) -> Lab:
    return open_lab(load_settings(dict(env)), migrate=False)


def get_lab() -> Lab:
    """The process-wide Lab for the current settings. Keyed by the settings' environment
    variables, so a test (or a process) with another REVIEW_DATA_DIR gets its own Lab, and a
    rerun costs a dict lookup, not a settings validation."""
    return _open_lab(tuple((k, os.environ.get(k, "")) for k in SETTINGS_ENV))


def get_lab_or_stop() -> Lab:
    """The Lab, or a plain error on the page (bad setting, outdated schema) and stop."""
    try:
        return get_lab()
    except (ConfigError, SchemaOutOfDate) as exc:
        st.error(str(exc))
        st.stop()


def current_user() -> SessionUser | None:
    return st.session_state.get(USER_KEY)


def require_role(*roles: str) -> SessionUser:
    """Stop the page unless the signed-in user has one of `roles` (each page checks again, even
    though the navigation only lists the pages a role may use)."""
    user = current_user()
    if user is None:
        st.error("Please log in.")
        st.stop()
    if user.role not in roles:
        _refuse(user)
    return user


def _refuse(user: SessionUser) -> NoReturn:
    st.error(f"This page is not available to the {user.role} role.")
    st.stop()


def still_active(lab: Lab, user: SessionUser) -> bool:
    """Deactivated or deleted accounts lose their session on the next full page run."""
    with lab.sessions() as s:
        row = s.get(User, user.id)
        return row is not None and row.active and row.role == user.role


def sign_in(user: User) -> None:
    st.session_state[USER_KEY] = SessionUser(user.id, user.username, user.role,
                                             user.display_name or user.username)
    st.session_state["session_started"] = time.time()


def logout() -> None:
    """Forget everything about this browser session, drafts in the URL included."""
    for key in list(st.session_state.keys()):
        del st.session_state[key]
    st.query_params.clear()


def login_page() -> None:
    """The only page an anonymous visitor can reach. Leaves the URL's query parameters alone so
    a draft saved there (see review.ui.rate) survives an expired session."""
    lab = get_lab_or_stop()
    st.title("Fidelity review lab")
    st.caption("Rate how faithfully AI restorations keep what the original photo showed.")
    if "a" in st.query_params:
        st.info("Your session ended. Log in again: your unsaved rating for the current item is kept.")
    with st.form("login", border=True, width=420):
        username = st.text_input("Username", key="login_username", autocomplete="username")
        password = st.text_input("Password", type="password", key="login_password",
                                 autocomplete="current-password")
        submitted = st.form_submit_button("Log in", type="primary")
    if submitted:
        if not username.strip() or not password:
            st.error("Enter your username and password.")
            return
        try:
            user = authenticate(lab.sessions, username, password)
        except LoginRefused as exc:
            st.error(str(exc))
            return
        sign_in(user)
        st.rerun()


def sd15_status(settings: Settings) -> str:
    """One plain line on whether Stable Diffusion 1.5 can run here (no torch import)."""
    if settings.sd15_path is None:
        return "SD1.5 weights: not configured (set REVIEW_SD15_PATH)"
    if not settings.sd15_path.exists():
        return f"SD1.5 weights: REVIEW_SD15_PATH={settings.sd15_path} does not exist"
    return f"SD1.5 weights: {settings.sd15_path}"


def flash(kind: str, message: str) -> None:
    """Queue a message for the next render (callbacks run before the page draws)."""
    st.session_state.setdefault("flashes", []).append((kind, message))


def show_flashes() -> None:
    for kind, message in st.session_state.pop("flashes", []):
        {"warning": st.warning, "error": st.error, "success": st.success}.get(kind, st.info)(message)


def run_action(lab: Lab, action: Callable[[Session], object],
               success: str | Callable[[object], str],
               refusals: tuple[type[Exception], ...]) -> None:
    """Run one admin/QA action in its own transaction: a refusal is shown on the page, a success
    is flashed and the page reruns."""
    try:
        with transaction(lab.sessions) as s:
            result = action(s)
    except refusals as exc:
        st.error(str(exc))
        return
    flash("success", success if isinstance(success, str) else success(result))
    st.rerun()
