"""What every page shares: the cached Lab, the signed-in user, role checks, login and logout,
and the one runner for page actions.

The Lab (engine + sessionmaker + image store) is one object per process, shared by all browser
sessions through `st.cache_resource`; that is safe because SQLAlchemy engines and sessionmakers are
thread-safe and every page opens its own short-lived Session from it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, NoReturn, TypeVar

import streamlit as st

from review.accounts.addresses import Trust
from review.accounts.addresses import client_address as resolve_client
from review.accounts.sessions import (
    COOKIE,
    SIGNED_OUT,
    SessionEnded,
    SignedIn,
    is_live,
    require_session,
    resume,
    revoke_all,
    start_session,
)
from review.accounts.users import LoginRefused, authenticate, still_active
from review.config import SETTING_NAMES, ConfigError, load_settings
from review.database import Lab, SchemaOutOfDate, open_lab
from review.errors import ReviewError
from review.labeling.study import list_studies
from review.policy import Action, may
from review.ui.display import inert
from review.ui.server import SESSION_PATH

USER_KEY = "user"


@dataclass(frozen=True)
class SessionUser:
    """The signed-in account as the UI keeps it (no password hash, no ORM object): the one
    user type every page takes."""

    id: int
    username: str
    role: str
    display_name: str
    session_id: int | None = None  # the server-side session (review.accounts.sessions) behind the cookie

    @property
    def signed(self) -> SignedIn:
        """What a domain write checks in its transaction (`review.accounts.sessions.require_session`)."""
        return SignedIn(self.id, self.role, self.session_id)


@st.cache_resource(show_spinner=False)
def _open_lab(env: tuple[tuple[str, str], ...]) -> Lab:
    return open_lab(load_settings(dict(env)), migrate=False)


def get_lab() -> Lab:
    """The process-wide Lab for the current settings. Keyed by the settings' environment
    variables, so a test (or a process) with another REVIEW_DATA_DIR gets its own Lab, and a
    rerun costs a dict lookup, not a settings validation."""
    return _open_lab(tuple((k, os.environ.get(k, "")) for k in SETTING_NAMES))


def get_lab_or_stop() -> Lab:
    """The Lab, or a plain error on the page (bad setting, outdated schema) and stop."""
    try:
        return get_lab()
    except (ConfigError, SchemaOutOfDate) as exc:
        st.error(str(exc))
        st.stop()


def current_user() -> SessionUser | None:
    return st.session_state.get(USER_KEY)


def require(action: Action) -> SessionUser:
    """Stop the page unless the signed-in user's role may take `action` (review/policy.py; each
    page checks again, even though the navigation only lists the pages a role may use)."""
    user = current_user()
    if user is None:
        st.error("Please log in.")
        st.stop()
    if not may(user.role, action):
        _refuse(user)
    return user


def _refuse(user: SessionUser) -> NoReturn:
    st.error(f"This page is not available to the {user.role} role.")
    st.stop()


def refuse_unless(user: SessionUser, action: Action, refusal: str) -> None:
    """A page's own check of its user (the page entry's `require` checks too, but a page's render
    is also called directly, in tests and from other pages): stop with `refusal` unless allowed."""
    if not may(user.role, action):
        st.error(refusal)
        st.stop()


def account_still_valid(lab: Lab, user: SessionUser) -> bool:
    """Deactivated or deleted accounts, and sessions ended elsewhere (logout in another tab, a role
    change, a password reset), lose their session on the next full page run; every write checks
    the session again in its own transaction (`run_action`, review.accounts.sessions.require_session)."""
    with lab.read() as s:
        live = user.session_id is None or is_live(s, user.session_id)
        return live and still_active(s, user.id, user.role)


def sign_in(user: SessionUser) -> None:
    st.session_state[USER_KEY] = user
    st.session_state["session_started"] = time.time()


def resume_session(lab: Lab) -> SessionUser | None:
    """The signed-in user: this tab's, or the one the session cookie names (a reload, a typed URL,
    a second tab)."""
    user = current_user()
    token = st.context.cookies.get(COOKIE)
    if user is not None or not isinstance(token, str) or not token:
        return user
    with lab.read() as s:
        found = resume(s, token)
    if found is None:
        return None
    session_id, account = found
    sign_in(SessionUser(account.id, account.username, account.role,
                        account.display_name or account.username, session_id))
    return current_user()


def client_address(lab: Lab | None = None) -> str:
    """The address logins are throttled by (per account and address): the connection's own
    ("local" on localhost), or the client a trusted proxy (REVIEW_TRUSTED_PROXIES) forwarded for;
    review.accounts.addresses decides, from what Streamlit reports and the request's headers."""
    lab = lab or get_lab()
    ip = st.context.ip_address
    return resolve_client(ip if isinstance(ip, str) else None,
                          st.context.headers.get_all("X-Forwarded-For"),
                          Trust.of_app(lab.settings.trusted_proxies))


def deliver_session_cookie() -> None:
    """Right after a login, have the browser fetch its HttpOnly cookie (review/ui/server.py): the
    page posts the one-time code; only that route's response can set the cookie."""
    code = st.session_state.pop("handoff", None)
    if code:
        st.html(f"<script>fetch({SESSION_PATH!r}, {{method: 'POST', body: {code!r}, "
                "credentials: 'same-origin'});</script>", unsafe_allow_javascript=True)


def logout(lab: Lab | None = None) -> None:
    """End the account's sessions in every browser (with `lab`) and forget this one's state."""
    user = current_user()
    if lab is not None and user is not None:
        with lab.write() as s:
            revoke_all(s, user.id)
    for key in list(st.session_state.keys()):
        del st.session_state[key]
    st.query_params.clear()


def login_page() -> None:
    """The only page an anonymous visitor can reach. Throttled per account and client address
    (review.accounts.users); over-long fields are refused before anything is hashed."""
    lab = get_lab_or_stop()
    st.title("Fidelity review lab")
    st.caption("Rate how faithfully AI restorations keep what the original photo showed.")
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
            user = authenticate(lab.sessions, username, password, client=client_address())
        except LoginRefused as exc:
            st.error(inert(str(exc)))
            return
        with lab.write() as s:
            session_id, st.session_state["handoff"] = start_session(s, user.id)
        sign_in(SessionUser(user.id, user.username, user.role, user.display_name or user.username,
                            session_id))
        st.rerun()


def flash(kind: str, message: str) -> None:
    """Queue a message for the next render (callbacks run before the page draws)."""
    st.session_state.setdefault("flashes", []).append((kind, message))


def show_flashes() -> None:
    for kind, message in st.session_state.pop("flashes", []):
        {"warning": st.warning, "error": st.error, "success": st.success}.get(kind, st.info)(message)


T = TypeVar("T")


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What a page action came to: its result, or the refusal the user was shown."""

    value: T | None = None
    refusal: ReviewError | None = None


def require_signed_in(s: Any) -> None:
    """In a write's transaction: this tab's user is signed in and their session still live (not
    ended by a logout, role change, password reset or deactivation, in any tab), else
    `SessionEnded`."""
    user = current_user()
    if user is None:
        raise SessionEnded(SIGNED_OUT)
    if user.session_id is not None:  # None: a page a test renders for a user, no browser session
        require_session(s, user.signed)


def run_action(lab: Lab, action: Callable[[Any], T], success: str | Callable[[T], str] | None = None,
               *, callback: bool = False, about: str = "", checks_session: bool = False) -> Outcome[T]:
    """Run one page action in its own transaction (`action` gets the Session), after checking in
    that transaction that the tab's session is still live (`require_signed_in`; an action that
    checks it itself says `checks_session`). This is where the UI catches `ReviewError`: the
    domain's refusal is shown as its plain message (after `about`, e.g. a file name) at its level,
    on the page, or queued for the next render when running in a widget `callback`. With a
    `success` message, a success is flashed and the page reruns (a callback reruns anyway). A
    refusal because the session ended sends the next run back to the login."""
    try:
        def attempt(s: Any) -> T:
            if not checks_session:
                require_signed_in(s)
            return action(s)

        value = lab.run(attempt)  # run again when a concurrent write got in its way (a deadlock)
    except ReviewError as exc:
        message = f"{about}: {exc}" if about else str(exc)
        if isinstance(exc, SessionEnded):
            st.session_state["account_check"] = True
            message = str(exc)
        message = inert(message)  # it quotes user text: names, file names, notes
        if callback:
            flash(exc.level, message)
        else:
            {"warning": st.warning}.get(exc.level, st.error)(message)
            if isinstance(exc, SessionEnded):
                st.rerun(scope="app")  # the app sees the ended session and asks for a login
        return Outcome(refusal=exc)
    if success is not None:
        flash("success", success if isinstance(success, str) else success(value))
        if not callback:
            st.rerun()
    return Outcome(value)


def pick_study(lab: Lab, key: str, empty: str) -> tuple[int, str] | None:
    """The study selector at the top of a study page: every study by name; the chosen study's id
    and name, or None after saying `empty` when there is no study yet."""
    with lab.read() as s:
        names = {study.id: study.name for study in list_studies(s)}
    if not names:
        st.info(empty)
        return None
    study_id = int(st.selectbox("Study", list(names), format_func=names.__getitem__, key=key))
    return study_id, names[study_id]
