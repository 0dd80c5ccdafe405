"""Disagreements (admins and QA reviewers): the items whose ratings spread most, each rater's
score, flags and comment side by side with the images, and a form to settle the item with a note
and optionally a consensus score that is kept beside the original ratings
(review.labeling.disagreements). QA reviewers see raters as "rater 1", "rater 2": the QA role
never learns who rated what.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from review.database import Lab
from review.labeling.disagreements import Disagreement, disagreements, settle_item
from review.labeling.study import list_studies, study_by_id
from review.labeling.views import item_view
from review.policy import Action, may
from review.ui.common import SessionUser, refuse_unless, run_action, show_flashes
from review.ui.display import display_jpeg, inert

KEY = "dis_"
NO_SCORE = "no consensus score (note only)"


def _item(lab: Lab, user: SessionUser, d: Disagreement, scale: tuple[int, int]) -> None:
    with st.container(border=True):
        st.markdown(f"**Item {d.item_id}** · spread {d.spread} · SD {d.sd:.2f} · mean {d.mean:.2f} · "
                    f"{len(d.scores)} ratings")
        with lab.read() as s:
            view = item_view(s, d.item_id)
        left, right, table = st.columns([1, 1, 2])
        if view.reference is not None:
            left.image(display_jpeg(lab.store, view.reference), caption="reference", output_format="JPEG")
        right.image(display_jpeg(lab.store, view.restoration), caption="restoration", output_format="JPEG")
        table.dataframe(pd.DataFrame([{"rater": r.rater, "score": r.score, "flags": ", ".join(r.flags),
                                       "comment": r.comment, "by": r.source} for r in d.scores]),
                        hide_index=True, width="stretch")
        if d.settlement is not None:
            score = d.settlement.consensus_score
            table.info(f"Settled by {inert(d.settlement.settled_by)}: "
                       f"{'consensus ' + str(score) if score is not None else 'no consensus score'}"
                       f" · {inert(d.settlement.note)}")
        with st.form(f"{KEY}settle_{d.item_id}", clear_on_submit=True):
            c1, c2 = st.columns([1, 2])
            choice = c1.selectbox("Consensus score", [NO_SCORE, *range(scale[0], scale[1] + 1)],
                                  key=f"{KEY}score_{d.item_id}")
            note = c2.text_input("Note (how it was settled)", key=f"{KEY}note_{d.item_id}")
            if st.form_submit_button("Settle" if d.settlement is None else "Settle again"):
                consensus = None if choice == NO_SCORE else int(choice)
                run_action(lab, lambda s: settle_item(s, d.item_id, user.id, note=note,
                                                      consensus_score=consensus),
                           f"Item {d.item_id} settled.")


def render(lab: Lab, user: SessionUser) -> None:
    """The Disagreements page."""
    refuse_unless(user, Action.DISAGREEMENTS_SETTLE,
                  "The Disagreements page is only available to admins and QA reviewers.")
    st.title("Disagreements")
    show_flashes()
    with lab.read() as s:
        studies = {study.id: study.name for study in list_studies(s)}
    if not studies:
        st.info("No studies yet.")
        return
    c1, c2, c3 = st.columns([2, 1, 1])
    study_id = c1.selectbox("Study", list(studies), format_func=studies.__getitem__, key=f"{KEY}study")
    min_spread = c2.number_input("Least spread (max - min score)", 1, 9, 1, key=f"{KEY}spread")
    limit = c3.number_input("Items shown", 1, 200, 20, key=f"{KEY}limit")
    with lab.read() as s:
        study = study_by_id(s, study_id)
        scale = (study.scale_min, study.scale_max)
        found = disagreements(s, study_id, min_spread=int(min_spread), limit=int(limit),
                              pseudonymise=not may(user.role, Action.RATERS_NAMED))
    if not found:
        st.info(f"No item of '{inert(studies[study_id])}' has two active ratings that differ by "
                f"{int(min_spread)} or more yet.")
        return
    st.caption("Widest spread first. A settlement adds a note, and optionally the consensus score the "
               "exports carry as settled_score, beside the ratings; it never changes them.")
    for d in found:
        _item(lab, user, d, scale)
