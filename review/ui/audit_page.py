"""The audit log (admins): who did what and when, filtered by actor, action and day, and
downloadable as CSV. The entries are written by the domain in the same transaction as each
action (review.accounts.audit); this page only reads them.
"""

from __future__ import annotations

from datetime import date
from typing import TypedDict

import pandas as pd
import streamlit as st

from review.accounts.audit import (
    ACTIONS,
    MAX_ROWS,
    PAGE_ROWS,
    AuditError,
    actor_names,
    audit_csv,
    audit_entries,
    count_entries,
)
from review.database import Lab
from review.policy import Action
from review.ui.common import SessionUser, refuse_unless
from review.ui.display import inert

KEY = "audit_"
EVERYONE = "everyone"


class _Filters(TypedDict):
    """The page's filters, as count_entries and audit_entries take them."""

    actor: str | None
    actions: tuple[str, ...]
    since: date | None
    until: date | None


def render(lab: Lab, user: SessionUser) -> None:
    """The Audit log page."""
    refuse_unless(user, Action.AUDIT_VIEW, "The audit log is only available to admins.")
    st.title("Audit log")
    with lab.read() as s:
        actors = actor_names(s)
    c1, c2, c3, c4 = st.columns([1, 2, 1, 1])
    actor = c1.selectbox("Who", [EVERYONE, *actors], key=f"{KEY}actor")
    actions = c2.multiselect("Actions (none chosen = all)", ACTIONS, key=f"{KEY}actions")
    since: date | None = c3.date_input("From (UTC day)", value=None, key=f"{KEY}since")
    until: date | None = c4.date_input("To (UTC day)", value=None, key=f"{KEY}until")
    filters: _Filters = {"actor": None if actor == EVERYONE else actor, "actions": tuple(actions),
                         "since": since, "until": until}
    try:
        with lab.read() as s:  # a read: no write transaction, so no run_action
            total = count_entries(s, **filters)
            pages = max(1, -(-total // PAGE_ROWS))
            page = st.number_input(f"Page (of {pages:,})", min_value=1, max_value=pages, value=1, step=1,
                                   key=f"{KEY}page_{total}") if pages > 1 else 1
            rows = audit_entries(s, **filters, limit=PAGE_ROWS, offset=(int(page) - 1) * PAGE_ROWS)
    except AuditError as exc:
        st.error(inert(str(exc)))
        return
    if not rows:
        st.info("No entries match these filters.")
        return
    first = (int(page) - 1) * PAGE_ROWS + 1
    st.caption(f"{total:,} entries, newest first" + (f"; showing {first:,}-{first + len(rows) - 1:,}."
                                                     if pages > 1 else "."))
    st.dataframe(pd.DataFrame([{"at (UTC)": r.at, "who": r.actor, "action": r.action, "what": r.target,
                                "details": r.details} for r in rows]), hide_index=True, width="stretch")
    with lab.read() as s:
        everything = audit_entries(s, **filters, limit=MAX_ROWS)
    label = "Download CSV" if total <= MAX_ROWS else f"Download CSV (the newest {MAX_ROWS:,})"
    st.download_button(label, audit_csv(everything), file_name="audit_log.csv", mime="text/csv",
                       key=f"{KEY}csv", help=None if total <= MAX_ROWS else
                       "Narrow the filters (days, actions) to download older entries.")
