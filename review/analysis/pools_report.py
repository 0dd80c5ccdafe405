"""What a crowd study adds to the statistics report and the Analysis page: which ratings the figures
read (used ratings only, or all, where data cleansing leaves some out) and the rater pools compared
(review.analysis.pools_compared), as tables with intervals and one chart.

Why apart: the report of a study without crowd pools stays byte for byte what it was
(tests/test_report_golden.py); these parts are added by the caller, only where they say something:
``ratings_read`` where cleansing leaves ratings out, ``pools`` where there is more than one pool
(the in-house team counts as one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import altair as alt
import pandas as pd

from review.analysis.agreement import Coef
from review.analysis.charts import TopChart, View
from review.analysis.export import ratings_in_use, ratings_read
from review.analysis.pools_compared import PoolCosts, PoolFigures, Share, compare_pools, pools_frame
from review.analysis.report_types import BreakdownGroup, Report
from review.analysis.tables import COLUMN_TITLES

#: The two breakdowns per pool, as "Quality Assured" reads them: better instructions, and QA.
POOL_BREAKDOWNS = (("guideline_version", "by_guideline"), ("qa_cohort", "by_qa"))
#: The chart's measures: (PoolFigures attribute, label).
MEASURES = (("alpha", "Alpha (ordinal)"), ("gold_accuracy", "Gold accuracy"),
            ("consensus_accuracy", "Consensus accuracy"))


def with_crowd_parts(report: Report, frame: pd.DataFrame, which: str,
                     costs: Mapping[str, PoolCosts] | None = None, *, bootstrap: int = 0,
                     seed: int = 0) -> Report:
    """`report` (built from `ratings_in_use(frame, which)`) with what the ratings say it read and,
    with more than one pool, the pools compared on the same ratings. `frame` is the study's
    whole ratings frame (review.analysis.export.ratings_frame); a frame without pools (a ratings
    file) adds nothing."""
    read = ratings_read(frame, which)
    figures: list[PoolFigures] = []
    if "pool" in frame and frame["pool"].nunique() > 1:
        figures = compare_pools(ratings_in_use(frame, which), costs, bootstrap=bootstrap, seed=seed,
                                scale=report.scale)
    return replace(report, ratings_read=read, pools=tuple(figures) if len(figures) > 1 else ())


def _share(s: Share | None) -> tuple[float | None, float | None, float | None]:
    if s is None:
        return None, None, None
    ci = s.ci95
    return s.value, ci[0] if ci else None, ci[1] if ci else None


def _coef(c: Coef) -> tuple[float | None, float | None, float | None]:
    return c.value, c.ci95[0] if c.ci95 else None, c.ci95[1] if c.ci95 else None


def measures_frame(figures: Sequence[PoolFigures]) -> pd.DataFrame:
    """The chart's numbers: one row per pool and measure (alpha, gold and consensus accuracy) with
    the 95 % interval; a measure a pool has no value for is left out."""
    rows = []
    for f in figures:
        for attr, label in MEASURES:
            part = getattr(f, attr)
            value, lo, hi = _coef(part) if isinstance(part, Coef) else _share(part)
            if value is not None:
                rows.append({"pool": f.pool, "measure": label, "value": value, "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows, columns=["pool", "measure", "value", "ci_low", "ci_high"])


def pools_chart(frame: pd.DataFrame) -> TopChart | None:
    """Per measure, one point per pool with its 95 % interval as error bars."""
    if frame.empty:
        return None
    base = alt.Chart(frame).encode(
        x=alt.X("measure:N", title=None, sort=[m for _, m in MEASURES], axis=alt.Axis(labelAngle=0)),
        xOffset=alt.XOffset("pool:N"), color=alt.Color("pool:N", title="Pool"))
    tip = ["pool:N", "measure:N", alt.Tooltip("value:Q", format=".3f"),
           alt.Tooltip("ci_low:Q", format=".3f", title="CI low"),
           alt.Tooltip("ci_high:Q", format=".3f", title="CI high")]
    points = base.mark_point(filled=True, size=90).encode(y=alt.Y("value:Q", title="Value"), tooltip=tip)
    bars = base.mark_errorbar(ticks=alt.MarkConfig(size=10)).encode(
        y=alt.Y("ci_low:Q", title=""), y2="ci_high:Q")
    return alt.layer(bars, points).properties(width="container", height=280)


def _group_row(pool: str, g: BreakdownGroup) -> dict[str, Any]:
    alpha, mos = _coef(g.alpha_ordinal), _coef(g.mos)
    row: dict[str, Any] = {
        "pool": pool, "group": "(missing)" if g.group is None else str(g.group), "n_items": g.n_items,
        "n_raters": g.n_raters, "n_ratings": g.n_ratings, "alpha_ordinal": alpha[0],
        "alpha_ordinal_ci_low": alpha[1], "alpha_ordinal_ci_high": alpha[2], "mos": mos[0],
        "mos_ci_low": mos[1], "mos_ci_high": mos[2]}
    if g.gold_accuracy is not None:
        gold = _coef(g.gold_accuracy)
        row.update(gold_accuracy=gold[0], gold_accuracy_ci_low=gold[1], gold_accuracy_ci_high=gold[2])
    return row


def breakdown_by_pool(figures: Sequence[PoolFigures], attr: str) -> pd.DataFrame:
    """A pool's guideline-version (`attr` "by_guideline") or QA ("by_qa") groups, every pool's
    in one table: alpha (ordinal) and MOS per group with their 95 % intervals (gold accuracy too
    where the pool rated gold items)."""
    rows = [_group_row(f.pool, g) for f in figures for g in getattr(f, attr)]
    frame = pd.DataFrame(rows)
    return frame.astype({c: float for c in frame.columns if c.startswith(("alpha", "mos", "gold"))})


def pools_views(figures: Sequence[PoolFigures]) -> list[View]:
    """The pools compared as views (a chart or a table with its numbers), in the order the Analysis
    page and the HTML report show them."""
    table = pools_frame(list(figures))
    measures = measures_frame(figures)
    views = [View(
        "pools_compared", "Pools compared",
        "Per pool: Krippendorff's alpha (ordinal) within the pool with its item-bootstrap 95% "
        "interval, gold accuracy (live gold controls within their expected range) and accuracy "
        "against the study's consensus (within one step of the item's median over every pool), both "
        "with Wilson 95% intervals. The table adds the share of submissions data cleansing uses, the "
        "median seconds per item and the cost per used rating.",
        table, pools_chart(measures), "" if not measures.empty else "No pool has a figure to plot.")]
    for column, attr in POOL_BREAKDOWNS:
        frame = breakdown_by_pool(figures, attr)
        if frame.empty:
            continue
        title = COLUMN_TITLES.get(column, column)
        views.append(View(
            f"pools_by_{column}", f"{title[:1].upper()}{title[1:]} by pool",
            f"Alpha (ordinal) and MOS per {title} within each pool, with 95% intervals: read "
            "'better instructions' and 'QA' pool by pool.", frame))
    return views
