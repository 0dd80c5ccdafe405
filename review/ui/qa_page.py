"""The QA page: a QA reviewer works through the study's QA sample, seeing each sampled rating
(score, flags, comment) beside the reference and the restoration, and accepts, rejects (with a
reason) or corrects it (new score and reason). Admins also set the QA rate, whether reviewers see
feedback, draw the sample, and read the per-cohort QA summary and gold accuracy.

The page only lays things out; every rule (who may judge what, one verdict per rating, append-only
corrections) lives in review.labeling.qa. The reviewer's identity is never shown to the QA reviewer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from review.analysis.export import RATINGS_WORDS
from review.analysis.qa_stats import gold_accuracy_read, qa_summary
from review.database import Lab
from review.labeling import qa
from review.labeling.ratings import FLAG_LABELS, FLAGS
from review.labeling.settings import StudySettings
from review.labeling.study import study_by_id
from review.labeling.views import ImageRef, scale_labels
from review.media.store import ImageStore
from review.policy import Action, may
from review.ui.common import SessionUser, pick_study, refuse_unless, run_action, show_flashes
from review.ui.display import display_jpeg, inert

KEY = "qa_"


def _show(store: ImageStore, image: ImageRef) -> None:
    st.image(display_jpeg(store, image), output_format="JPEG")


# --------------------------------------------------------------------------------------------
# Admin: settings, sampling, summary
# --------------------------------------------------------------------------------------------


def _admin_panel(lab: Lab, study_id: int, actor_id: int) -> None:
    with lab.read() as s:
        study = study_by_id(s, study_id)
        settings = StudySettings.of(study)
        rate, show = settings.qa_rate, settings.show_qa_feedback
        summary = qa_summary(s, study_id)
        gold, gold_read = gold_accuracy_read(s, study_id, "qa_cohort")
    with st.expander("QA settings, sampling and summary (admin)", expanded=False):
        with st.form(f"{KEY}settings_{study_id}"):
            c1, c2 = st.columns(2)
            new_rate = c1.number_input("QA rate (share of each reviewer's ratings per blur kind and "
                                       "content)", min_value=0.0, max_value=1.0, value=rate, step=0.05,
                                       key=f"{KEY}rate_{study_id}")
            new_show = c2.checkbox("Show QA feedback to reviewers", value=show,
                                   key=f"{KEY}feedback_{study_id}")
            if st.form_submit_button("Save QA settings"):
                run_action(lab, lambda s: qa.set_qa_options(s, study_by_id(s, study_id), rate=new_rate,
                                                            show_feedback=new_show, actor_id=actor_id),
                       f"QA rate {new_rate:.2f} saved; feedback {'shown' if new_show else 'hidden'}.")
        st.caption("Sampling covers active ratings of reviewers in the QA-on cohort only, stratified "
                   "by reviewer, blur kind and image content. Run it again as ratings arrive: it "
                   "tops each stratum up to the rate and never drops what was sampled.")
        if st.button(f"Sample now at rate {rate:.2f}", key=f"{KEY}sample_{study_id}"):
            run_action(lab, _sample_now(study_id, actor_id), lambda said: said)
        if not summary.empty:
            st.markdown("**QA per cohort**")
            st.dataframe(summary, hide_index=True, width="stretch")
        if not gold.empty:
            st.markdown("**Gold accuracy by QA cohort** (the reviewers' own scores on gold items, "
                        "before any QA correction; Wilson 95% CI)")
            st.dataframe(gold, hide_index=True, width="stretch")
            st.caption(f"From {RATINGS_WORDS[gold_read]}.")


def _sample_now(study_id: int, actor_id: int) -> Callable[[Any], str]:
    """The "Sample now" action: what it added, or why it added nothing."""
    def sample(s: Any) -> str:
        study = study_by_id(s, study_id)
        added = qa.sample_for_qa(s, study, actor_id=actor_id)
        if added:
            return f"{len(added)} rating(s) added to the QA sample."
        return f"No rating added to the QA sample. {qa.why_nothing_sampled(s, study)}"
    return sample


# --------------------------------------------------------------------------------------------
# The queue
# --------------------------------------------------------------------------------------------


def _score_text(score: int, labels: dict[int, str]) -> str:
    # shown as a metric and as radio options, which render Markdown: the guideline's words as text
    return f"{score} · {inert(labels[score])}" if score in labels else str(score)


def _task_view(lab: Lab, user: SessionUser, study_id: int, task: qa.QATask, labels: dict[int, str]) -> None:
    rid = task.rating_id
    left, right = st.columns(2)
    with left:
        st.markdown("**Reference**")
        if task.reference is not None:
            _show(lab.store, task.reference)
        else:
            st.caption("No sharp reference: a real blurred photo.")
    with right:
        st.markdown("**Restoration**")
        _show(lab.store, task.restoration)
    if st.toggle("Show the blurred input", key=f"{KEY}blurred_{rid}"):
        _show(lab.store, task.blurred)

    with st.container(border=True):
        st.markdown("**The reviewer's rating**")
        c1, c2 = st.columns(2)
        c1.metric("Score", _score_text(task.score, labels))
        c2.markdown("**Flags**  \n" + (", ".join(FLAG_LABELS.get(f, f) for f in task.flags) or "none"))
        st.markdown("**Comment**")
        st.text(task.comment or "(no comment)")  # plain text: a reviewer's comment is never Markdown
        st.caption(f"Rated under guideline {inert(task.guideline_label)}.")

    if st.button("Accept", key=f"{KEY}accept_{rid}", type="primary", icon=":material/check:"):
        run_action(lab, lambda s: qa.accept(s, rid, user.id), "Accepted.")
    c_reject, c_correct = st.columns(2)
    with c_reject.form(f"{KEY}reject_form_{rid}"):
        st.markdown("**Reject**")
        reason = st.text_area("Why is the rating wrong?", key=f"{KEY}reject_reason_{rid}")
        if st.form_submit_button("Reject"):
            run_action(lab, lambda s: qa.reject(s, rid, user.id, reason), "Rejected.")
    with c_correct.form(f"{KEY}correct_form_{rid}"):
        st.markdown("**Correct**")
        scores = list(range(task.scale_min, task.scale_max + 1))
        new_score = st.radio("Corrected score", scores, index=scores.index(task.score), horizontal=True,
                             format_func=lambda v: _score_text(v, labels), key=f"{KEY}correct_score_{rid}")
        new_flags = st.multiselect("Flags", FLAGS, default=[f for f in task.flags if f in FLAGS],
                                   format_func=lambda f: FLAG_LABELS.get(f, f),
                                   key=f"{KEY}correct_flags_{rid}")
        why = st.text_area("Why?", key=f"{KEY}correct_reason_{rid}")
        if st.form_submit_button("Correct"):
            run_action(lab, lambda s: qa.correct(s, rid, user.id, int(new_score), why, flags=new_flags),
                       f"Corrected to {new_score}.")
    if may(user.role, Action.QA_SAMPLE):
        with st.expander("Make this item a gold item (admin)"):
            lo, hi = st.select_slider("Expected score range", options=scores,
                                      value=(task.scale_min, task.scale_max), key=f"{KEY}gold_{rid}")
            if st.button("Promote to gold", key=f"{KEY}gold_btn_{rid}"):
                run_action(lab, lambda s: qa.promote_to_gold(s, task.item_id, int(lo), int(hi)),
                           f"Item is now gold, expecting {lo}-{hi}.")


def _queue(lab: Lab, user: SessionUser, study_id: int) -> None:
    with lab.read() as s:
        study = study_by_id(s, study_id)
        progress = qa.qa_progress(s, study, user.id)
        task = qa.next_qa_task(s, study, user.id)
        labels = scale_labels(study)
    if progress.sampled == 0:
        hint = "Use “Sample now” above." if may(user.role, Action.QA_SAMPLE) else "An admin draws the sample."
        st.info(f"No ratings of this study are sampled for QA yet. {hint}")
        return
    st.progress(progress.judged / progress.sampled)
    st.caption(f"{progress.judged} of {progress.sampled} sampled ratings reviewed · "
               f"{progress.open_for_user} waiting for you")
    if task is None:
        st.success("Nothing left for you to check in this study.")
        return
    _task_view(lab, user, study_id, task, labels)


def render(lab: Lab, user: SessionUser) -> None:
    """The QA page for QA reviewers and admins."""
    refuse_unless(user, Action.QA_REVIEW, "The QA page is only available to QA reviewers and admins.")
    st.title("QA review")
    show_flashes()
    picked = pick_study(lab, f"{KEY}study", "No studies yet.")
    if picked is None:
        return
    study_id = picked[0]
    if may(user.role, Action.QA_SAMPLE):
        _admin_panel(lab, study_id, user.id)
    _queue(lab, user, study_id)


__all__ = ["render"]
