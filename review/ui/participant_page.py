"""The participant page: a crowd participant's whole study on one page, one stage at a time.

A participant arrives by a pool's link (`/_lab/join`, review/ui/server.py), which sets the
session cookie and sends them here; the app signs them in like a reviewer and shows this page
only, full width, with no sidebar, menu or "Log out" (review.policy: Action.PARTICIPATE is a
participant's one action; their platform's link is how they come back). The stages and
their rules are review.labeling.crowd_flow's; this page shows where the participant is and sends
their answers:

- consent: the study's consent text as plain text, a required checkbox, Continue;
- viewing check: the page's script measures the window (width, pixel ratio, zoom) and posts it
  to `/_lab/viewing` (kept by review.labeling.viewing_report); digits drawn a few grey levels off
  a mid-grey background are typed in; Check judges both, lists what to change, allows a retry, or
  ends with the screened-out code after the pool's attempts;
- training: each example as the Rate page shows an item, a score, then the guideline's expected
  answer and reason, and Next;
- qualification: the same without feedback;
- live items: the study's items (rated through review.labeling.ratings like a reviewer's) with
  trapping questions mixed in, shown exactly like items;
- completed or screened out: the pool's code, large and copyable, and the link back to the
  platform if the pool has one; coming back shows the same code.

Blindness: only the images are shown (never file names, methods or others' ratings); a trap is
drawn like any item. All user text (the consent text, codes, reasons) is shown as plain text or
through `inert`.
"""

from __future__ import annotations

import io
import time
import uuid
from dataclasses import dataclass
from typing import Any

import streamlit as st
from PIL import Image, ImageDraw, ImageFont

from review.enums import ParticipantStage
from review.labeling import crowd_flow, ratings
from review.labeling.assignment import Lease
from review.labeling.participants import participant_of
from review.labeling.pools import PoolSettings, get_pool, pool_settings
from review.labeling.ratings import StaleAssignment, Submission
from review.labeling.study import study_by_id
from review.labeling.viewing_report import reported
from review.labeling.views import GuidelineView, ItemView, guideline_for, item_view, scale_labels
from review.policy import Action
from review.ui.common import SessionUser, flash, get_lab, require, run_action, show_flashes
from review.ui.display import inert
from review.ui.guideline import render_guideline
from review.ui.rate import item_panels
from review.ui.server import VIEWING_PATH
from review.ui.viewer import compare_viewer

STEP_KEY, FEEDBACK_KEY, VERDICT_KEY, SCORE_KEY = "p_step", "p_feedback", "p_verdict", "p_score"
ANSWER_ROW_KEY, SUBMIT_KEY, CONTRAST_KEY, CONSENT_KEY = "p_answer_row", "p_submit", "p_contrast", "p_consent"
BLURRED_KEY, NEXT_KEY, NEXT_ROW_KEY = "p_show_blurred", "p_next", "p_next_row"
MEASURE_WAIT_S = 3.0  # how long Check waits for the window's measure the page's script posts
CONTRAST_SQUARE, CONTRAST_BACKGROUND = 120, 128


@dataclass(frozen=True)
class Where:
    """Where the signed-in participant is, read once per run."""

    participant_id: int
    stage: ParticipantStage
    study_id: int
    scale: tuple[int, int]
    labels: dict[int, str]
    flow: PoolSettings
    done: int  # live items finished
    end_code: str
    return_url: str


def where_now(s: Any, user_id: int) -> Where | None:
    """The participant behind the account, or None when the account is no participant."""
    p = participant_of(s, user_id)
    if p is None:
        return None
    pool = get_pool(s, p.pool_id)
    study = study_by_id(s, pool.study_id)
    return Where(p.id, ParticipantStage(p.stage), study.id, (study.scale_min, study.scale_max),
                 scale_labels(study), pool_settings(pool), crowd_flow.live_done(s, p), p.end_code or "",
                 pool.return_url or "")


@dataclass(frozen=True)
class Step:
    """What is on screen in the live stage: an item's lease or a trap (shown alike)."""

    view: ItemView
    token: str  # opaque to the browser: no item, assignment or trap id
    shown_at: float
    assignment_id: int | None = None  # an item
    probe_id: int | None = None  # a trap


# ----------------------------------------------------------------------------- the page


def page() -> None:
    """The participant page (crowd participants only)."""
    render(get_lab(), require(Action.PARTICIPATE))


def render(lab: Any, user: SessionUser) -> None:
    if st.session_state.pop("account_check", False):
        st.rerun(scope="app")  # the app re-checks the session and asks for the link again
    with lab.read() as s:
        here = where_now(s, user.id)
    if here is None:
        st.error("This account does not take part in a study. Open the study link from your platform.")
        return
    show_flashes()
    if FEEDBACK_KEY in st.session_state:  # a training answer's feedback comes before anything next
        _feedback(lab, here)
        return
    {ParticipantStage.CONSENT: _consent, ParticipantStage.VIEWING: _viewing,
     ParticipantStage.TRAINING: _probe, ParticipantStage.QUALIFICATION: _probe,
     ParticipantStage.LIVE: _live, ParticipantStage.COMPLETED: _end,
     ParticipantStage.SCREENED_OUT: _end}[here.stage](lab, user, here)


# ----------------------------------------------------------------------------- consent


def _consent(lab: Any, user: SessionUser, here: Where) -> None:
    with lab.read() as s:
        text = crowd_flow.consent_text(s, here.participant_id)
    st.header("Before you start")
    with st.container(border=True):
        st.text(text or "The study's organisers have not written a consent text; ask them before you "
                         "take part.")  # plain text: no Markdown, no HTML
    st.checkbox("I have read the text above and agree to take part.", key=CONSENT_KEY)
    st.button("Continue", key="p_continue", type="primary", on_click=_on_consent, args=(here.participant_id,))


def _on_consent(participant_id: int) -> None:
    if not st.session_state.get(CONSENT_KEY):
        flash("warning", "Tick the box to agree first; without your agreement the study cannot start.")
        return
    run_action(get_lab(), lambda s: crowd_flow.give_consent(s, participant_id), callback=True)


# ----------------------------------------------------------------------------- viewing check

#: Measures the window in the page itself (not an iframe: the window's own width) and posts it to
#: VIEWING_PATH with the session cookie; again after a resize, so a retry sees the new window.
MEASURE_SCRIPT = """
<div data-testid="p-window" style="color: #555; font-size: 0.9rem">Measuring your window…</div>
<script>
(() => {
  const send = () => {
    const m = {inner_width: window.innerWidth, pixel_ratio: window.devicePixelRatio,
               viewport_scale: window.visualViewport ? window.visualViewport.scale : null};
    fetch(%(path)s, {method: "POST", headers: {"Content-Type": "application/json"},
                     body: JSON.stringify(m), credentials: "same-origin"});
    document.querySelectorAll("[data-testid='p-window']").forEach(
      el => { el.textContent = `Your browser window is ${m.inner_width} px wide.`; });
  };
  send();
  if (!window.__participantMeasure) {
    window.__participantMeasure = true;
    let timer = null;
    window.addEventListener("resize", () => { clearTimeout(timer); timer = setTimeout(send, 250); });
  }
})();
</script>
"""


@st.cache_data(max_entries=256, show_spinner=False)
def contrast_png(digits: tuple[int, ...], steps: tuple[int, ...]) -> bytes:
    """Grey squares side by side, each with one digit drawn `step` grey levels above the mid-grey
    background (P.910's brightness matrix in spirit): a PNG, so the levels arrive exactly."""
    side = CONTRAST_SQUARE
    img = Image.new("L", (side * len(digits) + 12 * (len(digits) - 1), side), 255)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=int(side * 0.7))
    for k, (digit, step) in enumerate(zip(digits, steps, strict=True)):
        left = k * (side + 12)
        draw.rectangle((left, 0, left + side - 1, side - 1), fill=CONTRAST_BACKGROUND)
        text = str(digit)
        box = draw.textbbox((0, 0), text, font=font)
        x = left + (side - (box[2] - box[0])) / 2 - box[0]
        y = (side - (box[3] - box[1])) / 2 - box[1]
        draw.text((x, y), text, fill=CONTRAST_BACKGROUND + step, font=font)
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def _viewing(lab: Any, user: SessionUser, here: Where) -> None:
    s = here.flow
    st.header("Check your screen")
    st.markdown("This study shows images at their own size and asks about fine detail, so your screen "
                "must show them as they are.")
    verdict: crowd_flow.ViewingVerdict | None = st.session_state.get(VERDICT_KEY)
    if verdict is not None and not verdict.passed:
        st.warning("The check did not pass. Change this, then press Check again:\n\n"
                   + "\n".join(f"- {inert(p)}" for p in verdict.problems)
                   + f"\n\nAttempts left: {verdict.attempts_left}.")
    if s.viewing_check:
        st.markdown(f"**Your window:** at least {s.min_width} px wide (maximise the browser window), and the "
                    "browser's zoom at 100 % (Ctrl+0, or Cmd+0 on a Mac).")
        st.html(MEASURE_SCRIPT % {"path": repr(VIEWING_PATH)}, unsafe_allow_javascript=True)
    if s.contrast_check:
        digits = crowd_flow.contrast_digits(here.participant_id)
        st.markdown("**Grey levels:** each square below holds one digit, some very faint. Type the digits "
                    "you can read, from left to right.")
        st.image(contrast_png(digits, crowd_flow.CONTRAST_STEPS), output_format="PNG")
        st.text_input("Digits you see, left to right", key=CONTRAST_KEY, max_chars=12, width=320)
    st.button("Check", key="p_check", type="primary", on_click=_on_check, args=(here,))


def _window_report(participant_id: int, wait: bool) -> Any:
    """The browser's newest measure; with `wait`, give the page's script a moment to post it."""
    lab, until = get_lab(), time.monotonic() + (MEASURE_WAIT_S if wait else 0)
    while True:
        with lab.read() as s:
            found = reported(s, participant_id)
        if found is not None or time.monotonic() >= until:
            return found
        time.sleep(0.2)


def _on_check(here: Where) -> None:
    found = _window_report(here.participant_id, here.flow.viewing_check)
    measures = crowd_flow.ViewingMeasures(
        found.inner_width if found else None, found.pixel_ratio if found else None,
        found.viewport_scale if found else None, str(st.session_state.get(CONTRAST_KEY) or ""))
    outcome = run_action(get_lab(), lambda s: crowd_flow.check_viewing(s, here.participant_id, measures),
                         callback=True)
    if outcome.value is not None:
        st.session_state[VERDICT_KEY] = outcome.value
        st.session_state[CONTRAST_KEY] = ""


# ----------------------------------------------------------------------------- the item and its answer


def _score_label(score: int, labels: dict[int, str]) -> str:
    return f"{score} · {labels[score]}" if score in labels else str(score)


def _on_pick(token: str, score: int) -> None:
    st.session_state[SCORE_KEY] = (token, score)


def _picked(token: str) -> int | None:
    found = st.session_state.get(SCORE_KEY)
    return found[1] if found and found[0] == token else None


@st.dialog("Guideline", width="large")
def _guideline_dialog(gv: GuidelineView) -> None:
    render_guideline(gv)


def _item(lab: Any, user: SessionUser, here: Where, view: ItemView, token: str, heading: str,
          on_submit: Any, args: tuple) -> None:
    """An item as the Rate page shows it: the images in the viewer, the score buttons, Submit."""
    with st.container(horizontal=True, vertical_alignment="center", gap="medium"):
        st.markdown(heading, width="content")
        if st.button("Guideline", key="p_guideline", icon=":material/menu_book:"):
            with lab.read() as s:
                _guideline_dialog(guideline_for(s, here.study_id, user.id))
        if view.reference is not None:
            st.toggle("Show blurred input (B)", key=BLURRED_KEY)
    if view.reference is None:
        st.caption("A real blurred photo with no sharp original: judge whether the restoration stays "
                   "faithful to what the blurred input shows.")
    scores = list(range(here.scale[0], here.scale[1] + 1))
    keys = {str(v % 10): f"p_score:{v}" for v in scores} | {"enter": SUBMIT_KEY}
    if view.reference is not None:
        keys["b"] = BLURRED_KEY
    panels = item_panels(view, st.session_state.get(BLURRED_KEY, False))
    compare_viewer(lab.store, panels, item=token, keys=keys,
                   streamlit_keys=[str(v % 10) for v in scores] + ["enter"], leave_on_enter="",
                   below=ANSWER_ROW_KEY)
    picked = _picked(token)
    with st.container(horizontal=True, vertical_alignment="center", gap="small", key=ANSWER_ROW_KEY):
        for v in scores:
            st.button(_score_label(v, here.labels), key=f"p_score:{v}", shortcut=str(v % 10), width="stretch",
                      type="primary" if picked == v else "secondary", on_click=_on_pick, args=(token, v))
        st.button("Submit", key=SUBMIT_KEY, shortcut="Enter", type="primary", width=140,
                  icon=":material/check:", on_click=on_submit, args=args)


def _seconds(shown_at: float) -> float:
    return max(0.0, time.time() - shown_at)


def _shown_at(token: str) -> float:
    return st.session_state.setdefault("p_shown_at", {}).setdefault(token, time.time())


def _need_score(token: str) -> int | None:
    score = _picked(token)
    if score is None:
        flash("warning", "Pick a score first: press a number key or click one of the scores.")
    return score


# ----------------------------------------------------------------------------- training and qualification


def _probe(lab: Any, user: SessionUser, here: Where) -> None:
    training = here.stage == ParticipantStage.TRAINING
    with lab.read() as s:
        item_id = crowd_flow.next_probe_item(s, here.participant_id)
        if item_id is None:
            st.info("Nothing to show here right now; reload the page.")
            return
        p = participant_of(s, user.id)
        assert p is not None  # where_now found it in this run
        items = (crowd_flow.training_items if training else crowd_flow.qualification_items)(s, p)
        view = item_view(s, item_id)
    token = f"{here.stage}:{uuid.uuid5(uuid.NAMESPACE_OID, f'{here.participant_id}/{item_id}').hex[:12]}"
    shown = _shown_at(token)
    k = items.index(item_id) + 1 if item_id in items else 1
    if training:
        heading = (f"**Training: example {k} of {len(items)}** · after each answer you see the answer the "
                   "guideline expects")
    else:
        heading = f"**Qualification: item {k} of {len(items)}** · answer as the guideline asks"
    _item(lab, user, here, view, token, heading, _on_probe_answer,
          (here, item_id, view, token, shown, training))


def _on_probe_answer(here: Where, item_id: int, view: ItemView, token: str, shown: float,
                     training: bool) -> None:
    score = _need_score(token)
    if score is None:
        return
    pid, seconds = here.participant_id, _seconds(shown)
    if training:
        outcome = run_action(get_lab(), lambda s: crowd_flow.answer_training(s, pid, item_id, score, seconds),
                             callback=True)
        if outcome.value is not None:
            st.session_state[FEEDBACK_KEY] = (score, outcome.value, view, token)
    else:
        run_action(get_lab(), lambda s: crowd_flow.answer_qualification(s, pid, item_id, score, seconds),
                   callback=True)
    st.session_state.pop(SCORE_KEY, None)


def _feedback(lab: Any, here: Where) -> None:
    """The guideline's answer to the training example just answered, with its images again."""
    score, fb, view, token = st.session_state[FEEDBACK_KEY]

    def named(v: int) -> str:
        return _score_label(v, here.labels)

    expected = named(fb.expected_min) if fb.expected_min == fb.expected_max else \
        f"{named(fb.expected_min)} to {named(fb.expected_max)}"
    verdict = st.success if fb.right else st.warning
    verdict(f"**Training: the guideline's answer.** You answered **{named(score)}**; the guideline expects "
            f"**{expected}**." + (" Right." if fb.right else " Compare the images again with this in mind."))
    if fb.reason:
        st.text(f"Why: {fb.reason}")  # the study's own words, as plain text
    panels = item_panels(view, st.session_state.get(BLURRED_KEY, False))
    compare_viewer(lab.store, panels, item=token, keys={"enter": NEXT_KEY}, streamlit_keys=["enter"],
                   leave_on_enter="", below=NEXT_ROW_KEY)
    with st.container(horizontal=True, key=NEXT_ROW_KEY):
        st.button("Next", key=NEXT_KEY, shortcut="Enter", type="primary", icon=":material/arrow_forward:",
                  on_click=lambda: st.session_state.pop(FEEDBACK_KEY, None))


# ----------------------------------------------------------------------------- live items


def _claim(s: Any, pid: int, store: Any) -> Step | crowd_flow.Done:
    found = crowd_flow.next_live(s, pid, store)
    if isinstance(found, crowd_flow.Done):
        return found
    if isinstance(found, Lease):
        return Step(found.view or item_view(s, found.item_id), uuid.uuid4().hex, time.time(),
                    assignment_id=found.assignment_id)
    return Step(found.view, uuid.uuid4().hex, time.time(), probe_id=found.probe_id)


def _live(lab: Any, user: SessionUser, here: Where) -> None:
    step: Step | None = st.session_state.get(STEP_KEY)
    if step is None:
        outcome = run_action(lab, lambda s: _claim(s, here.participant_id, lab.store))
        if outcome.value is None:
            st.button("Load the next item", key="p_claim_again")
            return
        if isinstance(outcome.value, crowd_flow.Done):
            st.rerun()
        step = outcome.value
        st.session_state[STEP_KEY] = step
    total = here.flow.items_per_session
    st.progress(min(here.done / total, 1.0), text=f"{here.done} of {total} items done")
    _item(lab, user, here, step.view, step.token, "**Rate how faithful the restoration is**",
          _on_live_answer, (here, user, step))


def _on_live_answer(here: Where, user: SessionUser, step: Step) -> None:
    current: Step | None = st.session_state.get(STEP_KEY)
    if current is None or current.token != step.token:
        return  # a double click: the answer went already
    score = _need_score(step.token)
    if score is None:
        return
    seconds = _seconds(step.shown_at)
    if step.assignment_id is not None:
        aid = step.assignment_id
        sub = Submission(score=score, time_taken_ms=int(seconds * 1000), client_token=step.token)
        outcome = run_action(get_lab(), lambda s: ratings.submit(s, aid, user.id, sub, signed=user.signed),
                             callback=True, checks_session=True)
        gone = outcome.refusal is None or isinstance(outcome.refusal, StaleAssignment)
    else:
        probe = step.probe_id
        assert probe is not None
        pid = here.participant_id
        answered = run_action(get_lab(), lambda s: crowd_flow.answer_trap(s, pid, probe, score, seconds),
                              callback=True)
        gone = answered.refusal is None or isinstance(answered.refusal, crowd_flow.FlowError)
    if gone:
        st.session_state.pop(STEP_KEY, None)
        st.session_state.pop(SCORE_KEY, None)


# ----------------------------------------------------------------------------- the end


def _end(lab: Any, user: SessionUser, here: Where) -> None:
    completed = here.stage == ParticipantStage.COMPLETED
    if completed:
        st.header("Thank you: you have finished")
        st.markdown("Enter this completion code on your platform to be paid:" if here.end_code else
                    "Your answers are saved.")
    else:
        st.header("Thank you for your time")
        st.markdown("This study cannot continue with you: it needs viewing conditions or answers that "
                    "this session did not reach. Nothing more is asked of you."
                    + (" Enter this code on your platform:" if here.end_code else ""))
    if here.end_code:
        st.title(inert(here.end_code), anchor=False)
        st.code(here.end_code, language=None)  # its copy button copies the code as it is
    if here.return_url:
        st.link_button("Back to the platform", here.return_url, type="primary" if completed else "secondary")

