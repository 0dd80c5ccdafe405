"""The Analyst page: agreement statistics of a study with filters, comparisons of guideline
versions and QA cohorts, charts with the numbers behind them, and every export.

The page only lays things out: numbers come from `review.analysis.report.build_report` and are
shaped by `review.analysis.tables` and `review.analysis.charts`. Reports are cached per study,
filters, bootstrap settings and a fingerprint of the study's ratings (count, highest id, active
count, last QA verdict), so a new, undone or reviewed rating recomputes them on the next run.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pandas as pd
import streamlit as st

from review.analysis.agreement import Coef
from review.analysis.charts import View, build_views
from review.analysis.crowd_cleansing import pool_costs
from review.analysis.export import (
    MIME,
    frame_csv,
    matrix_csv,
    ratings_bytes,
    ratings_fingerprint,
    ratings_frame,
    ratings_in_use,
)
from review.analysis.formatting import format_ci
from review.analysis.html_report import html_report
from review.analysis.markdown_report import report_to_markdown
from review.analysis.pools_report import pools_views, with_crowd_parts
from review.analysis.report import ICC_LABELS, build_report
from review.analysis.report_json import report_json
from review.analysis.report_types import Report
from review.analysis.tables import (
    FILTER_LABELS,
    Filters,
    apply_filters,
    blur_level_bounds,
    filter_options,
    group_warnings,
    has_chance_corrected,
    report_input,
    warnings_summary,
)
from review.database import Lab
from review.labeling.study import list_studies, study_by_id
from review.policy import Action
from review.ui.common import SessionUser, refuse_unless
from review.ui.display import inert
from review.ui.ratings_choice import ratings_choice

KEY = "analyst_"
MAX_BOOTSTRAP = 5000


# --------------------------------------------------------------------------------------------
# Data (cached)
# --------------------------------------------------------------------------------------------


def _db_key(lab: Lab) -> str:
    """Identifies the database in cache keys (two labs in one process never share entries)."""
    return lab.engine.url.render_as_string(hide_password=True)


@st.cache_data(show_spinner="Loading ratings…", max_entries=8)
def _frame(db: str, study_id: int, fingerprint: tuple[int, ...], history: bool,
           _lab: Lab) -> pd.DataFrame:
    with _lab.read() as s:
        return ratings_frame(s, study_by_id(s, study_id), include_history=history)


@st.cache_data(show_spinner="Computing agreement statistics…", max_entries=32)
def _report(db: str, study_id: int, fingerprint: tuple[int, ...], filters: Filters, which: str,
            bootstrap: int, seed: int, scale: tuple[int, int], _lab: Lab) -> Report:
    """The report of the filtered ratings in use, with the crowd study's parts (which ratings it
    read; the pools compared over all the study's ratings in use, since pay is per submission)."""
    full = _frame(db, study_id, fingerprint, False, _lab)
    df = apply_filters(ratings_in_use(full, which), filters)
    with _lab.read() as s:
        costs = pool_costs(s, study_id)
    return with_crowd_parts(build_report(report_input(df), bootstrap=bootstrap, seed=seed, scale=scale),
                            full, which, costs, bootstrap=bootstrap, seed=seed)


def _studies(lab: Lab) -> list[tuple[int, str, int, int]]:
    with lab.read() as s:
        return [(st_.id, st_.name, st_.scale_min, st_.scale_max) for st_ in list_studies(s)]


# --------------------------------------------------------------------------------------------
# Page parts
# --------------------------------------------------------------------------------------------


def _filters(df: pd.DataFrame, study_id: int) -> tuple[Filters, int, int]:
    """The filter widgets; returns the filters, bootstrap resamples and seed."""
    options = filter_options(df)
    with st.expander("Filters and intervals", expanded=True, icon=":material/filter_alt:"):
        cols = st.columns(3)
        chosen: dict[str, list[str]] = {}
        for i, (col, values) in enumerate(options.items()):
            chosen[col] = cols[i % 3].multiselect(
                FILTER_LABELS.get(col, col), values, key=f"{KEY}{col}_{study_id}",
                placeholder="All", help="Leave empty to keep every value.")
        i = len(options)
        bounds = blur_level_bounds(df)
        level = None
        if bounds is not None and bounds[0] < bounds[1]:
            picked = cols[i % 3].slider("Blur level (px)", bounds[0], bounds[1], bounds,
                                        key=f"{KEY}level_{study_id}")
            level = None if tuple(picked) == bounds else (float(picked[0]), float(picked[1]))
        c1, c2, c3 = st.columns(3)
        exclude = c1.checkbox("Exclude gold and control items", key=f"{KEY}nogold_{study_id}",
                              help="Drops gold items and the hidden-reference and blurred-input "
                                   "controls (and with them DMOS and gold accuracy).")
        boot = int(c2.number_input(
            "Bootstrap resamples", min_value=0, max_value=MAX_BOOTSTRAP, value=0, step=100,
            key=f"{KEY}boot", help="0: no intervals for alpha, kappa and the A − B comparisons. "
                                   "200 or more gives usable 95% intervals (takes longer)."))
        seed = int(c3.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, step=1,
                                   key=f"{KEY}seed", help="Makes the bootstrap reproducible."))
    return Filters.of(chosen, level, exclude), boot, seed


def _coef_metric(container: Any, label: str, c: Coef, digits: int = 3,
                 help: str | None = None) -> None:
    """One coefficient: the value (or "—"), its 95% CI and items below, or the plain reason."""
    container.metric(label, "—" if c.value is None else f"{c.value:.{digits}f}", help=help)
    if c.value is None:
        container.caption("Not computed: " + _md_text(c.reason or "not computable"))
        return
    ci_text = f"95% CI {format_ci(c.ci95, digits)}" if c.ci95 else "no interval (bootstrap off)"
    container.caption(f"{ci_text} · {c.n_items} items")


def _headline(report: Report) -> None:
    c = st.columns(4)
    c[0].metric("Items", report.n_items)
    c[1].metric("Raters", report.n_raters)
    c[2].metric("Ratings", report.n_ratings)
    c[3].metric("Items rated ≥ 2 times", report.n_multiply_rated_items,
                help="Only these items carry information about agreement.")

    groups = group_warnings(report.warnings)
    if groups:  # one collapsed note with counts, not a stack of boxes above the first figure
        with st.expander(warnings_summary(groups), icon=":material/warning:"):
            for kind, items in groups:
                st.markdown(f"**{kind.capitalize()}** ({len(items)})")
                st.markdown("\n".join(f"- {_md_text(w)}" for w in items))

    st.subheader("Agreement")
    ka = report.krippendorff_alpha
    row = st.columns(5)
    _coef_metric(row[0], "Alpha (ordinal)", ka.ordinal,
                 help="Krippendorff's alpha with ordinal distances: the main figure for a 1..5 scale.")
    _coef_metric(row[1], "Alpha (interval)", ka.interval)
    _coef_metric(row[2], "Alpha (nominal)", ka.nominal)
    _coef_metric(row[3], "Fleiss' kappa", report.fleiss_kappa)
    if has_chance_corrected(report):
        _coef_metric(row[4], "Percent agreement", report.percent_agreement,
                     help="Share of agreeing rater pairs per item. Not chance-corrected: inflated "
                          "when one score dominates; read it beside alpha and kappa.")
    else:
        row[4].caption("Percent agreement is hidden: no chance-corrected coefficient could be "
                       "computed to read it beside.")

    st.markdown("**Intraclass correlation** (Shrout & Fleiss; 95% intervals from the F distribution)")
    icc_cols = st.columns(6)
    for i, (form, coef) in enumerate(report.icc.items()):
        _coef_metric(icc_cols[i % 6], form, coef, help=ICC_LABELS.get(form, form))
    if report.notes:
        with st.expander("How these figures were computed"):
            for n in report.notes:
                st.markdown(f"- {_md_text(n)}")


def _md_text(text: str) -> str:
    """Plain text safe inside st.markdown (no links, emphasis or HTML from data)."""
    return inert(text)


def _download(label: str, data: bytes | str | Callable[[], bytes | str], file_name: str,
              key: str, mime: str | None = None) -> None:
    st.download_button(label, data, file_name=file_name, mime=mime, key=key, on_click="ignore",
                       icon=":material/download:")


def _view(v: View, stem: str) -> None:
    st.subheader(v.title)
    st.caption(v.caption)
    for n in v.notes:
        st.warning(_md_text(n), icon=":material/warning:")
    if v.chart is not None:
        fits = getattr(v.chart, "width", None) == "container"  # else a fixed or wrapped layout
        st.altair_chart(v.chart, key=f"{KEY}chart_{v.key}", width="stretch" if fits else "content")
    elif v.empty:
        st.info(v.empty)
    with st.expander(f"Numbers: {v.title}"):
        st.dataframe(v.frame, hide_index=True, placeholder="—", key=f"{KEY}table_{v.key}")
    _download("CSV of this chart", frame_csv(v.frame), f"{stem}-{v.key}.csv",
              key=f"{KEY}dl_{v.key}", mime="text/csv")


def _answer(filtered: pd.DataFrame, name: str, which: str) -> Any:
    """The HTML sections of the study's "how far can it go?" answer for the report (scikit-learn
    loads only when the report is downloaded), from the filtered ratings, used ones or all."""
    from review.answer.sentences import answer_html, study_answer

    return answer_html(study_answer(filtered, name, which=which))


def _slug(name: str) -> str:
    keep = "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-")
    return "-".join(p for p in keep.split("-") if p) or "study"


def _pools(report: Report, stem: str) -> None:
    """Pools compared, as "Quality Assured" compares providers (only with more than one pool)."""
    if not report.pools:
        return
    with st.container(border=True):
        st.header("Pools compared", divider="gray")
        st.caption("Each pool's figures come from its own ratings of those the radio above chooses, "
                   "over the whole study (the filters do not apply: pay is per submission). "
                   + ("" if report.bootstrap.resamples else
                      "Bootstrap resamples are 0, so alpha has no interval."))
        for v in pools_views(report.pools):  # the tables are the figures here: shown, not folded
            st.subheader(v.title)
            st.caption(v.caption)
            if v.chart is not None:
                st.altair_chart(v.chart, key=f"{KEY}chart_{v.key}", width="stretch")
            elif v.empty:
                st.info(v.empty)
            st.dataframe(v.frame, hide_index=True, placeholder="—", key=f"{KEY}table_{v.key}")
            _download("CSV of this table", frame_csv(v.frame), f"{stem}-{v.key}.csv",
                      key=f"{KEY}dl_{v.key}", mime="text/csv")


def _exports(lab: Lab, study_id: int, name: str, fingerprint: tuple[int, ...],
             filtered: pd.DataFrame, report: Report, views: list[View],
             context: list[str], which: str, answer_rows: pd.DataFrame) -> None:
    st.subheader("Exports")
    stem = _slug(name)
    scope = st.radio(
        "Ratings to export", ("As analysed (filters applied)", "All active ratings of the study",
                              "All ratings with superseded history"),
        horizontal=True, key=f"{KEY}scope",
        help="The matrix and the statistics reports always follow the filters above.")
    if scope.startswith("As analysed"):
        rows, suffix = filtered, ""
    else:
        history = scope.endswith("history")
        rows = _frame(_db_key(lab), study_id, fingerprint, history, lab)
        suffix = "-history" if history else "-all"
    st.caption(f"{len(rows)} rating rows.")
    c = st.columns(3)
    with c[0]:
        for fmt, label in (("csv", "Ratings (CSV)"), ("jsonl", "Ratings (JSON Lines)"),
                           ("parquet", "Ratings (Parquet)")):
            _download(label, partial(ratings_bytes, rows, fmt),
                      f"{stem}-ratings{suffix}.{fmt}", key=f"{KEY}dl_ratings_{fmt}", mime=MIME[fmt])
    with c[1]:
        _download("Item × rater matrix (CSV)", lambda: matrix_csv(filtered),
                  f"{stem}-matrix.csv", key=f"{KEY}dl_matrix", mime="text/csv")
        _download("Statistics report (JSON)", lambda: report_json(report),
                  f"{stem}-report.json", key=f"{KEY}dl_json", mime="application/json")
    with c[2]:
        _download("Statistics report (Markdown)", lambda: report_to_markdown(report),
                  f"{stem}-report.md", key=f"{KEY}dl_md", mime="text/markdown")
        _download("Readable report with charts (HTML)",
                  lambda: html_report(report, views, title=f"Agreement report: {name}",
                                         context=context,
                                         answer_sections=_answer(answer_rows, name, which)),
                  f"{stem}-report.html", key=f"{KEY}dl_html", mime="text/html")
    st.caption("The HTML report draws its charts with Vega from a CDN when opened online; every "
               "figure is also in its tables, so it reads offline too.")


# --------------------------------------------------------------------------------------------
# Entry
# --------------------------------------------------------------------------------------------


def render(lab: Lab, user: SessionUser) -> None:
    """The Analyst page (admins only)."""
    refuse_unless(user, Action.ANALYSIS_VIEW, "The Analysis page is only available to admins.")
    st.title("Analysis")
    studies = _studies(lab)
    if not studies:
        st.info("No studies yet: there is nothing to analyse.")
        return
    by_id = {sid: (name, (lo, hi)) for sid, name, lo, hi in studies}
    study_id = st.selectbox("Study", list(by_id), format_func=lambda sid: by_id[sid][0],
                            key=f"{KEY}study")
    name, scale = by_id[study_id]
    db = _db_key(lab)
    with lab.read() as s:
        fingerprint = ratings_fingerprint(s, study_id)
    full = _frame(db, study_id, fingerprint, False, lab)
    if full.empty:
        st.info(f"Study {_md_text(repr(name))} has no ratings yet.")
        return
    which = ratings_choice(full, f"{KEY}ratings_{study_id}")
    filters, boot, seed = _filters(full, study_id)
    answer_rows = apply_filters(full, filters)  # the answer says itself what cleansing left out
    filtered = ratings_in_use(answer_rows, which)
    st.caption("Filters: " + _md_text("; ".join(filters.describe())))
    if filtered.empty:
        st.warning("No ratings match these filters.")
        return
    report = _report(db, study_id, fingerprint, filters, which, boot, seed, scale, lab)
    if not boot:
        st.info("Bootstrap resamples are 0: alpha, kappa and the A − B comparisons have no "
                "intervals. Set e.g. 200 above to get 95% intervals.", icon=":material/info:")
    _headline(report)

    views = build_views(report, filtered)
    stem = _slug(name)
    for v in views:
        with st.container(border=True):
            _view(v, stem)
    _pools(report, stem)

    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    context = [f"Study: {name}", f"Filters: {'; '.join(filters.describe())}",
               f"Bootstrap: {boot} resamples, seed {seed}", f"Exported by {user.username} at {generated}"]
    if report.ratings_read is not None:
        context.insert(2, report.ratings_read.sentence())
    _exports(lab, study_id, name, fingerprint, filtered, report, views, context, which, answer_rows)
