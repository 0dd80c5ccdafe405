"""The Rate page: the reviewer's hot path, one restoration after another.

Interaction (keyboard first): a digit picks the score (shown large), Enter submits, S skips
(after a reason is picked), U undoes the last rating, G opens the guideline. Flags and the
comment are optional. The rating area is an `st.fragment`, so a key press reruns only that area,
not the page; all state changes happen in widget callbacks, which run before the fragment
redraws, so one rerun both records a rating and shows the next item.
(`REVIEW_UI_NO_FRAGMENT=1` draws the same area without the fragment: the naive full-page rerun
that bench/rating_loop.py measures as the baseline.)

Reliability:
- The submission token (`client_token`) is made when an item is first shown, per assignment, so a
  double click or a retried submit returns the same rating instead of a second one.
- A stale item (the lease went to someone else) shows a warning and loads the next item.
- The draft (score, flags, comment) lives in session_state and is mirrored into the URL whenever
  it changes (`?st=<study>&a=<assignment>&s=<score>&f=<flags>&c=<comment>`): a server restart
  loses session_state but not the URL, so after logging in again the draft is restored if that
  assignment is still the reviewer's current lease. A draft left in the URL after a submit is
  simply ignored (its assignment is no longer current), so submitting costs no URL update.
- time_taken_ms runs from when this browser session first showed the item to the submit.

Blindness: only the three images are shown; never file names, hashes, method, blur or others'
ratings (ItemView carries nothing else).
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

import streamlit as st

from review.labeling import ratings
from review.labeling.assignment import next_assignment, remaining_for
from review.labeling.ratings import FLAG_LABELS, FLAGS, SKIP_REASONS, StaleAssignment, Submission
from review.labeling.study import study_by_id
from review.labeling.views import (
    GuidelineView,
    ItemView,
    StudyChoice,
    guideline_for,
    item_view,
    ratable_studies,
    retracted_draft,
    reviewer_summary,
)
from review.ui.common import Outcome, flash, get_lab, require_role, run_action, show_flashes
from review.ui.display import show_images
from review.ui.guideline import render_guideline

NO_FRAGMENT = os.environ.get("REVIEW_UI_NO_FRAGMENT", "") == "1"
# "n" in "item k of n" needs remaining_for, a count over the whole study (~0.2 s at 100k items):
# counted when the reviewer opens the study, then again only when stale or used up.
TOTAL_REFRESH_S = 600


@dataclass
class Current:
    """The item on screen, loaded once per item (digit presses touch no database)."""

    assignment_id: int
    item: ItemView
    guideline: GuidelineView
    position: int  # items finished before this one
    total: int
    shown_at: float


def _state(study_id: int) -> dict:
    return st.session_state.setdefault(f"rate:{study_id}", {"cur": None, "total": None, "counted_at": 0.0})


def _draft(aid: int) -> dict:
    """The reviewer's unsent answer for one assignment: score, flags, comment."""
    return st.session_state.setdefault("drafts", {}).setdefault(
        aid, {"score": None, "flags": [], "comment": ""})


def _token(aid: int) -> str:
    return st.session_state.setdefault("tokens", {}).setdefault(aid, uuid.uuid4().hex)


# Widget keys are the same for every item, so moving to the next item updates the widgets in
# place instead of mounting new ones; their values are loaded from the item's draft.
COMMENT_KEY, SKIP_KEY = "comment", "skip_reason"


def _flag_key(flag: str) -> str:
    return f"flag:{flag}"


def _load_widgets(aid: int) -> None:
    """Put the item's draft into the (shared) widgets, once per item shown."""
    if st.session_state.get("widgets_for") == aid:
        return
    draft = _draft(aid)
    for flag in FLAGS:
        st.session_state[_flag_key(flag)] = flag in draft["flags"]
    st.session_state[COMMENT_KEY] = draft["comment"]
    st.session_state[SKIP_KEY] = None
    st.session_state["widgets_for"] = aid


def _read_widgets(aid: int) -> dict:
    """Copy the widgets' values into the item's draft."""
    draft = _draft(aid)
    draft["flags"] = [f for f in FLAGS if st.session_state.get(_flag_key(f))]
    draft["comment"] = st.session_state.get(COMMENT_KEY) or ""
    return draft


# ----------------------------------------------------------------------------- draft <-> URL


def _save_draft_to_url(study_id: int, aid: int) -> None:
    """Mirror the draft into the query string so it survives a lost server session."""
    draft = _draft(aid)
    params: dict[str, str] = {"st": str(study_id), "a": str(aid)}
    if draft["score"] is not None:
        params["s"] = str(draft["score"])
    if draft["flags"]:
        params["f"] = ",".join(draft["flags"])
    if draft["comment"]:
        params["c"] = draft["comment"][:500]
    st.query_params.from_dict(params)


def _restore_draft_from_url(study: StudyChoice, aid: int) -> bool:
    """Take the draft from the URL if it is for this very assignment (the reviewer's current
    lease, so it still belongs to them) and nothing newer is in session_state."""
    qp = st.query_params
    if qp.get("a") != str(aid) or aid in st.session_state.get("drafts", {}):
        return False
    try:
        score = int(qp.get("s", ""))
    except ValueError:
        score = None
    flags = [f for f in (qp.get("f") or "").split(",") if f in FLAGS]
    _prefill(aid, score if score is not None and study.scale_min <= score <= study.scale_max else None,
             flags, (qp.get("c") or "")[: ratings.MAX_COMMENT])
    return True


def _prefill(aid: int, score: int | None, flags: list[str], comment: str) -> None:
    _draft(aid).update(score=score, flags=[f for f in flags if f in FLAGS], comment=comment)


# ----------------------------------------------------------------------------- loading items


def _load_current(study: StudyChoice, user_id: int) -> Current | None:
    """The item on screen; claims the next one from the database only when there is none."""
    state = _state(study.id)
    if state["cur"] is not None:
        return state["cur"]
    lab = get_lab()
    with lab.sessions() as s, s.begin():
        row = study_by_id(s, study.id)
        lease = next_assignment(s, row, user_id)  # enrols the reviewer in a cohort on first use
        if lease is None:
            return None
        view = item_view(s, lease.item_id)
        gv = state.get("guideline") or guideline_for(s, study.id, user_id)
        state["guideline"] = gv
        if state["total"] is None or lease.position >= state["total"] or \
                time.time() - state["counted_at"] > TOTAL_REFRESH_S:
            state["total"] = lease.position + 1 + remaining_for(s, row, user_id)
            state["counted_at"] = time.time()
        undone = state.pop("undone", None) == lease.assignment_id
        previous = retracted_draft(s, lease.item_id, user_id) if undone else None
    aid = lease.assignment_id
    if not _restore_draft_from_url(study, aid) and previous is not None:
        _prefill(aid, *previous)
    _token(aid)  # the idempotency token exists from the moment the item is shown
    shown = st.session_state.setdefault("shown_at", {}).setdefault(aid, time.time())
    cur = Current(aid, view, gv, lease.position, max(state["total"], lease.position + 1), shown)
    state["cur"] = cur
    if previous is not None:
        _save_draft_to_url(study.id, aid)
    return cur


def _finish_item(study_id: int, aid: int) -> None:
    state = _state(study_id)
    state["cur"] = None
    for store in ("drafts", "tokens", "shown_at"):
        st.session_state.get(store, {}).pop(aid, None)
    if st.session_state.get("widgets_for") == aid:
        del st.session_state["widgets_for"]
    # The URL is left alone: a draft there for this assignment is ignored from now on (it is no
    # longer the current item), and not touching the URL saves a history update per item.


# ----------------------------------------------------------------------------- callbacks


def _current_matches(study_id: int, aid: int) -> bool:
    """A click meant for an item that is no longer on screen (double click) does nothing."""
    cur = _state(study_id)["cur"]
    return cur is not None and cur.assignment_id == aid


def _on_pick(study_id: int, aid: int, score: int) -> None:
    if _current_matches(study_id, aid):
        _draft(aid)["score"] = score
        _save_draft_to_url(study_id, aid)


def _on_draft_change(study_id: int, aid: int) -> None:
    if _current_matches(study_id, aid):
        _read_widgets(aid)
        _save_draft_to_url(study_id, aid)


def _on_submit(study: StudyChoice, user_id: int, aid: int) -> None:
    if not _current_matches(study.id, aid):
        return
    cur: Current = _state(study.id)["cur"]
    draft = _read_widgets(aid)
    score = draft["score"]
    if score is None:
        flash("warning", f"Pick a score first: press {study.scale_min}-{study.scale_max} or click one.")
        return
    sub = Submission(
        score=score,
        flags=tuple(draft["flags"]),
        comment=draft["comment"],
        time_taken_ms=max(0, int((time.time() - cur.shown_at) * 1000)),
        client_token=_token(aid),
    )
    if _went_through(run_action(get_lab(), lambda s: ratings.submit(s, aid, user_id, sub), callback=True)):
        _finish_item(study.id, aid)


def _on_skip(study: StudyChoice, user_id: int, aid: int) -> None:
    if not _current_matches(study.id, aid):
        return
    reason = st.session_state.get(SKIP_KEY)
    if not reason:
        flash("warning", "Pick a reason in 'Skip reason' first, then press S or click Skip.")
        return
    if _went_through(run_action(get_lab(), lambda s: ratings.skip(s, aid, user_id, reason), callback=True)):
        _finish_item(study.id, aid)


def _went_through(outcome: Outcome) -> bool:
    """The item is done with: the action succeeded, or the item's lease went to someone else."""
    return outcome.refusal is None or isinstance(outcome.refusal, StaleAssignment)


def _on_undo(study: StudyChoice, user_id: int) -> None:
    def undo(s: Any) -> int | None:
        assignment = ratings.undo_last(s, study_by_id(s, study.id), user_id)
        return assignment.id if assignment is not None else None

    outcome = run_action(get_lab(), undo, callback=True)
    if outcome.refusal is not None:
        return
    aid = outcome.value
    if aid is None:
        flash("info", "Nothing to undo: you have no rating in this study yet.")
        return
    cur = _state(study.id)["cur"]
    if cur is not None:
        _finish_item(study.id, cur.assignment_id)  # its lease was released by undo_last
    _finish_item(study.id, aid)  # a fresh token: the old one belongs to the withdrawn rating
    _state(study.id)["undone"] = aid
    flash("info", "Your last rating was withdrawn (it stays in the history as superseded). "
                  "Rate the item again.")


def _open_guideline(study_id: int) -> None:
    st.session_state["show_guideline"] = study_id


# ----------------------------------------------------------------------------- drawing


@st.dialog("Guideline", width="large")
def _guideline_dialog(gv: GuidelineView) -> None:
    render_guideline(gv)


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds < 3600 else \
        f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _end_of_queue(study: StudyChoice, user_id: int) -> None:
    with get_lab().sessions() as s:
        summary = reviewer_summary(s, study.id, user_id)
    st.success(f"You have finished your queue in {study.name}. Thank you!")
    mean = f"{summary.mean_time_ms / 1000:.1f} s" if summary.mean_time_ms is not None else "-"
    c1, c2, c3 = st.columns(3)
    c1.metric("Rated", summary.rated)
    c2.metric("Skipped", summary.skipped)
    c3.metric("Mean time per rating", mean)
    st.button("Undo last rating", key="undo", shortcut="U", on_click=_on_undo, args=(study, user_id))


def _score_label(score: int, labels: dict[int, str]) -> str:
    return f"{score} · {labels[score]}" if score in labels else str(score)


def rating_area(study: StudyChoice) -> None:
    """Everything that changes from item to item; a fragment unless REVIEW_UI_NO_FRAGMENT=1."""
    user = require_role("reviewer", "admin")
    show_flashes()
    cur = _load_current(study, user.id)
    if cur is None:
        _end_of_queue(study, user.id)
        return
    aid, gv, lab = cur.assignment_id, cur.guideline, get_lab()
    _load_widgets(aid)
    draft = _draft(aid)
    now = time.time()

    # Few elements on purpose: every element is a message and a React update per key press.
    started = st.session_state.get("session_started", now)
    with st.container(horizontal=True, vertical_alignment="center", gap="medium"):
        st.markdown(f"**Item {cur.position + 1} of {cur.total}** &ensp;·&ensp; Guideline: **{gv.label}**"
                    f" &ensp;·&ensp; :gray[this item {_clock(now - cur.shown_at)}, "
                    f"session {_clock(now - started)}]", width="content")
        st.button("Guideline", key="guideline", shortcut="G", icon=":material/menu_book:",
                  on_click=_open_guideline, args=(study.id,))

    item = cur.item
    if item.reference is not None:
        panels = [("Reference", item.reference)]
        if st.session_state.get("show_blurred", False):
            panels.append(("Blurred input", item.blurred))
    else:
        panels = [("Blurred input (no sharp original exists)", item.blurred)]
    panels.append(("Restoration", item.restoration))
    show_images(lab.store, panels)
    if item.reference is None:
        st.caption("A real blurred photo with no sharp original: judge whether the restoration stays "
                   "faithful to what the blurred input shows.")
    else:
        st.toggle("Show blurred input", key="show_blurred")

    labels = study.labels
    scores = list(range(study.scale_min, study.scale_max + 1))
    with st.container(horizontal=True, gap="small"):
        for score in scores:
            st.button(_score_label(score, labels), key=f"score:{score}", shortcut=str(score % 10),
                      type="primary" if draft["score"] == score else "secondary", width="stretch",
                      on_click=_on_pick, args=(study.id, aid, score))
    if draft["score"] is None:
        st.markdown(f"#### Your score: — &nbsp; *press {scores[0]}–{scores[-1]}*")
    else:
        st.markdown(f"#### Your score: {_score_label(draft['score'], labels)} &nbsp; *Enter submits*")

    with st.container(horizontal=True, gap="large"):
        for flag in FLAGS:
            st.checkbox(FLAG_LABELS[flag], key=_flag_key(flag), on_change=_on_draft_change,
                        args=(study.id, aid))
    st.text_input("Comment (optional)", key=COMMENT_KEY, max_chars=ratings.MAX_COMMENT,
                  on_change=_on_draft_change, args=(study.id, aid),
                  placeholder="What changed? e.g. the eyes look different, the sign text is invented")

    with st.container(horizontal=True, vertical_alignment="bottom", gap="small"):
        st.button("Submit", key="submit", shortcut="Enter", type="primary", width=220,
                  icon=":material/check:", on_click=_on_submit, args=(study, user.id, aid))
        st.selectbox("Skip reason", SKIP_REASONS, key=SKIP_KEY, placeholder="Why skip this item?",
                     width=280)
        st.button("Skip", key="skip", shortcut="S", on_click=_on_skip, args=(study, user.id, aid))
        st.button("Undo last rating", key="undo", shortcut="U", icon=":material/undo:",
                  on_click=_on_undo, args=(study, user.id))

    if st.session_state.pop("show_guideline", None) == study.id:
        _guideline_dialog(gv)


_rating_fragment = st.fragment(rating_area)


def _choose_study(studies: list[StudyChoice]) -> StudyChoice:
    if len(studies) == 1:
        return studies[0]
    by_id = {s.id: s for s in studies}
    wanted = st.query_params.get("st")
    ids = list(by_id)
    index = ids.index(int(wanted)) if wanted and wanted.isdigit() and int(wanted) in by_id else 0
    chosen = st.selectbox("Study", ids, index=index, format_func=lambda i: by_id[i].name, key="rate_study")
    return by_id[chosen]


def page() -> None:
    """The Rate page (reviewers and admins)."""
    require_role("reviewer", "admin")
    with get_lab().sessions() as s:
        studies = ratable_studies(s)
    if not studies:
        st.info("No study has items to rate yet. An admin creates studies and generates items.")
        return
    study = _choose_study(studies)
    if NO_FRAGMENT:
        rating_area(study)
    else:
        _rating_fragment(study)
