"""The Crowd page (admins): a study's rater pools and their recruitment links, each pool's live
state, training examples and the consent text, then data cleansing (thresholds, decisions,
overrides, blocks, reopening) and the files that go back to the platform.

The page only lays things out: pools are review.labeling.pools, the live state
review.labeling.crowd_flow, training examples review.labeling.qa, cleansing
review.analysis.crowd_cleansing and the files review.analysis.crowd_exports. User text (pool
names, reasons, consent text) is shown through `inert` wherever Markdown would render it.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from review.accounts.links import lab_secret
from review.analysis import crowd_cleansing as cc
from review.analysis import crowd_exports as ce
from review.analysis.cleansing import CleansingError, CleansingRules
from review.database import Lab
from review.enums import CleansingOutcome, PoolKind, PoolStatus
from review.labeling import qa
from review.labeling.crowd_flow import live_state
from review.labeling.pools import (
    CUSTOM,
    PLATFORMS,
    PoolSettings,
    PoolSpec,
    add_pool,
    edit_pool,
    participant_count,
    places_left,
    pool_settings,
    pools_of,
    set_open,
    void_links,
)
from review.labeling.settings import StudySettings, update_settings
from review.labeling.study import study_by_id
from review.policy import Action
from review.ui.common import SessionUser, pick_study, refuse_unless, run_action, show_flashes
from review.ui.display import inert

KEY = "crowd_"
DEFAULT_BASE = "http://localhost:8501"
OUTCOME_WORDS = {CleansingOutcome.ACCEPT_USE.value: "accept and use",
                 CleansingOutcome.ACCEPT_NO_USE.value: "accept, do not use",
                 CleansingOutcome.REJECT.value: "reject"}
PLATFORM_CHOICES = (*PLATFORMS, CUSTOM)
SECTIONS = ("Pools and links", "Training and consent", "Data cleansing")


def _base_url() -> str:
    """The address this page was opened at (participants usually reach the lab the same way)."""
    try:
        host = st.context.headers.get("Host") or ""
    except Exception:  # noqa: BLE001 - no request context (a script run without a browser)
        host = ""
    if not host:
        return DEFAULT_BASE
    local = host.startswith(("localhost", "127.0.0.1"))
    return f"{'http' if local else 'https'}://{host}"


# --------------------------------------------------------------------------------------------
# Pools
# --------------------------------------------------------------------------------------------


def _pool_form(key: str, spec: PoolSpec) -> PoolSpec | None:
    """The pool's fields in a form; the PoolSpec when submitted (checked by the domain)."""
    f = spec.flow
    with st.form(key):
        c1, c2, c3 = st.columns(3)
        name = c1.text_input("Name", value=spec.name, max_chars=100, key=f"{key}_name")
        kind = c2.selectbox("Kind", list(PoolKind), index=list(PoolKind).index(PoolKind(spec.kind)),
                            key=f"{key}_kind")
        platform = c3.selectbox("Platform (its participant parameters)", PLATFORM_CHOICES,
                                index=PLATFORM_CHOICES.index(spec.platform), key=f"{key}_platform")
        c1, c2, c3 = st.columns(3)
        completion = c1.text_input("Completion code", value=spec.completion_code, max_chars=64,
                                   key=f"{key}_completion")
        screened = c2.text_input("Screened-out code", value=spec.screened_out_code, max_chars=64,
                                 key=f"{key}_screened")
        no_places = c3.text_input("No-places code", value=spec.no_places_code, max_chars=64,
                                  key=f"{key}_noplaces")
        c1, c2, c3, c4 = st.columns(4)
        per_item = c1.number_input("Pay per item", min_value=0.0, value=float(spec.pay_per_item), step=0.01,
                                   format="%.3f", key=f"{key}_per_item")
        per_session = c2.number_input("Pay per session", min_value=0.0, value=float(spec.pay_per_session),
                                      step=0.1, format="%.2f", key=f"{key}_per_session")
        currency = c3.text_input("Currency", value=spec.currency, max_chars=8, key=f"{key}_currency")
        quota = c4.number_input("Quota (0 = no limit)", min_value=0, value=spec.quota or 0, step=1,
                                key=f"{key}_quota")
        return_url = st.text_input("Return link to the platform (https://, optional)", value=spec.return_url,
                                   max_chars=500, key=f"{key}_return")
        c1, c2, c3, c4 = st.columns(4)
        items = c1.number_input("Items per session", 1, 500, f.items_per_session, key=f"{key}_items")
        viewing = c2.checkbox("Viewing-condition check", value=f.viewing_check, key=f"{key}_viewing")
        min_width = c3.number_input("Min window width (px)", 320, 8000, f.min_width, key=f"{key}_width")
        attempts = c4.number_input("Viewing attempts", 1, 20, f.max_viewing_attempts, key=f"{key}_attempts")
        c1, c2, c3, c4, c5 = st.columns(5)
        training = c1.number_input("Training items", 0, 50, f.training_items, key=f"{key}_training")
        qualification = c2.number_input("Qualification items", 0, 50, f.qualification_items,
                                        key=f"{key}_qualification")
        pass_share = c3.number_input("Pass share", 0.0, 1.0, float(f.pass_share), step=0.05,
                                     key=f"{key}_pass_share")
        tolerance = c4.number_input("Pass tolerance (steps)", 0, 9, f.pass_tolerance, key=f"{key}_tolerance")
        trap_rate = c5.number_input("Trap rate", 0.0, 0.5, float(f.trap_rate), step=0.05, key=f"{key}_traps")
        c1, c2 = st.columns(2)
        id_param = c1.text_input("Custom platform: participant id parameter", value=f.id_param, max_chars=40,
                                 key=f"{key}_id_param")
        extra = c2.text_input("Custom platform: other parameters to keep (comma-separated)",
                              value=", ".join(f.extra_params), key=f"{key}_extra")
        if not st.form_submit_button("Save pool", type="primary"):
            return None
    flow = PoolSettings(items_per_session=int(items), viewing_check=viewing, min_width=int(min_width),
                        contrast_check=viewing, max_viewing_attempts=int(attempts),
                        training_items=int(training), qualification_items=int(qualification),
                        pass_share=float(pass_share), pass_tolerance=int(tolerance),
                        trap_rate=float(trap_rate),
                        max_joins_per_hour=f.max_joins_per_hour, id_param=id_param.strip(),
                        extra_params=tuple(p.strip() for p in extra.split(",") if p.strip()))
    return PoolSpec(name=name, kind=str(kind), platform=str(platform), quota=int(quota) or None,
                    pay_per_item=float(per_item), pay_per_session=float(per_session), currency=currency,
                    completion_code=completion, screened_out_code=screened, no_places_code=no_places,
                    return_url=return_url, flow=flow)


def _spec_of(pool: Any) -> PoolSpec:
    return PoolSpec(name=pool.name, kind=pool.kind, platform=pool.platform, quota=pool.quota,
                    pay_per_item=pool.pay_per_item, pay_per_session=pool.pay_per_session,
                    currency=pool.currency, completion_code=pool.completion_code,
                    screened_out_code=pool.screened_out_code, no_places_code=pool.no_places_code,
                    return_url=pool.return_url, flow=pool_settings(pool))


def _live_table(lab: Lab, pool_id: int) -> None:
    with lab.read() as s:
        states = live_state(s, pool_id)
    if not states:
        st.caption("Nobody has joined this pool yet.")
        return
    st.dataframe(pd.DataFrame([{
        "participant": p.participant_id, "stage": p.stage, "items done": p.items_done,
        "traps passed": f"{p.traps_right}/{p.traps_answered}",
        "gold accuracy": (100 * p.gold_right / p.gold_rated) if p.gold_rated else None,
        "median s/item": p.median_seconds, "qualification": f"{p.qualification[0]}/{p.qualification[1]}",
        "joined (UTC)": p.joined_at} for p in states]), hide_index=True, width="stretch",
        column_config={"gold accuracy": st.column_config.NumberColumn(format="%.0f %%"),
                       "median s/item": st.column_config.NumberColumn(format="%.1f")})


def _pool_panel(lab: Lab, user: SessionUser, pool: Any, base_url: str, secret: bytes) -> None:
    with lab.read() as s:
        count, left = participant_count(s, pool.id), places_left(s, pool)
        link = ce.pool_link(s, secret, pool.id, base_url, today=True) if base_url else ""
    is_open = pool.status == PoolStatus.OPEN
    label = (f"{inert(pool.name)} · {pool.kind} · {pool.platform} · {pool.status} · {count} participants"
             + (f", {left} places left" if left is not None else ""))
    with st.expander(label, expanded=True):
        if link:
            st.markdown("**Recruitment link** (copy with the button at its right)")
            st.code(link, language=None, wrap_lines=True)
            st.caption(ce.link_note(pool))
        c1, c2, c3 = st.columns(3)
        if c1.button("Close to new participants" if is_open else "Reopen", key=f"{KEY}open_{pool.id}"):
            run_action(lab, lambda s: set_open(s, pool.id, not is_open, actor_id=user.id),
                       "Pool reopened." if not is_open else "Pool closed to new participants.")
        if c2.button("Void links", key=f"{KEY}void_{pool.id}",
                     help="Every link given out so far stops admitting anyone; a new one is shown."):
            run_action(lab, lambda s: void_links(s, pool.id, actor_id=user.id),
                       "Every earlier link of this pool is void; give out the new one.")
        editing = c3.toggle("Edit this pool", key=f"{KEY}edit_{pool.id}")
        if editing:
            spec = _pool_form(f"{KEY}form_{pool.id}", _spec_of(pool))
            if spec is not None:
                run_action(lab, lambda s: edit_pool(s, pool.id, spec, actor_id=user.id), "Pool saved.")
        st.markdown("**Live state**")
        _live_table(lab, pool.id)


def _pools(lab: Lab, user: SessionUser, study_id: int) -> None:
    base_url = st.text_input("This lab's address as participants reach it", value=_base_url(),
                             key=f"{KEY}base_url").strip()
    with st.expander("New pool"):
        spec = _pool_form(f"{KEY}new", PoolSpec(name="", completion_code=""))
        if spec is not None:
            run_action(lab, lambda s: add_pool(s, study_id, spec, actor_id=user.id),
                       lambda p: f"Pool {inert(p.name)} added; its link is below.")
    with lab.read() as s:
        pools = pools_of(s, study_id)
    if not pools:
        st.info("This study has no pools yet: its reviewers are its in-house team. Add a pool to "
                "recruit by link.")
        return
    secret = lab_secret(lab.settings)
    for pool in pools:
        try:
            _pool_panel(lab, user, pool, base_url, secret)
        except ce.ExportError as exc:  # a mistyped lab address: say so once, show the rest
            st.warning(inert(str(exc)))
            _pool_panel(lab, user, pool, "", secret)


# --------------------------------------------------------------------------------------------
# Training examples and consent
# --------------------------------------------------------------------------------------------


def _training_and_consent(lab: Lab, user: SessionUser, study_id: int) -> None:
    with lab.read() as s:
        study = study_by_id(s, study_id)
        lo, hi, consent = study.scale_min, study.scale_max, StudySettings.of(study).consent_text
        examples = [(e.id, e.expected_min, e.expected_max, e.training_reason)
                    for e in qa.training_examples(s, study_id)]
    st.markdown("**Training examples** (shown before live items, with the expected answer and the reason)")
    if examples:
        st.dataframe(pd.DataFrame(examples, columns=["item", "expected min", "expected max", "reason"]),
                     hide_index=True, width="stretch")
    else:
        st.caption("No training examples yet: participants go straight to qualification.")
    with st.form(f"{KEY}training"):
        c1, c2, c3 = st.columns(3)
        item_id = c1.number_input("Item id", min_value=1, step=1, key=f"{KEY}train_item")
        emin = c2.number_input("Expected min", lo, hi, lo, key=f"{KEY}train_min")
        emax = c3.number_input("Expected max", lo, hi, hi, key=f"{KEY}train_max")
        reason = st.text_area("The guideline's reason (shown after the answer)", max_chars=1000,
                              key=f"{KEY}train_reason")
        if st.form_submit_button("Mark as training example"):
            run_action(lab, lambda s: qa.mark_training(s, int(item_id), int(emin), int(emax), reason,
                                                       actor_id=user.id),
                       f"Item {int(item_id)} is a training example.")
    if examples:
        c1, c2 = st.columns([1, 2])
        back = c1.selectbox("Training example", [e[0] for e in examples], key=f"{KEY}untrain_item")
        if c2.button("Make it a live item again", key=f"{KEY}untrain"):
            run_action(lab, lambda s: qa.unmark_training(s, int(back), actor_id=user.id),
                       f"Item {int(back)} is a live item again.")
    st.markdown("**Consent text** (participants must accept it before anything else)")
    with st.form(f"{KEY}consent"):
        text = st.text_area("Consent text", value=consent, height=160, key=f"{KEY}consent_text")
        if st.form_submit_button("Save consent text"):
            run_action(lab, lambda s: update_settings(study_by_id(s, study_id), consent_text=text),
                       "Consent text saved.")


# --------------------------------------------------------------------------------------------
# Data cleansing
# --------------------------------------------------------------------------------------------


def _threshold(col: Any, label: str, default: float | None, key: str, *, whole: bool = False,
               step: float = 0.05, help_text: str | None = None) -> float | None:
    """A criterion's threshold with an on/off switch (off = None)."""
    on = col.checkbox(label, value=default is not None, key=f"{key}_on", help=help_text)
    base = default if default is not None else 0.0
    # not disabled when off: inside a form the switch takes effect only on submit
    value = col.number_input(f"{label}: threshold", value=int(base) if whole else float(base),
                             step=1 if whole else step, key=key, label_visibility="collapsed")
    return (int(value) if whole else float(value)) if on else None


def _rules_form() -> CleansingRules | None:
    d = CleansingRules()
    with st.form(f"{KEY}rules"):
        st.caption("Defaults follow the P.808 / P.910 crowd toolkits (docs/crowd.md explains each); "
                   "untick a criterion to turn it off.")
        c1, c2, c3, c4 = st.columns(4)
        traps = _threshold(c1, "Trap failures allowed", d.max_trap_failures, f"{KEY}r_traps", whole=True)
        gold = _threshold(c2, "Gold accuracy at least", d.gold_min, f"{KEY}r_gold")
        variance = _threshold(c3, "Score variance at least", d.min_variance, f"{KEY}r_variance")
        seconds = _threshold(c4, "Median seconds at least", d.min_median_seconds, f"{KEY}r_seconds", step=0.5)
        c1, c2, c3, c4 = st.columns(4)
        outlier = _threshold(c1, "Outlier |z| at", d.outlier_z, f"{KEY}r_outlier", step=0.1)
        ds = _threshold(c2, "Dawid-Skene accuracy at least", d.ds_min, f"{KEY}r_ds")
        tolerance = c3.number_input("Gold tolerance (steps)", 0, 9, d.gold_tolerance, key=f"{KEY}r_tolerance")
        bt500 = c4.checkbox("BT.500 screening", value=d.bt500, key=f"{KEY}r_bt500")
        c1, c2, _c3, _c4 = st.columns(4)
        forgive = _threshold(c1, "Forgive one slip at r at least", d.forgive_r, f"{KEY}r_forgive",
                             help_text="One trap or gold answer too many is forgiven when the session's "
                                       "scores agree with the other participants' this well.")
        ratio = _threshold(c2, "Straight-lining ratio", d.straight_ratio, f"{KEY}r_ratio",
                           help_text="A low variance counts as straight-lining only when it is below "
                                     "this share of how much the same items vary by everyone else's scores.")
        feedback = st.text_input("Told to the platform on a rejection", value=d.rejection_feedback,
                                 max_chars=500, key=f"{KEY}r_feedback")
        if not st.form_submit_button("Run cleansing", type="primary"):
            return None
    try:
        return CleansingRules(max_trap_failures=None if traps is None else int(traps), gold_min=gold,
                              gold_tolerance=int(tolerance), min_variance=variance,
                              min_median_seconds=seconds, outlier_z=outlier, bt500=bt500, ds_min=ds,
                              forgive_r=forgive, straight_ratio=ratio,
                              rejection_feedback=feedback.strip() or d.rejection_feedback)
    except CleansingError as exc:
        st.error(str(exc))
        return None


def _cleansed_line(result: Any) -> str:
    if result is None:
        return "No finished submissions to cleanse yet."
    n = result.outcome_counts()
    return (f"{len(result.submissions)} submissions cleansed: {n['accept_use']} accept and use, "
            f"{n['accept_no_use']} accept but do not use, {n['reject']} reject.")


def _decisions(lab: Lab, user: SessionUser, study_id: int, report: pd.DataFrame) -> None:
    ids = [int(p) for p in report["participant"]]
    c_over, c_block = st.columns(2)
    with c_over.form(f"{KEY}override"):
        st.markdown("**Override a decision**")
        pid = st.selectbox("Participant", ids, key=f"{KEY}o_pid")
        outcome = st.radio("Outcome", list(OUTCOME_WORDS), format_func=OUTCOME_WORDS.get, horizontal=True,
                           key=f"{KEY}o_outcome")
        reason = st.text_input("Reason (kept in the audit log)", max_chars=500, key=f"{KEY}o_reason")
        if st.form_submit_button("Override"):
            run_action(lab, lambda s: cc.override(s, int(pid), outcome, reason, actor_id=user.id),
                       f"Participant {pid}: {OUTCOME_WORDS[outcome]}.")
    with c_block.form(f"{KEY}block"):
        st.markdown("**Block a participant** (no pool admits their platform id again)")
        bpid = st.selectbox("Participant", ids, key=f"{KEY}b_pid")
        breason = st.text_input("Reason", max_chars=500, key=f"{KEY}b_reason")
        if st.form_submit_button("Block"):
            run_action(lab, lambda s: cc.block(s, int(bpid), breason, actor_id=user.id),
                       f"Participant {bpid} is on the block list.")


def _downloads(lab: Lab, study_id: int, study_name: str) -> None:
    st.markdown("**What goes back to the platform**")
    platform = st.selectbox("File shape", ce.EXPORT_PLATFORMS, key=f"{KEY}platform",
                            help="Prolific, MTurk or a plain pid,decision,reason table (docs/crowd.md).")
    cols = st.columns(4)
    labels = {"report": "Cleansing report", "approve": "Approve / reject", "bonus": "Bonus",
              "blocklist": "Block list"}
    with lab.read() as s:
        files = {w: ce.export_csv(s, study_id, w, platform) for w in ce.EXPORTS}
    for col, which in zip(cols, ce.EXPORTS, strict=True):
        col.download_button(labels[which], files[which], file_name=ce.file_name(study_name, which, platform),
                            mime="text/csv", key=f"{KEY}dl_{which}")


def _cleansing(lab: Lab, user: SessionUser, study_id: int, study_name: str) -> None:
    rules = _rules_form()
    if rules is not None:
        run_action(lab, lambda s: cc.run_cleansing(s, study_id, rules, actor_id=user.id), _cleansed_line)
    with lab.read() as s:
        report = ce.cleansing_report(s, study_id)
        needed = ce.ratings_needed(s, study_id)
    if report.empty:
        st.info("No cleansing decisions yet: run cleansing once participants have finished.")
    else:
        counts = report["outcome"].value_counts()
        st.caption(" · ".join(f"{counts[o]} {word}" for o, word in OUTCOME_WORDS.items() if o in counts))
        first = ["participant", "pool", "platform_id", "outcome", "reasons", "decided_by"]
        shown = report.assign(outcome=report["outcome"].map(OUTCOME_WORDS))
        shown = shown[first + [c for c in shown.columns if c not in first]]  # the decision first
        st.dataframe(shown, hide_index=True, width="stretch",
                     column_config={"gold_accuracy": st.column_config.NumberColumn(format="percent"),
                                    "score_variance": st.column_config.NumberColumn(format="%.2f"),
                                    "median_seconds": st.column_config.NumberColumn(format="%.1f"),
                                    "ds_accuracy": st.column_config.NumberColumn(format="%.2f")})
        _decisions(lab, user, study_id, report)
    st.markdown(f"**More ratings needed:** {needed.ratings_short} on {needed.items_short} items to reach "
                "the study's raters per item in used ratings.")
    if st.button("Reopen items of not-used submissions", key=f"{KEY}reopen",
                 help="Their ratings are set aside (kept, listed under all ratings) and the items go to "
                      "new participants."):
        run_action(lab, lambda s: ce.reopen_items(s, study_id, actor_id=user.id), lambda r: r.line())
    _downloads(lab, study_id, study_name)


def render(lab: Lab, user: SessionUser) -> None:
    """The Crowd page for admins."""
    refuse_unless(user, Action.POOLS_MANAGE, "The Crowd page is only available to admins.")
    st.title("Crowd")
    show_flashes()
    picked = pick_study(lab, f"{KEY}study", "No studies yet: create one on Study setup first.")
    if picked is None:
        return
    study_id, study_name = picked
    # a radio, not st.tabs: a tab goes back to the first one when a flash message appears above it
    section = st.radio("Section", SECTIONS, horizontal=True, key=f"{KEY}section",
                       label_visibility="collapsed")
    if section == SECTIONS[0]:
        _pools(lab, user, study_id)
    elif section == SECTIONS[1]:
        _training_and_consent(lab, user, study_id)
    else:
        _cleansing(lab, user, study_id, study_name)


__all__ = ["render"]
