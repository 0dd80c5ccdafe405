"""The answer page: "how far can it go?" for one study, in plain words and one plot per blur kind.

Numbers come from review.answer.sentences (the monotone-curve estimate of review.answer.boundary);
this page lays them out: sentences, what they rest on (real and simulated ratings apart), the
observed faithful share with Wilson bars over the curve and its band, the threshold, the uncertain
zone, each boundary with its 95 % interval, the exports, and the Straddle proposals, which an
admin can turn into a generation job (review.generation.proposals.accept_proposal) whose items join the study.
"""

from __future__ import annotations

from typing import Any

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from review.analysis.charts import TopChart
from review.analysis.export import ratings_fingerprint, ratings_frame, ratings_in_use
from review.answer.boundary import Curve, Options, classify
from review.answer.metrics_vs_people import MetricsVsPeople, metrics_vs_people
from review.answer.sentences import (
    Answer,
    answer_csv,
    answer_json,
    one_level_words,
    ratings_words,
    sentences,
    study_answer,
)
from review.database import Lab
from review.generation.proposals import accept_proposal
from review.labeling.study import list_studies, study_by_id
from review.labeling.views import ImageRef
from review.policy import Action, may
from review.ui.common import SessionUser, refuse_unless, run_action, show_flashes
from review.ui.display import inert, show_images
from review.ui.ratings_choice import ratings_choice

KEY = "answer_"
CHART_HEIGHT = 380


@st.cache_data(show_spinner="Loading ratings…", max_entries=8)
def _frame(db: str, study_id: int, fingerprint: tuple[int, ...], _lab: Lab) -> pd.DataFrame:
    with _lab.read() as s:
        return ratings_frame(s, study_by_id(s, study_id))


@st.cache_data(show_spinner="Fitting the boundary…", max_entries=32)
def _answer(db: str, study_id: int, name: str, fingerprint: tuple[int, ...], options: Options,
            include_simulated: bool, which: str, _lab: Lab) -> Answer:
    df = _frame(db, study_id, fingerprint, _lab)
    return study_answer(df, name, options, include_simulated=include_simulated, which=which)


@st.cache_data(show_spinner="Measuring PSNR, SSIM and blur_effect…", max_entries=8)
def _metrics(db: str, study_id: int, fingerprint: tuple[int, ...], which: str, _lab: Lab) -> MetricsVsPeople:
    df = ratings_in_use(_frame(db, study_id, fingerprint, _lab), which)
    with _lab.read() as s:
        return metrics_vs_people(s, study_by_id(s, study_id), df, _lab.store.open_image)


def _metrics_section(lab: Lab, db: str, study_id: int, fingerprint: tuple[int, ...], which: str) -> None:
    st.subheader("Objective metrics against people")
    if not st.toggle("Compare PSNR, SSIM and blur_effect with the ratings", key=f"{KEY}metrics",
                     help="Reads every rated restoration and its sharp source once per change of "
                          "the ratings (cached)."):
        return
    m = _metrics(db, study_id, fingerprint, which, lab)
    if m.items.empty:
        st.info("No rated restoration of a sharp source with a blur level to measure.")
        return
    st.caption("Spearman's rho between each metric and the item's mean opinion score, per restorer, "
               "with a Fisher-z 95 % interval. For blur_effect (0 sharp, 1 blurred) agreement with "
               "people is a negative rho.")
    st.dataframe(m.correlations, hide_index=True, key=f"{KEY}corr_table")
    st.markdown("**Where a metric and people disagree most** (largest gap between the item's rank "
                "by the metric and by MOS)")
    items = m.items.set_index("item").to_dict("index")
    for row in m.disagreements.to_dict("records"):
        it = items[row["item"]]
        st.caption(f"Item {row['item']}: {inert(row['restorer'])} at {it['blur_level']:g} px of "
                   f"{inert(it['blur_kind'])}; "
                   f"{row['metric']} = {row['value']:.3g}, MOS {row['mos']:.2f}, rank gap {row['gap']:.2f}")
        show_images(lab.store, [
            ("Reference (sharp source)", ImageRef(it["source_path"], it["source_sha256"])),
            (f"Restoration ({row['restorer']})", ImageRef(it["restored_path"], it["restored_sha256"]))])


def series_label(curve: Curve, strength: float | None) -> str:
    """One line of a chart: restorer, its setting and strength."""
    label = curve.restorer + (f" ({curve.setting})" if curve.setting else "")
    return label + (f" @ {strength:g}" if strength is not None else "")


def chart_frames(answer: Answer, blur_kind: str) -> dict[str, pd.DataFrame]:
    """The layers of one blur kind's chart as tidy frames: observed points with Wilson bars, the
    mean and 95 % band, the uncertain zones along the grid, and the boundaries with intervals."""
    o = answer.options
    points, band, zones, bounds = [], [], [], []
    for c in (c for c in answer.curves if c.blur_kind == blur_kind):
        for si, strength in enumerate(c.strengths):
            name = series_label(c, strength)
            for s in c.stats:
                if s.strength == strength or len(c.strengths) == 1:
                    lo, hi = s.share_ci or (s.share, s.share)
                    points.append({"series": name, "level": s.level, "share": s.share, "lo": lo, "hi": hi,
                                   "ratings": s.ratings})
            mean, sd = np.array(c.gp_mean[si]), np.array(c.gp_sd[si])
            for x, m, d in zip(c.grid, mean, sd, strict=True):
                band.append({"series": name, "level": x, "mean": float(np.clip(m, 0, 1)),
                             "lo": float(np.clip(m - 1.96 * d, 0, 1)),
                             "hi": float(np.clip(m + 1.96 * d, 0, 1))})
            uncertain = np.array(classify(mean, sd, o.threshold, o.beta)) == "uncertain"
            for start, end in _runs(uncertain):
                zones.append({"series": name, "from": c.grid[start], "to": c.grid[end]})
            b = c.boundaries[si]
            if b.level is not None:
                bounds.append({"series": name, "level": b.level, "lo": b.interval[0], "hi": b.interval[1],
                               "threshold": o.threshold})
    return {"points": pd.DataFrame(points), "band": pd.DataFrame(band), "zones": pd.DataFrame(zones),
            "bounds": pd.DataFrame(bounds)}


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) index of every run of True."""
    out, start = [], None
    for i, f in enumerate(flags):
        if f and start is None:
            start = i
        elif not f and start is not None:
            out.append((start, i - 1))
            start = None
    if start is not None:
        out.append((start, len(flags) - 1))
    return out


def answer_chart(answer: Answer, blur_kind: str) -> TopChart:
    """Faithful share against blur level: points with Wilson bars, the curve and its band, the
    threshold h, the uncertain zone shaded, and each boundary (dashed) with its 95 % interval."""
    f = chart_frames(answer, blur_kind)
    y = alt.Scale(domain=[0, 1], clamp=True)
    color = alt.Color("series:N", title="Restorer")
    layers: list[Any] = []
    if not f["zones"].empty:
        layers.append(alt.Chart(f["zones"]).mark_rect(opacity=0.12).encode(
            x="from:Q", x2="to:Q", color=color, tooltip=["series:N", "from:Q", "to:Q"]))
    layers += [
        alt.Chart(f["band"]).mark_area(opacity=0.18).encode(
            x=alt.X("level:Q", title="Blur level (px)"), y=alt.Y("lo:Q", scale=y), y2="hi:Q", color=color),
        alt.Chart(f["band"]).mark_line().encode(
            x="level:Q", y=alt.Y("mean:Q", scale=y, title="Share rated faithful"), color=color),
        alt.Chart(f["points"]).mark_rule().encode(x="level:Q", y=alt.Y("lo:Q", scale=y), y2="hi:Q",
                                                  color=color),
        alt.Chart(f["points"]).mark_point(filled=True, size=60).encode(
            x="level:Q", y=alt.Y("share:Q", scale=y), color=color,
            tooltip=["series:N", "level:Q", alt.Tooltip("share:Q", format=".2f"), "lo:Q", "hi:Q",
                     "ratings:Q"]),
        alt.Chart(pd.DataFrame({"h": [answer.options.threshold]})).mark_rule(color="black").encode(
            y=alt.Y("h:Q", scale=y)),
    ]
    if not f["bounds"].empty:
        layers += [
            alt.Chart(f["bounds"]).mark_rule(strokeDash=[6, 4]).encode(
                x="level:Q", color=color, tooltip=["series:N", alt.Tooltip("level:Q", format=".1f"),
                                                   alt.Tooltip("lo:Q", format=".1f"),
                                                   alt.Tooltip("hi:Q", format=".1f")]),
            alt.Chart(f["bounds"]).mark_rule(strokeWidth=5, opacity=0.6).encode(
                x="lo:Q", x2="hi:Q", y=alt.Y("threshold:Q", scale=y), color=color),
        ]
    return alt.layer(*layers).properties(width="container", height=CHART_HEIGHT)


def _options(scale: tuple[int, int]) -> tuple[Options, bool] | None:
    """The threshold, faithful minimum and simulated switch; None (with the reason shown) when
    a value is refused."""
    c = st.columns(3)
    threshold = c[0].number_input("Threshold h (share of ratings faithful)", min_value=0.0, max_value=1.0,
                                  value=0.8, step=0.05, key=f"{KEY}threshold",
                                  help="A blur level is usable when at least this share of its "
                                       "ratings call the restoration faithful (a share of ratings).")
    faithful_min = int(c[1].number_input(
        "Faithful from score", min_value=scale[0], max_value=scale[1], value=min(4, scale[1]), step=1,
        key=f"{KEY}faithful_min", help="A score at or above this counts as faithful."))
    include = c[2].toggle("Include simulated ratings", value=True, key=f"{KEY}simulated",
                          help="Ratings of a simulated panel (review simulate) are kept apart from "
                               "real reviewers' ratings; switch them off to see the real ones alone.")
    if faithful_min <= scale[0]:
        st.error(f"Faithful from score must be above the lowest score {scale[0]}: otherwise every "
                 "rating counts as faithful.")
        return None
    try:
        return Options(faithful_min=faithful_min, threshold=float(threshold)), include
    except ValueError as exc:
        st.error(f"{exc} Choose a threshold such as 0.8.")
        return None


def _proposals(lab: Lab, user: SessionUser, study_id: int, answer: Answer) -> None:
    st.subheader("What the next ratings would settle")
    rows = [(c, p) for c in answer.curves for p in c.proposals]
    if not rows:
        st.caption("No proposals: no curve has an uncertain boundary left to rate.")
        return
    st.caption("The Straddle acquisition (1.96·sd − |mean − h|) proposes the blur levels where the "
               "boundary is least settled; accepting one queues a generation job over the study's "
               "own photos and blur recipes, whose items join the study when it runs.")
    table = pd.DataFrame([{"restorer": series_label(c, p.get("strength")), "blur kind": c.blur_kind,
                           "level (px)": p["level"], "strength": p.get("strength"), "score": p["score"]}
                          for c, p in rows])
    st.dataframe(table, hide_index=True, key=f"{KEY}proposal_table")
    if not may(user.role, Action.ANSWER_ACCEPT):
        st.caption("An admin can accept a proposal.")
        return
    choice = st.selectbox("Proposal", range(len(rows)), key=f"{KEY}proposal",
                          format_func=lambda i: f"{table['restorer'].iloc[i]}, {rows[i][0].blur_kind} "
                                                f"at {rows[i][1]['level']:g} px")
    if st.button("Accept: queue a generation job", key=f"{KEY}accept", icon=":material/add_task:"):
        curve, p = rows[choice]
        run_action(lab, lambda s: accept_proposal(
            s, study_id, restorer=curve.restorer, setting=curve.setting, blur_kind=curve.blur_kind,
            level=p["level"], strength=p.get("strength")),
            success=lambda job_id: f"Generation job {job_id} queued: start it on the Generate page "
                                   "(this study, tab Jobs, button Start); its items join this study.")


def render(lab: Lab, user: SessionUser) -> None:
    """The answer page (admins and QA)."""
    refuse_unless(user, Action.ANSWER_VIEW, "The answer page is only available to admins and QA.")
    st.title("How far can it go?")
    show_flashes()
    with lab.read() as s:
        studies = [(x.id, x.name, (x.scale_min, x.scale_max)) for x in list_studies(s)]
    if not studies:
        st.info("No studies yet: there is nothing to answer.")
        return
    by_id = {sid: (name, scale) for sid, name, scale in studies}
    study_id = st.selectbox("Study", list(by_id), format_func=lambda sid: by_id[sid][0], key=f"{KEY}study")
    name, scale = by_id[study_id]
    chosen = _options(scale)
    if chosen is None:
        return
    options, include = chosen
    db = lab.engine.url.render_as_string(hide_password=True)
    with lab.read() as s:
        fingerprint = ratings_fingerprint(s, study_id)
    which = ratings_choice(_frame(db, study_id, fingerprint, lab), f"{KEY}ratings_{study_id}")
    answer = _answer(db, study_id, name, fingerprint, options, include, which, lab)
    real = answer.ratings - answer.simulated_ratings
    c = st.columns(3)
    c[0].metric("Ratings the answer rests on", answer.ratings)
    c[1].metric("From real reviewers", real)
    c[2].metric("Simulated", answer.simulated_ratings if include else "left out")
    if answer.simulated_ratings:
        st.warning(f"{answer.simulated_ratings} of these {answer.ratings} ratings are SIMULATED (a "
                   "simulated panel over a known ground truth), not people's judgements.",
                   icon=":material/science:")
    left_out = one_level_words(answer)
    if not answer.curves:
        st.info("No answer yet: no restorer has ratings at two or more blur levels"
                + ("" if include else " from real reviewers") + ".")
        if left_out:
            st.info(inert(left_out), icon=":material/info:")
        return
    st.subheader("The answer")
    if (read := ratings_words(answer)) is not None:
        st.markdown(f"- {inert(read)}")
    for curve in answer.curves:
        for sentence in sentences(curve, options):
            st.markdown(f"- {inert(sentence)}")  # restorer and setting names may come from a file
    if left_out:
        st.info(inert(left_out), icon=":material/info:")
    for kind in sorted({c.blur_kind for c in answer.curves}):
        with st.container(border=True):
            st.markdown(f"**{inert(kind)}**: share rated {options.faithful_min}+ per blur level "
                        "(Wilson 95 % bars), "
                        f"monotone curve and 95 % bootstrap band, threshold h = {options.threshold:g}, "
                        "uncertain zone shaded, boundary dashed with its 95 % interval on the "
                        "threshold line.")
            st.altair_chart(answer_chart(answer, kind), key=f"{KEY}chart_{kind}", width="stretch")
    downloads = st.columns(2)
    downloads[0].download_button("Curves and boundaries (CSV)", lambda: answer_csv(answer),
                         file_name="answer.csv", mime="text/csv", key=f"{KEY}dl_csv", on_click="ignore",
                         icon=":material/download:")
    downloads[1].download_button("Curves, band and boundaries (JSON)", lambda: answer_json(answer),
                         file_name="answer.json", mime="application/json", key=f"{KEY}dl_json",
                         on_click="ignore", icon=":material/download:")
    _proposals(lab, user, study_id, answer)
    _metrics_section(lab, db, study_id, fingerprint, which)
