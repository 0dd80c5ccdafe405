"""Admin pages: user accounts, study progress (with gold accuracy per reviewer), and the guideline
versions. Reviewers never reach these: the navigation omits them and each page checks the role.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from review.accounts.users import add_user, list_users, reset_password, set_active, set_role, unlock
from review.analysis.qa_stats import gold_accuracy
from review.enums import Role
from review.labeling.views import guideline_versions, reviewer_progress, study_progress
from review.media.restore.runner import sd15_status
from review.policy import Action, typed_roles
from review.ui.common import get_lab, require, run_action, show_flashes
from review.ui.display import inert
from review.ui.guideline import render_guideline

ROLES = list(typed_roles())  # the role choices an admin may give, as stored


def users_page() -> None:
    """Add users, reset passwords, change roles, deactivate and reactivate accounts."""
    me = require(Action.USERS_MANAGE)
    lab = get_lab()
    st.title("Users")
    show_flashes()
    with st.form("add_user", clear_on_submit=True):
        st.subheader("Add a user")
        c1, c2, c3 = st.columns(3)
        username = c1.text_input("Username", key="new_username")
        display = c2.text_input("Display name", key="new_display")
        role = c3.selectbox("Role", ROLES, index=ROLES.index(Role.REVIEWER), key="new_role")
        password = st.text_input("Initial password (at least 8 characters)", type="password",
                                 key="new_password")
        if st.form_submit_button("Add user", type="primary"):
            run_action(lab, lambda s: add_user(s, username, password, role, display, actor_id=me.id),
                 f"User '{inert(username.strip().lower())}' added as {role}.")

    with lab.read() as s:
        users = list_users(s)
    st.subheader("Accounts")
    st.dataframe(
        pd.DataFrame([{"username": u.username, "name": u.display_name, "role": u.role,
                       "active": u.active, "last login": u.last_login_at} for u in users]),
        hide_index=True, width="stretch")

    names = [u.username for u in users]
    left, right = st.columns(2)
    with left.form("reset_password", clear_on_submit=True):
        st.markdown("**Reset a password**")
        reset_user = st.selectbox("User", names, index=None, key="reset_user", placeholder="Choose a user")
        new = st.text_input("New password", type="password", key="reset_password_value")
        if st.form_submit_button("Reset password"):
            if reset_user is None:
                st.error("Choose a user.")
            else:
                run_action(lab, lambda s: reset_password(s, reset_user, new, actor_id=me.id),
                           f"Password of '{inert(reset_user)}' reset.")
    with right.form("activation"):
        st.markdown("**Deactivate, reactivate or unlock**")
        account = st.selectbox("User", names, index=None, key="active_user", placeholder="Choose a user")
        c1, c2, c3 = st.columns(3)
        deactivate = c1.form_submit_button("Deactivate", help="Also ends the account's open sessions.")
        activate = c2.form_submit_button("Reactivate")
        unlocked = c3.form_submit_button("Unlock logins", help="Forget the account's failed logins.")
        if not (deactivate or activate or unlocked):
            pass  # nothing pressed
        elif account is None:
            st.error("Choose a user.")
        elif unlocked:
            run_action(lab, lambda s: unlock(s, account), f"Failed logins of '{inert(account)}' cleared.")
        elif deactivate and account == me.username:
            st.error("You cannot deactivate your own account.")
        else:
            run_action(lab, lambda s: set_active(s, account, bool(activate), actor_id=me.id),
                       f"User '{inert(account)}' {'reactivated' if activate else 'deactivated'}.")
    with st.form("change_role"):
        st.markdown("**Change a role** (the account's open sessions end; the new role applies "
                    "from its next sign-in)")
        c1, c2 = st.columns(2)
        who = c1.selectbox("User", names, index=None, key="role_user", placeholder="Choose a user")
        new_role = c2.selectbox("New role", ROLES, index=None, key="role_value", placeholder="Choose a role")
        if st.form_submit_button("Change role"):
            if who is None or new_role is None:
                st.error("Choose a user and a role.")
            else:
                run_action(lab, lambda s: set_role(s, who, new_role, actor_id=me.id),
                           f"User '{inert(who)}' is now {new_role}.")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _gold_cells(gold: pd.DataFrame, username: str) -> dict[str, int | str]:
    """A reviewer's gold columns from review.analysis.qa_stats.gold_accuracy (indexed by reviewer)."""
    if username not in gold.index:
        return {"gold rated": 0, "gold within expected range": 0, "gold accuracy": _pct(None)}
    row = gold.to_dict("index")[username]
    return {"gold rated": int(row["n"]), "gold within expected range": int(row["within"]),
            "gold accuracy": _pct(float(row["accuracy"]))}


def study_page() -> None:
    """Progress per study, per-reviewer counts and gold accuracy (admins only)."""
    require(Action.STUDY_VIEW)
    lab = get_lab()
    st.title("Studies")
    st.caption(sd15_status(lab.settings))
    with lab.read() as s:
        studies = study_progress(s)
        per_reviewer = {p.id: reviewer_progress(s, p.id) for p in studies}
        # every reviewer's and participant's own record, whatever data cleansing decided of it
        gold = {p.id: gold_accuracy(s, p.id, "reviewer", "all").set_index("reviewer") for p in studies}
    if not studies:
        st.info("No studies yet. Create one on the Study setup page (or `python -m review demo`).")
        return
    for p in studies:
        with st.container(border=True):
            st.subheader(inert(p.name))
            c1, c2, c3, c4 = st.columns(4)
            c1.metric("Items", p.items, help=f"{p.gold_items} gold items")
            c2.metric("Ratings done", f"{p.active_ratings} / {p.target}",
                      help=f"{p.raters_per_item} reviewers per item; active ratings only")
            c3.metric("Items complete", f"{p.complete_items} / {p.items}")
            c4.metric("Skipped", p.skipped)
            st.progress(min(1.0, p.active_ratings / p.target) if p.target else 0.0)
            rows = per_reviewer[p.id]
            if rows:
                st.dataframe(pd.DataFrame([{
                    "reviewer": r.username if r.active else f"{r.username} (deactivated)",
                    "name": r.display_name, "rated": r.rated,
                    "skipped": r.skipped, **_gold_cells(gold[p.id], r.username),
                    "mean time (s)": None if r.mean_time_ms is None else round(r.mean_time_ms / 1000, 1),
                } for r in rows]), hide_index=True, width="stretch")
                st.caption("Gold accuracy: the share of a reviewer's active ratings of gold items "
                           "(controls with a known expected score range) whose score, the reviewer's "
                           "own even where QA corrected it, falls inside that range.")
            else:
                st.caption("No ratings yet.")


def guidelines_page() -> None:
    """Every guideline version loaded, newest first, as reviewers see it."""
    require(Action.GUIDELINE_VIEW)
    st.title("Guidelines")
    with get_lab().read() as s:
        views = sorted(guideline_versions(s), key=lambda v: (v.slug, -v.version))
    if not views:
        st.info("No guideline loaded yet: `python -m review init` loads guidelines/<slug>/v<N>/.")
        return
    chosen = st.selectbox("Version", [v.id for v in views], key="guideline_version",
                          format_func=lambda i: next(f"{v.label}: {v.title}" for v in views if v.id == i))
    view = next(v for v in views if v.id == chosen)
    if view.change_note:
        st.caption(f"Change note: {inert(view.change_note)}")
    with st.container(border=True):
        render_guideline(view)
