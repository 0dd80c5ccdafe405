"""The Rate page: the reviewer's hot path, one restoration after another.

Interaction (keyboard first): a digit picks the score (shown large), Enter submits, S skips
(after a reason is picked), U undoes the last rating, G opens the guideline; in the viewer
(review/ui/viewer.py) Z zooms, F flickers between reference and restoration, B shows the blurred
input, and I, D, T, A, L toggle the flags. Flags and the comment are optional. The rating area
is an `st.fragment`, so a key press reruns only that area, not the page; all state changes
happen in widget callbacks, which run before the fragment redraws, so one rerun both records a
rating and shows the next item.
(`REVIEW_UI_NO_FRAGMENT=1` draws the same area without the fragment: the naive full-page rerun
that bench/rating_loop.py measures as the baseline.)

Reliability:
- The submission token (`client_token`) is made when an item is first shown, per assignment, so a
  double click or a retried submit returns the same rating instead of a second one.
- A stale item (the lease went to someone else) shows a warning and loads the next item.
- The draft (score, flags, comment) lives in session_state and is saved server-side whenever it
  changes (review.labeling.drafts), never in the URL: a reload, a lost session or a server restart
  brings it back with the item, comment whole. Undo and Reopen put the withdrawn rating into it.
- Undo corrects only the last answer (a rating or a skip), once; "Your recent answers" reopens an
  earlier one; a rating QA has judged stays (review.labeling.ratings says why). With the study's
  QA feedback on, the verdicts and corrections on the reviewer's ratings are listed below.
- Every write checks this tab's session in its transaction (review.accounts.sessions.require_session): after
  a logout, role change, password reset or deactivation (in any tab) it stores nothing and the app
  asks for a new login.
- Two tabs on one item: the second tab's submit or skip of an item the first already answered
  moves on to the next item with a short note, and Undo only takes back answers given in this tab
  (`answered`), never the other tab's.
- time_taken_ms runs from when this browser session first showed the item to the submit.

Blindness: only the three images are shown; never file names, hashes, method, blur or others'
ratings (ItemView carries nothing else).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import streamlit as st

from review.accounts.check import AccountRefused
from review.accounts.sessions import require_session
from review.errors import ReviewError
from review.labeling import ratings
from review.labeling.assignment import claim_next, remaining_for
from review.labeling.drafts import Draft, load_draft, save_draft
from review.labeling.qa import feedback_for
from review.labeling.ratings import FLAG_LABELS, FLAGS, SKIP_REASONS, StaleAssignment, Submission
from review.labeling.study import study_by_id
from review.labeling.views import (
    GuidelineView,
    ItemView,
    StudyChoice,
    guideline_for,
    item_view,
    ratable_studies,
    recent_answers,
    reviewer_summary,
)
from review.policy import Action
from review.ui.common import (
    Outcome,
    SessionUser,
    current_user,
    flash,
    get_lab,
    require,
    run_action,
    show_flashes,
)
from review.ui.display import inert
from review.ui.guideline import render_guideline
from review.ui.viewer import Panel, compare_viewer

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


# ----------------------------------------------------------------------------- server-side draft


def _save_draft(aid: int) -> None:
    """Keep the draft server-side (a refusal, e.g. a deactivated account, is shown as usual)."""
    user, draft = current_user(), _draft(aid)
    if user is not None:
        saved = Draft(draft["score"], tuple(draft["flags"]), draft["comment"])
        _note_inactive(run_action(get_lab(), lambda s: save_draft(s, aid, user.id, saved), callback=True))


def _note_inactive(outcome: Outcome) -> Outcome:
    """After a refusal for a deactivated account or an ended session, the next run goes back to
    the app (a new login)."""
    if isinstance(outcome.refusal, AccountRefused):  # an ended session is one too
        st.session_state["account_check"] = True
    return outcome


def _answered() -> set[int]:
    """The assignments this tab answered (or reopened): the only ones its Undo may take back."""
    return st.session_state.setdefault("answered", set())


def _prefill(aid: int, score: int | None, flags: list[str], comment: str) -> None:
    _draft(aid).update(score=score, flags=[f for f in flags if f in FLAGS], comment=comment)


# ----------------------------------------------------------------------------- loading items


def _load_current(study: StudyChoice, user: SessionUser) -> Current | None:
    """The item on screen; claims the next one from the database only when there is none (after
    checking this tab's session in the same transaction: an ended one goes back to the login)."""
    state = _state(study.id)
    if state["cur"] is not None:
        return state["cur"]
    lab, user_id = get_lab(), user.id
    try:
        with lab.write() as s:
            require_session(s, user.signed, ratings.RATER_ROLES)
            lease = claim_next(s, study.id, user_id)  # enrols the reviewer in a cohort on first use
            if lease is None:
                return None
            view = lease.view or item_view(s, lease.item_id)  # PostgreSQL's claim read it already
            gv = state.get("guideline") or guideline_for(s, study.id, user_id)
            state["guideline"] = gv
            if state["total"] is None or lease.position >= state["total"] or \
                    time.time() - state["counted_at"] > TOTAL_REFRESH_S:
                state["total"] = lease.position + 1 + remaining_for(s, study_by_id(s, study.id), user_id)
                state["counted_at"] = time.time()
            aid = lease.assignment_id
            saved = load_draft(s, aid, user_id) if aid not in st.session_state.get("drafts", {}) else None
    except AccountRefused:  # a deactivated account or an ended session
        st.session_state["account_check"] = True
        st.rerun(scope="app")
    except ReviewError as exc:  # the claim was refused (a concurrent write, a busy database): say so
        {"warning": st.warning}.get(exc.level, st.error)(str(exc))
        st.button("Load the next item", key="claim_again")  # a click runs the claim again
        st.stop()
    if saved is not None:
        _prefill(aid, saved.score, list(saved.flags), saved.comment)
    _token(aid)  # the idempotency token exists from the moment the item is shown
    shown = st.session_state.setdefault("shown_at", {}).setdefault(aid, time.time())
    cur = Current(aid, view, gv, lease.position, max(state["total"], lease.position + 1), shown)
    state["cur"] = cur
    return cur


def _finish_item(study_id: int, aid: int) -> None:
    state = _state(study_id)
    state["cur"] = None
    for store in ("drafts", "tokens", "shown_at"):
        st.session_state.get(store, {}).pop(aid, None)
    if st.session_state.get("widgets_for") == aid:
        del st.session_state["widgets_for"]


# ----------------------------------------------------------------------------- callbacks


def _current_matches(study_id: int, aid: int) -> bool:
    """A click meant for an item that is no longer on screen (double click) does nothing."""
    cur = _state(study_id)["cur"]
    return cur is not None and cur.assignment_id == aid


def _on_pick(study_id: int, aid: int, score: int) -> None:
    if _current_matches(study_id, aid):
        _draft(aid)["score"] = score
        _save_draft(aid)


def _on_draft_change(study_id: int, aid: int) -> None:
    if _current_matches(study_id, aid):
        _read_widgets(aid)
        _save_draft(aid)


def _on_submit(study: StudyChoice, user: SessionUser, aid: int) -> None:
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
    _send_answer(study.id, aid, lambda s: ratings.submit(s, aid, user.id, sub, signed=user.signed))


def _on_skip(study: StudyChoice, user: SessionUser, aid: int) -> None:
    if not _current_matches(study.id, aid):
        return
    reason = st.session_state.get(SKIP_KEY)
    if not reason:
        flash("warning", "Pick a reason in 'Skip reason' first, then press S or click Skip.")
        return
    _send_answer(study.id, aid, lambda s: ratings.skip(s, aid, user.id, reason, signed=user.signed))


def _send_answer(study_id: int, aid: int, write: Callable[[Any], object]) -> None:
    """Store one answer of this tab (a rating or a skip; the write checks the session itself),
    remember it as this tab's (Undo takes back only those) and move on once the item is done."""
    outcome = _note_inactive(run_action(get_lab(), write, callback=True, checks_session=True))
    if outcome.refusal is None:
        _answered().add(aid)
    if _went_through(outcome):
        _finish_item(study_id, aid)


def _went_through(outcome: Outcome) -> bool:
    """The item is done with: the action succeeded, the item's lease went to someone else, or
    another tab answered it already (`AlreadyRated`, a `StaleAssignment`)."""
    return outcome.refusal is None or isinstance(outcome.refusal, StaleAssignment)


def _on_undo(study: StudyChoice, user: SessionUser, reopen_aid: int | None = None) -> None:
    """Undo (the last answer, if this tab gave it) or, with `reopen_aid`, reopen one from the
    history list (any tab's: the reviewer picked it)."""
    def undo(s: Any) -> int | None:
        row = study_by_id(s, study.id)
        if reopen_aid is not None:
            return ratings.reopen(s, row, user.id, reopen_aid, signed=user.signed).id
        assignment = ratings.undo_last(s, row, user.id, signed=user.signed, answered_here=_answered())
        return assignment.id if assignment is not None else None

    cur = _state(study.id)["cur"]
    outcome = _note_inactive(run_action(get_lab(), undo, callback=True, checks_session=True))
    if outcome.refusal is not None:
        return
    aid = outcome.value
    if aid is not None:
        _answered().add(aid)  # reopened here: this tab's to answer (and undo) now
    if aid is None:
        flash("info", "Nothing to undo: you have no answer in this study yet.")
        return
    if cur is not None and cur.assignment_id == aid:
        flash("info", "You are already changing this answer: rate or skip it. Undo goes back one "
                      "step only; earlier answers can be reopened from 'Your recent answers'.")
        return
    if cur is not None:
        _finish_item(study.id, cur.assignment_id)  # its lease was released (its draft stays saved)
    _finish_item(study.id, aid)  # a fresh token: the old one belongs to the withdrawn rating
    flash("info", "Your answer was withdrawn (it stays in the history as superseded). "
                  "Answer the item again.")


def _open_guideline(study_id: int) -> None:
    st.session_state["show_guideline"] = study_id


# ----------------------------------------------------------------------------- drawing


@st.dialog("Guideline", width="large")
def _guideline_dialog(gv: GuidelineView) -> None:
    render_guideline(gv)


def finished_message(study_name: str) -> str:
    """The end-of-queue thanks; the study's name is quoted, so a name that ends in its own
    punctuation ("... go?") reads right."""
    return f"You have finished your queue in “{study_name}”. Thank you!"


def _end_of_queue(study: StudyChoice, user: SessionUser) -> None:
    with get_lab().read() as s:
        summary = reviewer_summary(s, study.id, user.id)
    st.success(finished_message(inert(study.name)))
    mean = f"{summary.mean_time_ms / 1000:.1f} s" if summary.mean_time_ms is not None else "-"
    c1, c2, c3 = st.columns(3)
    c1.metric("Rated", summary.rated)
    c2.metric("Skipped", summary.skipped)
    c3.metric("Mean time per rating", mean)
    st.button("Undo last rating", key="undo", shortcut="U", on_click=_on_undo, args=(study, user))


def _score_label(score: int, labels: dict[int, str]) -> str:
    return f"{score} · {labels[score]}" if score in labels else str(score)


# Keys for the flags (Streamlit shortcuts are digits, Enter, S, U, G; the viewer has Z, F, B, Esc).
FLAG_KEYS = {"identity_changed": "i", "invented_detail": "d", "text_changed": "t", "artifacts": "a",
             "still_blurry": "l"}
STREAMLIT_KEYS = {"enter": "submit", "s": "skip", "u": "undo", "g": "guideline"}
BLURRED_KEY, SCORE_ROW_KEY, ACTION_ROW_KEY = "show_blurred", "score_row", "action_row"


def item_panels(item: ItemView, show_blurred: bool) -> list[Panel]:
    """An item's viewer panels, as raters see them: the reference (or the blurred input where no
    sharp original exists), the blurred input when asked for, the restoration (also the
    participant page's, so items and traps look the same everywhere)."""
    if item.reference is None:
        return [Panel("blurred", "Blurred input (no sharp original exists)", item.blurred),
                Panel("restoration", "Restoration", item.restoration)]
    panels = [Panel("reference", "Reference", item.reference)]
    if show_blurred:
        panels.append(Panel("blurred", "Blurred input", item.blurred))
    return [*panels, Panel("restoration", "Restoration", item.restoration)]


def _keys(scores: list[int], item: ItemView) -> dict[str, str]:
    """Key -> the widget key it clicks, for the viewer's keyboard handler."""
    keys = {str(v % 10): f"score:{v}" for v in scores} | STREAMLIT_KEYS
    keys |= {k: _flag_key(flag) for flag, k in FLAG_KEYS.items()}
    if item.reference is not None:
        keys["b"] = BLURRED_KEY
    return keys


def rating_area(study: StudyChoice) -> None:
    """Everything that changes from item to item; a fragment unless REVIEW_UI_NO_FRAGMENT=1."""
    user = require(Action.RATE)
    if st.session_state.pop("account_check", False):
        st.rerun(scope="app")  # the app re-checks the account and asks for a new login
    show_flashes()
    cur = _load_current(study, user)
    if cur is None:
        _end_of_queue(study, user)
        return
    aid, gv, lab = cur.assignment_id, cur.guideline, get_lab()
    _load_widgets(aid)
    draft = _draft(aid)
    now = time.time()

    # Few elements on purpose: every element is a message and a React update per key press.
    # The clocks tick in the viewer (client side), so no rerun is needed to move them.
    started = st.session_state.get("session_started", now)
    item = cur.item
    with st.container(horizontal=True, vertical_alignment="center", gap="medium"):
        st.markdown(f"**Item {cur.position + 1} of {cur.total}** &ensp;·&ensp; "
                    f"Guideline: **{inert(gv.label)}**",
                    width="content")
        st.button("Guideline", key="guideline", shortcut="G", icon=":material/menu_book:",
                  on_click=_open_guideline, args=(study.id,))
        if item.reference is not None:
            st.toggle("Show blurred input (B)", key=BLURRED_KEY)
    if item.reference is None:
        st.caption("A real blurred photo with no sharp original: judge whether the restoration stays "
                   "faithful to what the blurred input shows.")

    labels = study.labels
    scores = list(range(study.scale_min, study.scale_max + 1))
    panels = item_panels(item, st.session_state.get(BLURRED_KEY, False))
    compare_viewer(lab.store, panels, item=str(aid), keys=_keys(scores, item),
                   streamlit_keys=[str(v % 10) for v in scores] + list(STREAMLIT_KEYS),
                   leave_on_enter=COMMENT_KEY, below=ACTION_ROW_KEY,
                   clock=(now - cur.shown_at, now - started))
    with st.container(horizontal=True, vertical_alignment="center", gap="small", key=SCORE_ROW_KEY):
        for score in scores:
            st.button(_score_label(score, labels), key=f"score:{score}", shortcut=str(score % 10),
                      type="primary" if draft["score"] == score else "secondary", width="stretch",
                      on_click=_on_pick, args=(study.id, aid, score))
        if draft["score"] is None:
            st.markdown(f"**Your score: —** &nbsp; *press {scores[0]}–{scores[-1]}*", width="content")
        else:
            st.markdown(f"**Your score: {_score_label(draft['score'], labels)}** &nbsp; *Enter submits*",
                        width="content")

    with st.container(horizontal=True, gap="large"):
        for flag in FLAGS:
            st.checkbox(f"{FLAG_LABELS[flag]} ({FLAG_KEYS[flag].upper()})", key=_flag_key(flag),
                        on_change=_on_draft_change, args=(study.id, aid))
    # Comment, submit and the rest share one row, so at 1366x768 every control fits under the
    # images (the viewer sizes them to leave this row in view).
    with st.container(horizontal=True, vertical_alignment="bottom", gap="small", key=ACTION_ROW_KEY):
        st.text_input("Comment (optional)", key=COMMENT_KEY, max_chars=ratings.MAX_COMMENT,
                      on_change=_on_draft_change, args=(study.id, aid), label_visibility="collapsed",
                      placeholder="Comment (optional): what changed? Enter leaves the box; Enter again "
                                  "submits.", width="stretch")
        st.button("Submit", key="submit", shortcut="Enter", type="primary", width=140,
                  icon=":material/check:", on_click=_on_submit, args=(study, user, aid))
        st.selectbox("Skip reason", SKIP_REASONS, key=SKIP_KEY, placeholder="Why skip?",
                     label_visibility="collapsed", width=200)
        st.button("Skip", key="skip", shortcut="S", on_click=_on_skip, args=(study, user, aid))
        st.button("Undo last", key="undo", shortcut="U", icon=":material/undo:",
                  on_click=_on_undo, args=(study, user))

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
    user = require(Action.RATE)
    with get_lab().read() as s:
        studies = ratable_studies(s, user.id)
    if not studies:
        st.info("No open study has items for you to rate yet. An admin creates studies, adds items "
                "and chooses who may join.")
        return
    study = _choose_study(studies)
    if NO_FRAGMENT:
        rating_area(study)
    else:
        _rating_fragment(study)
    _history_and_feedback(study, user)


def _history_and_feedback(study: StudyChoice, user: SessionUser) -> None:
    """The reviewer's recent answers (each can be reopened unless QA judged it) and, when the study
    shows it, QA's feedback on their ratings. Drawn with the page, not on every key press."""
    with get_lab().read() as s:
        answers = recent_answers(s, study.id, user.id)
        feedback = feedback_for(s, study_by_id(s, study.id), user.id)
    if feedback:
        with st.expander(f"QA feedback on your ratings ({len(feedback)})", icon=":material/fact_check:"):
            for row in feedback:
                line = f"Item {row['item_id']}: you gave **{row['your_score']}** — QA: **{row['verdict']}**"
                if row["corrected_score"] is not None:
                    line += f", corrected to **{row['corrected_score']}**"
                    if row["corrected_flags"]:
                        line += f" ({', '.join(FLAG_LABELS[f] for f in row['corrected_flags'])})"
                st.markdown(line + (f". {inert(row['reason'])}" if row["reason"] else ""))  # QA's words
    if not answers:
        return
    with st.expander("Your recent answers", icon=":material/history:"):
        for answer in answers:
            what = "skipped" if answer.skipped else f"score **{answer.score}**"
            if answer.flags:
                what += f" ({', '.join(FLAG_LABELS.get(f, f) for f in answer.flags)})"
            if answer.qa_verdict:
                what += f" · QA: {answer.qa_verdict}"
            answer_row = st.container(horizontal=True, vertical_alignment="center")
            answer_row.markdown(f"Item {answer.item_id}: {what}", width="content")
            answer_row.button("Reopen", key=f"reopen:{answer.assignment_id}", disabled=answer.judged,
                              help="QA has judged this rating; it stays as it is." if answer.judged else
                              "Change this answer (your new answer supersedes it).",
                              on_click=_on_undo, args=(study, user, answer.assignment_id))
