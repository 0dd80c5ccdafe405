"""Study setup (admins): create a study (name, items copied from other studies, one guideline
version or a randomised guideline x QA experiment, raters per item, gold rate, per-reviewer cap,
who may join), edit what may still change, close or reopen it. Every rule and refusal lives in
review.labeling.study; this page lays out forms and shows the domain's messages.
"""

from __future__ import annotations

import streamlit as st

from review.database import Lab
from review.labeling.cohorts import joined_counts
from review.labeling.settings import StudySettings
from review.labeling.study import (
    StudyConfig,
    StudyEdit,
    close_study,
    closed_at,
    count_items,
    create_study,
    edit_study,
    list_studies,
    study_edit_of,
)
from review.labeling.views import guideline_versions
from review.ui.common import SessionUser, run_action, show_flashes
from review.users import list_users

KEY = "studies_"


def _create(lab: Lab, user: SessionUser, studies: dict[int, str], versions: dict[str, str],
            raters: dict[int, str]) -> None:
    with st.form(f"{KEY}create", clear_on_submit=False):
        st.subheader("Create a study")
        c1, c2 = st.columns(2)
        name = c1.text_input("Name", key=f"{KEY}name", max_chars=100)
        description = c2.text_input("Description", key=f"{KEY}description")
        sources = st.multiselect("Items: copy the restorations of these studies (gold controls stay "
                                 "gold); or leave empty and generate into the new study", list(studies),
                                 format_func=studies.get, key=f"{KEY}sources")
        labels = list(versions)
        arms = st.multiselect("Guideline version(s): one for everyone, or several to randomise "
                              "reviewers across them", labels, default=labels[-1:], format_func=versions.get,
                              key=f"{KEY}guidelines")
        c1, c2, c3, c4 = st.columns(4)
        qa_share = c1.number_input("QA share (reviewers whose ratings go through QA)", 0.0, 1.0, 0.5,
                                   step=0.05, key=f"{KEY}qa_share")
        per_item = c2.number_input("Raters per item", 1, 50, 3, step=1, key=f"{KEY}raters")
        gold = c3.number_input("Gold rate", 0.0, 1.0, 0.1, step=0.05, key=f"{KEY}gold")
        cap = c4.number_input("Items per reviewer (0 = no cap)", 0, 100_000, 0, step=1, key=f"{KEY}cap")
        who = st.multiselect("Reviewers who may join (none chosen = everyone)", list(raters),
                             format_func=raters.get, key=f"{KEY}reviewers")
        if st.form_submit_button("Create study", type="primary"):
            if not arms:
                st.error("Pick at least one guideline version.")
                return
            config = StudyConfig(name=name, description=description, raters_per_item=int(per_item),
                                 gold_rate=float(gold))
            run_action(lab, lambda s: create_study(
                s, config, arms[0], int(cap) or None, arms=arms[1:], qa_share=float(qa_share),
                reviewer_ids=who, source_study_ids=sources, actor_id=user.id),
                lambda study: f"Study {study.name!r} created.")


def _edit(lab: Lab, user: SessionUser, raters: dict[int, str]) -> None:
    with lab.sessions() as s:
        rows = {x.id: (x.name, closed_at(s, x.id), study_edit_of(x), StudySettings.of(x), count_items(s, x))
                for x in list_studies(s)}
        joined = joined_counts(s)
    if not rows:
        return
    st.subheader("Edit or close a study")
    study_id = st.selectbox("Study", list(rows), format_func=lambda i: rows[i][0], key=f"{KEY}edit_study")
    name, closed, current, settings, n_items = rows[study_id]
    state = f"closed {closed:%Y-%m-%d %H:%M} UTC" if closed else "open"
    st.caption(f"{n_items} items · {joined.get(study_id, 0)} reviewer(s) joined · {state} · QA share "
               f"{settings.qa_share:.2f}. Guideline versions and the QA share are set on the Guidelines "
               "page until reviewers join; then they are fixed.")
    with st.form(f"{KEY}edit_{study_id}"):
        description = st.text_input("Description", current.description, key=f"{KEY}edit_desc_{study_id}")
        c1, c2, c3 = st.columns(3)
        per_item = c1.number_input("Raters per item", 1, 50, current.raters_per_item, step=1,
                                   key=f"{KEY}edit_raters_{study_id}")
        gold = c2.number_input("Gold rate", 0.0, 1.0, float(current.gold_rate), step=0.05,
                               key=f"{KEY}edit_gold_{study_id}")
        cap = c3.number_input("Items per reviewer (0 = no cap)", 0, 100_000,
                              current.max_items_per_reviewer or 0, step=1, key=f"{KEY}edit_cap_{study_id}")
        who = st.multiselect("Reviewers who may join (none chosen = everyone)", list(raters),
                             default=[i for i in current.reviewer_ids if i in raters], format_func=raters.get,
                             key=f"{KEY}edit_reviewers_{study_id}")
        if st.form_submit_button("Save changes"):
            edit = StudyEdit(description, int(per_item), float(gold), int(cap) or None, tuple(who))
            run_action(lab, lambda s: edit_study(s, study_id, edit, actor_id=user.id),
                       f"Study {name!r} saved.")
    if closed is None:
        if st.button("Close study", key=f"{KEY}close_{study_id}",
                     help="Reviewers get no new items; every rating stays and stays in the analysis."):
            run_action(lab, lambda s: close_study(s, study_id, actor_id=user.id), f"Study {name!r} closed.")
    elif st.button("Reopen study", key=f"{KEY}reopen_{study_id}"):
        run_action(lab, lambda s: close_study(s, study_id, closed=False, actor_id=user.id),
                   f"Study {name!r} reopened.")


def render(lab: Lab, user: SessionUser) -> None:
    """The Study setup page."""
    if user.role != "admin":
        st.error("Study setup is only available to admins.")
        st.stop()
    st.title("Study setup")
    show_flashes()
    with lab.sessions() as s:
        studies = {study.id: study.name for study in list_studies(s)}
        versions = {f"{v.slug}:{v.version}": f"{v.label}: {v.title}"
                    for v in sorted(guideline_versions(s), key=lambda v: (v.slug, v.version))}
        raters = {u.id: u.username + ("" if u.active else " (deactivated)")
                  for u in list_users(s) if u.role in ("reviewer", "admin")}
    if not versions:
        st.info("No guideline loaded yet: `python -m review init` loads guidelines/.")
        return
    _create(lab, user, studies, versions, raters)
    _edit(lab, user, raters)
