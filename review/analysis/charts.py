"""The Analyst page's charts (Altair / Vega-Lite), each with the table behind it, in the order the
page and the HTML report show them.

Why apart from the tables: the frames (review.analysis.tables) hold the numbers and are checked
on their own; a chart only draws one, leaving out rows without a value.

Every chart fits the page at 1366-1920 px: single charts take the container's width
(`width="container"`), faceted ones wrap into at most FACET_COLUMNS panels a row; score axes
are the rating scale itself (clamped, intervals clipped to it) with a few pixels of padding so
that a point at 5.0 is not drawn on the axis edge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import altair as alt
import pandas as pd

from review.analysis.agreement import MIN_RELIABLE_ITEMS
from review.analysis.report_types import Report
from review.analysis.tables import (
    COLUMN_TITLES,
    breakdown_frame,
    comparison_frame,
    gold_by_rater,
    kappa_pairs,
    mos_by_level,
    rater_frame,
)

_TICKS = alt.MarkConfig(size=14)
#: Facet panels a row, and each panel's width: two 300 px panels and their axes fit the narrowest
#: page the lab supports (1366 px wide, sidebar open).
FACET_COLUMNS = 2
FACET_WIDTH = 300
#: Pixels between the rating scale's ends and the plot's edges.
EDGE_PADDING = 10

#: What a chart function returns: one of altair's top-level chart kinds, as st.altair_chart and the
#: HTML report take them.
TopChart = (alt.Chart | alt.LayerChart | alt.FacetChart | alt.HConcatChart | alt.VConcatChart
            | alt.ConcatChart | alt.RepeatChart)


def score_scale(scale: Sequence[int]) -> alt.Scale:
    """A y scale that is the rating scale (1..5): clamped, never rounded past it, padded."""
    return alt.Scale(domain=[float(scale[0]), float(scale[1])], clamp=True, nice=False, zero=False,
                     padding=EDGE_PADDING)


def agreement_chart(frame: pd.DataFrame, column: str) -> TopChart | None:
    """Ordinal alpha per group: points with 95% CI error bars and the zero line."""
    d = frame.dropna(subset=["alpha_ordinal"]) if "alpha_ordinal" in frame else frame.iloc[0:0]
    if d.empty:
        return None
    title = COLUMN_TITLES.get(column, column)
    base = alt.Chart(d).encode(x=alt.X("group:N", title=title, sort=None, axis=alt.Axis(labelAngle=0)))
    tip = ["group:N", alt.Tooltip("alpha_ordinal:Q", format=".3f", title="alpha (ordinal)"),
           alt.Tooltip("alpha_ordinal_ci_low:Q", format=".3f", title="CI low"),
           alt.Tooltip("alpha_ordinal_ci_high:Q", format=".3f", title="CI high"),
           "n_items:Q", "n_raters:Q"]
    points = base.mark_point(filled=True, size=90).encode(
        y=alt.Y("alpha_ordinal:Q", title="Krippendorff's alpha (ordinal)"), tooltip=tip)
    bars = base.mark_errorbar(ticks=_TICKS).encode(y=alt.Y("alpha_ordinal_ci_low:Q", title=""),
                                                y2="alpha_ordinal_ci_high:Q")
    zero = alt.Chart(pd.DataFrame({"y": [0.0]})).mark_rule(strokeDash=[4, 4], color="gray").encode(y="y:Q")
    return alt.layer(zero, bars, points).properties(width="container", height=260)


def comparison_chart(frame: pd.DataFrame) -> TopChart | None:
    """Alpha(A) - alpha(B) per pair of groups with its bootstrap 95% CI; zero = no difference."""
    d = frame.dropna(subset=["alpha_diff"]) if "alpha_diff" in frame else frame.iloc[0:0]
    if d.empty:
        return None
    base = alt.Chart(d).encode(y=alt.Y("comparison:N", title="A − B", sort=None))
    tip = ["comparison:N", alt.Tooltip("alpha_diff:Q", format=".3f", title="difference"),
           alt.Tooltip("alpha_diff_ci_low:Q", format=".3f", title="CI low"),
           alt.Tooltip("alpha_diff_ci_high:Q", format=".3f", title="CI high")]
    points = base.mark_point(filled=True, size=90).encode(
        x=alt.X("alpha_diff:Q", title="difference in ordinal alpha (A − B)"), tooltip=tip)
    bars = base.mark_errorbar(ticks=_TICKS).encode(x=alt.X("alpha_diff_ci_low:Q", title=""),
                                                x2="alpha_diff_ci_high:Q")
    zero = alt.Chart(pd.DataFrame({"x": [0.0]})).mark_rule(strokeDash=[4, 4], color="gray").encode(x="x:Q")
    return alt.layer(zero, bars, points).properties(width="container", height=alt.Step(40))


def mos_chart(frame: pd.DataFrame, scale: Sequence[int] = (1, 5)) -> TopChart | None:
    """MOS over blur level, one line per restorer with its 95% CI band, faceted by blur kind."""
    d = frame.dropna(subset=["blur_level", "mos"]).copy()
    if d.empty:
        return None
    lo, hi = float(scale[0]), float(scale[1])
    for c in ("mos", "mos_ci_low", "mos_ci_high"):  # a band past 5.0 means nothing on a 1..5 scale
        if c in d:
            d[c] = pd.to_numeric(d[c], errors="coerce").clip(lo, hi)
    x = alt.X("blur_level:Q", title="blur level (px)", scale=alt.Scale(zero=False, nice=False,
                                                                        padding=EDGE_PADDING))
    y_scale = score_scale(scale)
    color = alt.Color("series:N", title="restorer", scale=alt.Scale(scheme="tableau10"),
                      legend=alt.Legend(labelLimit=320, orient="bottom", columns=2, symbolType="stroke",
                                        symbolOpacity=1, symbolStrokeWidth=3))
    tip = ["series:N", "blur_kind:N", "blur_level:Q", alt.Tooltip("mos:Q", format=".2f", title="MOS"),
           alt.Tooltip("mos_ci_low:Q", format=".2f", title="CI low"),
           alt.Tooltip("mos_ci_high:Q", format=".2f", title="CI high"), "n_items:Q", "n_ratings:Q"]
    axis = alt.Axis(values=list(range(int(lo), int(hi) + 1)))
    band = alt.Chart().mark_area(opacity=0.18, clip=True).encode(
        x=x, y=alt.Y("mos_ci_low:Q", scale=y_scale), y2="mos_ci_high:Q", color=color)
    line = alt.Chart().mark_line(point=True, clip=True).encode(
        x=x, y=alt.Y("mos:Q", title="MOS", scale=y_scale, axis=axis), color=color, tooltip=tip)
    if d["blur_kind"].nunique() > 1:  # wrapped panels: never wider than the page
        return alt.layer(band, line).properties(width=FACET_WIDTH, height=220).facet(
            facet=alt.Facet("blur_kind:N", title="blur kind"), columns=FACET_COLUMNS, data=d)
    return alt.layer(band, line, data=d).properties(width="container", height=260)


def rater_chart(frame: pd.DataFrame) -> TopChart | None:
    """Bias against inconsistency per rater; BT.500-rejected and floor raters stand out."""
    d = frame.dropna(subset=["bias", "inconsistency"]) if not frame.empty else frame
    if d.empty:
        return None
    tip = ["rater:N", "n_ratings:Q", alt.Tooltip("bias:Q", format=".2f"),
           alt.Tooltip("bias_ci_low:Q", format=".2f"), alt.Tooltip("bias_ci_high:Q", format=".2f"),
           alt.Tooltip("inconsistency:Q", format=".2f"), "bt500_p:Q", "bt500_q:Q", "status:N"]
    points = alt.Chart(d).mark_point(filled=True, size=110).encode(
        x=alt.X("bias:Q", title="bias (score points, P.910 model)"),
        y=alt.Y("inconsistency:Q", title="inconsistency (sd of the rater's noise)"),
        color=alt.Color("status:N", title="flag", scale=alt.Scale(scheme="set1"),
                        legend=alt.Legend(labelLimit=320)),
        shape=alt.Shape("status:N", title="flag"),
        tooltip=tip)
    labels = alt.Chart(d).mark_text(align="left", dx=8, fontSize=11).encode(
        x="bias:Q", y="inconsistency:Q", text="rater:N")
    return alt.layer(points, labels).properties(width="container", height=320)


def kappa_heatmap(frame: pd.DataFrame) -> TopChart | None:
    """Symmetric rater x rater heatmap of weighted kappa (pairs without shared items blank)."""
    d = frame.dropna(subset=["kappa"]) if not frame.empty else frame
    if d.empty:
        return None
    mirror = d.rename(columns={"rater_a": "rater_b", "rater_b": "rater_a"})
    both = pd.concat([d, mirror], ignore_index=True)
    raters = sorted(set(both["rater_a"]))
    tip = ["rater_a:N", "rater_b:N", alt.Tooltip("kappa:Q", format=".3f"),
           alt.Tooltip("kappa_ci_low:Q", format=".3f"), alt.Tooltip("kappa_ci_high:Q", format=".3f"),
           "n_items:Q"]
    base = alt.Chart(both).encode(x=alt.X("rater_a:N", title="rater", sort=raters),
                                  y=alt.Y("rater_b:N", title="rater", sort=raters))
    rect = base.mark_rect().encode(
        color=alt.Color("kappa:Q", title="kappa", scale=alt.Scale(domain=[-1, 1], scheme="redblue")),
        tooltip=tip)
    chart = rect
    if len(raters) <= 15:
        text = base.mark_text(fontSize=10).encode(
            text=alt.Text("kappa:Q", format=".2f"),
            color=alt.condition("abs(datum.kappa) > 0.6", alt.value("white"), alt.value("black")))
        chart = alt.layer(rect, text)
    side = max(160, min(640, 36 * len(raters)))
    return chart.properties(width=side, height=side)


def gold_chart(frame: pd.DataFrame) -> TopChart | None:
    """Gold accuracy per rater with its Wilson 95% CI."""
    d = frame.dropna(subset=["gold_accuracy"]) if not frame.empty else frame
    if d.empty:
        return None
    base = alt.Chart(d).encode(y=alt.Y("rater:N", title="rater", sort="-x"))
    tip = ["rater:N", "gold_n:Q", "gold_correct:Q", alt.Tooltip("gold_accuracy:Q", format=".0%"),
           alt.Tooltip("gold_accuracy_ci_low:Q", format=".0%"),
           alt.Tooltip("gold_accuracy_ci_high:Q", format=".0%")]
    bars = base.mark_bar(color="#7aa6d6").encode(
        x=alt.X("gold_accuracy:Q", title="share of gold ratings in the expected range",
                scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")), tooltip=tip)
    err = base.mark_errorbar(ticks=_TICKS, color="#333333").encode(
        x=alt.X("gold_accuracy_ci_low:Q", title=""), x2="gold_accuracy_ci_high:Q")
    return alt.layer(bars, err).properties(width="container", height=alt.Step(22))


# --------------------------------------------------------------------------------------------
# Views: what the page and the HTML report show, in order
# --------------------------------------------------------------------------------------------


@dataclass
class View:
    """One chart with the table behind it. `chart` is None when nothing can be plotted; then
    `empty` says why."""

    key: str
    title: str
    caption: str
    frame: pd.DataFrame
    chart: TopChart | None = None
    empty: str = ""
    notes: list[str] = field(default_factory=list)


def build_views(report: Report, ratings: pd.DataFrame) -> list[View]:
    """Every chart of the Analyst page, from a build_report report and the (filtered) ratings it
    was computed from."""
    views: list[View] = []
    no_ci = "" if report.bootstrap.resamples else \
        " No bootstrap resamples were requested, so alpha has no interval."
    breakdowns = report.breakdowns
    ordered = [c for c in ("guideline_version", "qa_cohort") if c in breakdowns]
    ordered += [c for c in breakdowns if c not in ordered and c != "blur_level"]
    for col in ordered:
        title = COLUMN_TITLES.get(col, col)
        frame = breakdown_frame(report, col)
        few = [] if frame.empty else frame.loc[
            ~(pd.to_numeric(frame["n_multiply_rated"]) >= MIN_RELIABLE_ITEMS), "group"].tolist()
        notes = [f"Groups with fewer than {MIN_RELIABLE_ITEMS} multiply-rated items "
                 f"({', '.join(map(str, few))}): their alpha is mostly noise."] if few else []
        views.append(View(
            f"agreement_by_{col}", f"Agreement by {title}",
            f"Krippendorff's alpha (ordinal) per {title}, 95% item-bootstrap interval as error "
            f"bars; MOS and group sizes in the table.{no_ci}",
            frame, agreement_chart(frame, col),
            "" if not frame.empty and frame["alpha_ordinal"].notna().any()
            else f"No group of {title} has an alpha (too few multiply-rated items).", notes))
        if col in ("guideline_version", "qa_cohort"):
            cmp = comparison_frame(report, col)
            if not cmp.empty:
                views.append(View(
                    f"comparison_{col}", f"Comparison of {title}s (A − B)",
                    "Difference in ordinal alpha between two groups; the interval resamples each "
                    "group's items independently. An interval that covers 0 means no clear "
                    f"difference.{no_ci}" + (" Gold accuracy differences (Newcombe interval) are in "
                                             "the table." if "gold_accuracy_diff" in cmp else ""),
                    cmp, comparison_chart(cmp),
                    "" if cmp["alpha_diff"].notna().any() else "Alpha is not computable for the groups."))
    mos = mos_by_level(ratings)
    views.append(View(
        "mos_by_level", "MOS by blur level and restorer",
        "Mean opinion score per restorer over blur level, one line per restorer (and strength), "
        "the band is the 95% interval 1.96·sd/√items of item MOS; each item counts once.",
        mos, mos_chart(mos, report.scale),
        "" if not mos.empty and mos[["blur_level", "mos"]].notna().all(axis=1).any()
        else "No rating has a blur level."))
    raters = rater_frame(report)
    views.append(View(
        "raters", "Rater bias and inconsistency",
        "ITU-T P.910 subject model: bias (how much higher or lower than the item's quality a rater "
        "scores) and inconsistency (the spread of their scores). Marked: raters rejected by ITU-R "
        "BT.500 screening, and raters whose inconsistency sits at the model's floor (very "
        "consistent, not an estimate).",
        raters, rater_chart(raters), "" if not raters.empty and raters["bias"].notna().any()
        else "No rater has enough ratings for the subject model."))
    kp = kappa_pairs(report, "quadratic")
    views.append(View(
        "pairwise_kappa", "Rater-pair agreement (quadratic weighted kappa)",
        "Cohen's kappa with quadratic weights for every pair of raters on the items both rated. "
        f"Pairs sharing fewer than {MIN_RELIABLE_ITEMS} items give noisy values (see n_items).",
        kp, kappa_heatmap(kp), "" if not kp.empty and kp["kappa"].notna().any()
        else "No pair of raters shares an item with varying scores."))
    gold = gold_by_rater(report)
    if not gold.empty:
        views.append(View(
            "gold_accuracy", "Gold accuracy per reviewer",
            "Share of a reviewer's ratings of gold items (controls with a known expected range) "
            "inside that range, judged on the reviewer's own score even where QA corrected it, with "
            "the Wilson 95% interval.",
            gold, gold_chart(gold), "" if gold["gold_accuracy"].notna().any()
            else "No reviewer has rated a gold item."))
    return views
