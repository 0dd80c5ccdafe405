"""The guideline authoring page (admins): every version with its change note and whether ratings
used it, a safe preview, a new version written from an old one (file first, under the data
folder, then loaded into the database), a side-by-side paragraph diff of two versions with the
changed words marked, and assigning one version, or a randomised
experiment of several versions and QA on/off, to a study.

Rules live in review.labeling.guidelines; this page lays them out. Guideline text
is shown through `render_safe_markdown` and `st.markdown(unsafe_allow_html=False)`, example
images only from the guideline's own folder; titles, change notes and study names are plain
text (review.ui.display.inert).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from review.database import Lab
from review.labeling.cohorts import joined_counts
from review.labeling.guidelines.authoring import (
    diff_versions,
    new_version_from,
    set_guideline_experiment,
    set_study_guideline,
    unified_diff,
    version_table,
    word_diff,
)
from review.labeling.guidelines.files import (
    GUIDELINES_DIR,
    authored_dir,
    parse_guideline,
    sync_all,
    sync_version,
)
from review.labeling.settings import StudySettings
from review.labeling.study import list_studies, study_by_id
from review.labeling.views import GuidelineView, guideline_versions
from review.policy import Action
from review.ui.common import SessionUser, refuse_unless, run_action, show_flashes
from review.ui.display import inert
from review.ui.guideline import render_body

KEY = "gl_"
DIFF_MARK = {"equal": "unchanged", "replace": "changed", "delete": "removed", "insert": "added"}
#: Selections that should move to the newest version once one is written.
_FOLLOW_NEWEST = (f"{KEY}preview", f"{KEY}base", f"{KEY}right")


def _label(gv: GuidelineView) -> str:
    return f"{gv.slug} v{gv.version}: {gv.title}"


def _load(lab: Lab) -> tuple[list[dict], dict[int, GuidelineView]]:
    with lab.read() as s:
        return (version_table(s, authored_dir(lab.settings.data_dir)),
                {gv.id: gv for gv in guideline_versions(s)})


# --------------------------------------------------------------------------------------------
# Preview
# --------------------------------------------------------------------------------------------


def _preview(rows: dict[int, GuidelineView]) -> None:
    chosen = st.selectbox("Version", list(rows), index=len(rows) - 1, key=f"{KEY}preview",
                          format_func=lambda i: _label(rows[i]))
    gv = rows[chosen]
    if gv.change_note:
        st.markdown("**Change note:** " + inert(gv.change_note))  # plain text, not Markdown
    with st.container(border=True):
        render_body(gv)


# --------------------------------------------------------------------------------------------
# New version
# --------------------------------------------------------------------------------------------


def _write_and_sync(lab: Lab, base: GuidelineView, body: str, note: str, title: str, root: Path,
                    shipped: Path) -> None:
    def write_and_load(s: Any) -> tuple[Path, GuidelineView]:
        path = new_version_from(base, body_md=body, change_note=note, title=title, root=root,
                                shipped=shipped)
        return path, GuidelineView.of(sync_version(s, parse_guideline(path), root))

    def written(done: tuple[Path, GuidelineView]) -> str:
        for key in _FOLLOW_NEWEST:  # the rerun shows the new version in the list, preview and diff
            st.session_state.pop(key, None)
        return (f"Wrote {inert(done[1].slug)} v{done[1].version} to {inert(done[0])} and loaded it. "
                "Reviewers get it "
                "once a study is assigned to it.")

    run_action(lab, write_and_load, written)


def _new_version(lab: Lab, rows: dict[int, GuidelineView], root: Path, shipped: Path) -> None:
    base_id = st.selectbox("Start from", list(rows), index=len(rows) - 1, key=f"{KEY}base",
                           format_func=lambda i: _label(rows[i]))
    base = rows[base_id]
    st.caption(f"The new version is written as a new folder in the lab's data folder ({root}; example "
               "pictures are copied), numbered after every existing version; no existing version "
               "changes, and the app's own guidelines/ folder is never written to.")
    with st.form(f"{KEY}new_form_{base_id}"):
        title = st.text_input("Title", value=base.title, key=f"{KEY}title_{base_id}")
        body = st.text_area("Guideline text (Markdown)", value=base.body_md, height=400,
                            key=f"{KEY}body_{base_id}")
        note = st.text_area("Change note (required): what changed and why", key=f"{KEY}note_{base_id}")
        if st.form_submit_button("Write the new version", type="primary"):
            _write_and_sync(lab, base, body, note, title, root, shipped)


# --------------------------------------------------------------------------------------------
# Compare
# --------------------------------------------------------------------------------------------


def _compare(rows: dict[int, GuidelineView]) -> None:
    ids = list(rows)
    c1, c2 = st.columns(2)
    left = c1.selectbox("Left", ids, index=max(0, len(ids) - 2), key=f"{KEY}left",
                        format_func=lambda i: _label(rows[i]))
    right = c2.selectbox("Right", ids, index=len(ids) - 1, key=f"{KEY}right",
                         format_func=lambda i: _label(rows[i]))
    a, b = rows[left], rows[right]
    diff = diff_versions(a.body_md, b.body_md)
    changed = sum(1 for tag, _, _ in diff if tag != "equal")
    st.caption(f"{changed} changed paragraph(s) of {len(diff)}. Removed words are marked [-like "
               "this-], added words {+like this+}.")
    only_changes = st.toggle("Only changed paragraphs", value=True, key=f"{KEY}only_changes")
    shown = [r for r in diff if r[0] != "equal"] if only_changes else diff
    head_l, head_r = st.columns(2)
    head_l.markdown(f"**{inert(a.slug)} v{a.version}**")
    head_r.markdown(f"**{inert(b.slug)} v{b.version}**")
    for tag, lft, rgt in shown:
        if tag == "replace":
            lft, rgt = word_diff(lft, rgt)
        st.caption(DIFF_MARK[tag])
        col_l, col_r = st.columns(2)
        for col, text in ((col_l, lft), (col_r, rgt)):
            if text:  # code blocks: the text is shown as written (never rendered), lines wrapped
                col.code(text, language=None, wrap_lines=True)
    with st.expander("Unified diff"):
        st.code(unified_diff(a.body_md, b.body_md, f"{a.slug} v{a.version}", f"{b.slug} v{b.version}")
                or "(no differences)", language="diff")


# --------------------------------------------------------------------------------------------
# Assign to a study
# --------------------------------------------------------------------------------------------


def _assign(lab: Lab, rows: dict[int, GuidelineView], actor_id: int) -> None:
    with lab.read() as s:
        studies = {st_.id: st_ for st_ in list_studies(s)}
        joined = joined_counts(s)
    if not studies:
        st.info("No studies yet.")
        return
    study_id = st.selectbox("Study", list(studies), key=f"{KEY}study",
                            format_func=lambda i: studies[i].name)
    study = studies[study_id]
    settings = StudySettings.of(study)
    arms = list(settings.guideline_version_ids)
    current = ", ".join(_label(rows[i]) for i in arms if i in rows) if arms else (
        _label(rows[study.guideline_version_id]) if study.guideline_version_id in rows else "none")
    n_joined = joined.get(study_id, 0)
    st.markdown(f"Current guideline arm(s): {inert(current)}; QA share "
                f"{settings.qa_share:.2f}; reviewers joined: {n_joined}.")
    if n_joined:
        st.caption("Reviewers have joined this study, so its guideline arms are fixed (cohorts are "
                   "balanced when reviewers join).")
    mode = st.radio("Set up", ["One guideline version", "Randomised experiment"], horizontal=True,
                    key=f"{KEY}mode")
    ids = list(rows)
    if mode == "One guideline version":
        current_id = study.guideline_version_id
        default = ids.index(current_id) if current_id in rows else len(ids) - 1
        version = st.selectbox("Guideline version", ids, index=default, key=f"{KEY}single",
                               format_func=lambda i: _label(rows[i]))
        if st.button("Assign", key=f"{KEY}assign"):
            run_action(lab, lambda s: set_study_guideline(s, study_by_id(s, study_id), version,
                                                          actor_id=actor_id),
                       f"{inert(study.name)} now uses {inert(_label(rows[version]))}.")
        return
    chosen = st.multiselect("Guideline versions (one arm each)", ids, default=[i for i in arms if i in rows],
                            key=f"{KEY}arms", format_func=lambda i: _label(rows[i]))
    share = st.slider("Share of reviewers whose ratings go through QA", 0.0, 1.0,
                      value=settings.qa_share if arms else 0.5, step=0.05, key=f"{KEY}qa_share")
    st.caption("Each reviewer joins the arm (version x QA on/off) with the fewest members when they "
               "first get work, so arms stay balanced and rate the same items.")
    if st.button("Set up the experiment", key=f"{KEY}experiment"):
        run_action(lab, lambda s: set_guideline_experiment(s, study_by_id(s, study_id), chosen, share,
                                                               actor_id=actor_id),
                   f"{inert(study.name)}: {len(chosen)} guideline arm(s), QA share {share:.2f}.")


def render(lab: Lab, user: SessionUser, guidelines_root: Path | None = None) -> None:
    """The guideline authoring page (admins only). Shipped versions are loaded from
    `guidelines_root` (default: the app's guidelines/ folder); new versions are written to, and
    loaded from, the data folder's guidelines/ (`authored_dir`)."""
    refuse_unless(user, Action.GUIDELINE_EDIT, "The guideline authoring page is only available to admins.")
    root = Path(guidelines_root) if guidelines_root is not None else GUIDELINES_DIR
    mine = authored_dir(lab.settings.data_dir)
    st.title("Guidelines")
    show_flashes()
    if st.button("Load guideline files", key=f"{KEY}sync",
                 help=f"Reads <slug>/v<N>/guideline.md in {root} (shipped) and {mine} (this lab's)"):
        run_action(lab, lambda s: sync_all(s, root, mine), lambda loaded: f"{len(loaded)} version(s) loaded.")
    table, rows = _load(lab)
    if not rows:
        st.info("No guideline versions loaded yet: press “Load guideline files”.")
        return
    st.dataframe(pd.DataFrame([{
        "guideline": r["slug"], "version": r["version"], "title": r["title"], "kept in": r["kept_in"],
        "change note": r["change_note"], "used by ratings": r["ratings"],
        "studies": ", ".join(r["studies"]),
    } for r in table]), hide_index=True, width="stretch")
    st.caption("A version used by ratings is immutable: to change it, write a new version.")
    preview, new, compare, assign = st.tabs(["Preview", "New version", "Compare", "Assign to a study"])
    with preview:
        _preview(rows)
    with new:
        _new_version(lab, rows, mine, root)
    with compare:
        _compare(rows)
    with assign:
        _assign(lab, rows, user.id)


__all__ = ["render"]
