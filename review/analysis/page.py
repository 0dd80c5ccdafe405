"""Data shaping for the Analyst page: the statistics report and the ratings table turned into tidy
tables, Altair charts, export files and a readable HTML report.

Why a module of its own: the page only lays these out, so every number it shows (and every file it
offers) can be checked without Streamlit. Tables use NaN/None for missing numbers and the charts
leave those rows out; the HTML and the text formatting print "—", never "nan".
"""

from __future__ import annotations

import html
import json
import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import altair as alt
import numpy as np
import pandas as pd

from review.analysis.export import wide_matrix, write_frame
from review.analysis.report import ICC_LABELS

#: Columns the page offers as multiselect filters (blur_level gets a range instead).
FILTER_COLUMNS = ("guideline_version", "qa_cohort", "blur_kind", "restorer", "content")
#: Control restorers; their items are gold by default (see review.labeling.study.CONTROL_EXPECTATIONS).
CONTROL_RESTORERS = ("hidden_reference", "blurred")
#: How a missing value appears among filter options.
MISSING_LABEL = "(none)"
#: Agreement from fewer multiply-rated items than this is noise (review.analysis.agreement).
MIN_RELIABLE_ITEMS = 20

ALPHA_LEVELS = (("ordinal", "Krippendorff's alpha (ordinal)"),
                ("interval", "Krippendorff's alpha (interval)"),
                ("nominal", "Krippendorff's alpha (nominal)"))
FILTER_LABELS = {
    "guideline_version": "Guideline version", "qa_cohort": "QA cohort", "blur_kind": "Blur kind",
    "restorer": "Restorer", "content": "Content",
}
COLUMN_TITLES = {
    "guideline_version": "guideline version", "qa_cohort": "QA cohort", "blur_kind": "blur kind",
    "blur_level": "blur level", "restorer": "restorer", "content": "content",
}
VEGA_CDN = "https://cdn.jsdelivr.net/npm"


# --------------------------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """Which ratings an analysis keeps. An empty selection for a column means "all values".

    Frozen and made of tuples so it can key a cache.
    """

    include: tuple[tuple[str, tuple[str, ...]], ...] = ()
    blur_level: tuple[float, float] | None = None
    exclude_gold: bool = False

    @classmethod
    def of(cls, include: Mapping[str, Sequence[str]] | None = None,
           blur_level: tuple[float, float] | None = None, exclude_gold: bool = False) -> Filters:
        """Normalised filters: sorted, empty selections dropped, unknown columns refused."""
        inc = []
        for col, vals in sorted((include or {}).items()):
            if col not in FILTER_COLUMNS:
                raise ValueError(f"cannot filter on {col!r}; filter columns: {FILTER_COLUMNS}")
            if vals:
                inc.append((col, tuple(sorted({str(v) for v in vals}))))
        lvl = None if blur_level is None else (float(blur_level[0]), float(blur_level[1]))
        return cls(tuple(inc), lvl, bool(exclude_gold))

    def describe(self) -> list[str]:
        """One plain line per active filter (for captions and the exported report)."""
        lines = [f"{COLUMN_TITLES.get(c, c)}: {', '.join(v)}" for c, v in self.include]
        if self.blur_level is not None:
            lines.append(f"blur level: {self.blur_level[0]:g} to {self.blur_level[1]:g}")
        if self.exclude_gold:
            lines.append("gold and control items excluded")
        return lines or ["none (all ratings)"]


def _labels(s: pd.Series) -> pd.Series:
    """A column's values as filter labels (missing -> MISSING_LABEL)."""
    return s.astype(object).where(s.notna(), MISSING_LABEL).astype(str)


def filter_options(df: pd.DataFrame) -> dict[str, list[str]]:
    """The distinct values of each filter column present, as sorted labels."""
    return {c: sorted(_labels(df[c]).unique().tolist()) for c in FILTER_COLUMNS if c in df.columns}


def blur_level_bounds(df: pd.DataFrame) -> tuple[float, float] | None:
    """(min, max) blur level in the data, or None when there is none."""
    if "blur_level" not in df.columns:
        return None
    lv = pd.to_numeric(df["blur_level"], errors="coerce").dropna()
    return None if lv.empty else (float(lv.min()), float(lv.max()))


def is_control(df: pd.DataFrame) -> pd.Series:
    """Gold items and control restorations (hidden reference, blurred input)."""
    mask = pd.Series(False, index=df.index)
    if "is_gold" in df.columns:
        mask |= df["is_gold"].fillna(False).astype(bool)
    if "restorer" in df.columns:
        mask |= df["restorer"].isin(CONTROL_RESTORERS)
    return mask


def apply_filters(df: pd.DataFrame, filters: Filters) -> pd.DataFrame:
    """The rows of a ratings table that pass `filters` (a copy; index reset)."""
    keep = pd.Series(True, index=df.index)
    for col, vals in filters.include:
        if col in df.columns:
            keep &= _labels(df[col]).isin(vals)
    if filters.blur_level is not None and "blur_level" in df.columns:
        lv = pd.to_numeric(df["blur_level"], errors="coerce")
        lo, hi = filters.blur_level
        keep &= lv.between(lo, hi)
    if filters.exclude_gold:
        keep &= ~is_control(df)
    return df[keep].reset_index(drop=True)


#: Optional columns build_report reads (breakdowns, gold, DMOS, per-item characteristics).
REPORT_COLUMNS = ("guideline_version", "qa_cohort", "blur_kind", "blur_level", "restorer", "content",
                  "is_gold", "expected_min", "expected_max", "reference_group", "is_hidden_reference",
                  "source", "degradation")
GOLD_COLUMNS = ("is_gold", "expected_min", "expected_max")


def report_input(df: pd.DataFrame) -> pd.DataFrame:
    """The ratings as build_report should see them: optional columns without a single value are
    dropped (nothing to break down by; review.analysis.report fails on an all-missing column, e.g.
    expected_min in a study without gold items), and the gold columns go when no rated item is
    gold (no gold accuracy to report, rather than a warning about missing expected ranges)."""
    drop = [c for c in REPORT_COLUMNS if c in df.columns and df[c].isna().all()]
    if "is_gold" in df.columns and not df["is_gold"].fillna(False).astype(bool).any():
        drop += [c for c in GOLD_COLUMNS if c in df.columns]
    return df.drop(columns=sorted(set(drop)))


# --------------------------------------------------------------------------------------------
# Formatting coefficients (None, never NaN)
# --------------------------------------------------------------------------------------------


def _num(x: Any) -> float | None:
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def coef_value(c: Mapping[str, Any] | None) -> float | None:
    return _num((c or {}).get("value"))


def coef_ci(c: Mapping[str, Any] | None) -> tuple[float, float] | None:
    ci = (c or {}).get("ci95")
    if not ci:
        return None
    lo, hi = _num(ci[0]), _num(ci[1])
    return None if lo is None or hi is None else (lo, hi)


def format_number(x: Any, digits: int = 3) -> str:
    """A number for people: fixed digits, "—" for missing or non-finite values."""
    v = _num(x)
    return "—" if v is None else f"{v:.{digits}f}"


def format_ci(ci: Sequence[Any] | None, digits: int = 2) -> str:
    if not ci or _num(ci[0]) is None or _num(ci[1]) is None:
        return "—"
    return f"[{float(ci[0]):.{digits}f}, {float(ci[1]):.{digits}f}]"


def format_coef(c: Mapping[str, Any] | None, digits: int = 3) -> str:
    """"0.712 [0.60, 0.80]", "0.712" without an interval, "—" when not computable."""
    v = coef_value(c)
    if v is None:
        return "—"
    ci = coef_ci(c)
    return f"{v:.{digits}f}" + (f" {format_ci(ci, digits)}" if ci else "")


def _coef_cols(c: Mapping[str, Any] | None, prefix: str) -> dict[str, Any]:
    ci = coef_ci(c)
    return {prefix: coef_value(c), f"{prefix}_ci_low": ci[0] if ci else None,
            f"{prefix}_ci_high": ci[1] if ci else None,
            f"{prefix}_reason": (c or {}).get("reason") if coef_value(c) is None else None}


def has_chance_corrected(report: Mapping[str, Any]) -> bool:
    """Whether a chance-corrected coefficient (alpha or Fleiss' kappa) has a value: percent
    agreement is shown only then (it is inflated when one score dominates)."""
    ka = report.get("krippendorff_alpha") or {}
    return any(coef_value(ka.get(lvl)) is not None for lvl, _ in ALPHA_LEVELS) or \
        coef_value(report.get("fleiss_kappa")) is not None


def headline_frame(report: Mapping[str, Any]) -> pd.DataFrame:
    """Agreement coefficients, one row each: figure, value, 95% CI, items, reason when missing.
    Percent agreement is included only beside a chance-corrected coefficient."""
    rows: list[dict[str, Any]] = []
    ka = report.get("krippendorff_alpha") or {}
    for lvl, label in ALPHA_LEVELS:
        rows.append({"figure": label, "chance_corrected": True, **_flat(ka.get(lvl))})
    rows.append({"figure": "Fleiss' kappa", "chance_corrected": True,
                 **_flat(report.get("fleiss_kappa"))})
    if has_chance_corrected(report):
        rows.append({"figure": "Percent agreement (not chance-corrected)",
                     "chance_corrected": False, **_flat(report.get("percent_agreement"))})
    return pd.DataFrame(rows)


def icc_frame(report: Mapping[str, Any]) -> pd.DataFrame:
    """The six Shrout & Fleiss ICC forms with what each means, value, F-distribution CI."""
    return pd.DataFrame([{"form": f, "meaning": ICC_LABELS.get(f, f), **_flat(c)}
                         for f, c in (report.get("icc") or {}).items()])


def _flat(c: Mapping[str, Any] | None) -> dict[str, Any]:
    ci = coef_ci(c)
    v = coef_value(c)
    return {"value": v, "ci_low": ci[0] if ci else None, "ci_high": ci[1] if ci else None,
            "n_items": (c or {}).get("n_items") if v is not None else None,
            "reason": None if v is not None else (c or {}).get("reason", "not computable")}


# --------------------------------------------------------------------------------------------
# Chart tables
# --------------------------------------------------------------------------------------------


def breakdown_frame(report: Mapping[str, Any], column: str) -> pd.DataFrame:
    """Agreement, MOS (and gold accuracy) per group of a characteristic column."""
    rows = []
    for g in (report.get("breakdowns") or {}).get(column, []):
        alpha = g.get("alpha_ordinal") or {}
        row = {"group": MISSING_LABEL if g["group"] is None else str(g["group"]),
               "n_items": g["n_items"], "n_raters": g["n_raters"], "n_ratings": g["n_ratings"],
               "n_multiply_rated": alpha.get("n_items") if coef_value(alpha) is not None else None,
               **_coef_cols(g.get("alpha_ordinal"), "alpha_ordinal"),
               **{k: v for k, v in _coef_cols(g.get("mos"), "mos").items() if k != "mos_reason"}}
        if "gold_accuracy" in g:
            row.update({k: v for k, v in _coef_cols(g["gold_accuracy"], "gold_accuracy").items()
                        if k != "gold_accuracy_reason"})
            row["gold_n"] = (g["gold_accuracy"] or {}).get("n_items") if \
                coef_value(g["gold_accuracy"]) is not None else 0
        rows.append(row)
    return _numeric(pd.DataFrame(rows))


def comparison_frame(report: Mapping[str, Any], column: str) -> pd.DataFrame:
    """A minus B for every pair of groups of `column` (alpha ordinal, gold accuracy) with CIs."""
    rows = []
    for c in report.get("comparisons") or []:
        if c["column"] != column:
            continue
        row = {"comparison": f"{c['group_a']} − {c['group_b']}", "group_a": str(c["group_a"]),
               "group_b": str(c["group_b"]), **_coef_cols(c.get("alpha_ordinal_diff"), "alpha_diff")}
        if "gold_accuracy_diff" in c:
            row.update(_coef_cols(c["gold_accuracy_diff"], "gold_accuracy_diff"))
        rows.append(row)
    return _numeric(pd.DataFrame(rows))


def _dedupe(df: pd.DataFrame) -> pd.DataFrame:
    """Scored rows, the last of repeated (item, rater) rows kept, as build_report does."""
    d = df[pd.to_numeric(df["score"], errors="coerce").notna()].copy()
    d["score"] = pd.to_numeric(d["score"]).astype(float)
    if "rating_id" in d.columns:
        d = d.sort_values("rating_id", kind="stable")
    return d.drop_duplicates(["item", "rater"], keep="last")


def series_label(restorer: Any, strength: Any, vary: bool) -> str:
    """The restorer's name, with its strength when the restorer is run at several strengths."""
    name = MISSING_LABEL if restorer is None or (isinstance(restorer, float) and math.isnan(restorer)) \
        else str(restorer)
    s = _num(strength)
    return f"{name} (strength {s:g})" if vary and s is not None else name


def mos_by_level(df: pd.DataFrame) -> pd.DataFrame:
    """MOS per blur kind, restorer (and strength) and blur level.

    Each item counts once: MOS is the mean of the item MOS values in a group (as in the report's
    breakdowns), with the 95% CI 1.96 * sd(item MOS) / sqrt(items) (no CI below two items).
    """
    cols = ["blur_kind", "restorer", "strength", "series", "blur_level", "n_items", "n_ratings",
            "mos", "mos_ci_low", "mos_ci_high"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    d = _dedupe(df)
    if d.empty:
        return pd.DataFrame(columns=cols)
    for c in ("blur_kind", "restorer", "strength", "blur_level"):
        if c not in d.columns:
            d[c] = None
    items = d.groupby("item", sort=False).agg(
        item_mos=("score", "mean"), n_ratings=("score", "size"), blur_kind=("blur_kind", "first"),
        restorer=("restorer", "first"), strength=("strength", "first"),
        blur_level=("blur_level", "first"))
    items["strength"] = pd.to_numeric(items["strength"], errors="coerce")
    items["blur_level"] = pd.to_numeric(items["blur_level"], errors="coerce")
    n_strengths = items.groupby(items["restorer"].astype(str))["strength"].nunique()
    vary = {k for k, n in n_strengths.items() if n > 1}
    items["series"] = [series_label(r, s, str(r) in vary)
                       for r, s in zip(items["restorer"], items["strength"], strict=True)]
    items["blur_kind"] = items["blur_kind"].astype(object).where(items["blur_kind"].notna(),
                                                                 MISSING_LABEL)
    g = items.groupby(["blur_kind", "series", "blur_level"], dropna=False, sort=True)
    out = g.agg(restorer=("restorer", "first"), strength=("strength", "first"),
                n_items=("item_mos", "size"), n_ratings=("n_ratings", "sum"),
                mos=("item_mos", "mean"), sd=("item_mos", "std")).reset_index()
    half = 1.96 * out["sd"] / np.sqrt(out["n_items"])
    ok = (out["n_items"] >= 2) & half.notna()
    out["mos_ci_low"] = (out["mos"] - half).where(ok)
    out["mos_ci_high"] = (out["mos"] + half).where(ok)
    return out[cols].reset_index(drop=True)


def rater_status(rejected: bool, at_floor: bool) -> str:
    if rejected and at_floor:
        return "BT.500 rejected; inconsistency at floor"
    if rejected:
        return "BT.500 rejected"
    if at_floor:
        return "inconsistency at floor"
    return "not flagged"


def rater_frame(report: Mapping[str, Any]) -> pd.DataFrame:
    """Per rater: P.910 bias and inconsistency with CIs, BT.500 screening, the flag to mark."""
    rows = []
    for p in report.get("per_rater") or []:
        b_ci, i_ci = p.get("bias_ci95"), p.get("inconsistency_ci95")
        rows.append({
            "rater": str(p["rater"]), "n_ratings": p["n_ratings"], "mean_score": _num(p.get("mean_score")),
            "bias": _num(p.get("bias")), "bias_ci_low": _num(b_ci[0]) if b_ci else None,
            "bias_ci_high": _num(b_ci[1]) if b_ci else None,
            "inconsistency": _num(p.get("inconsistency")),
            "inconsistency_ci_low": _num(i_ci[0]) if i_ci else None,
            "inconsistency_ci_high": _num(i_ci[1]) if i_ci else None,
            "inconsistency_at_floor": bool(p.get("inconsistency_at_floor")),
            "bt500_p": p.get("bt500_p"), "bt500_q": p.get("bt500_q"),
            "bt500_rejected": bool(p.get("bt500_rejected")),
            "ds_accuracy": _num(p.get("ds_accuracy")),
            "status": rater_status(bool(p.get("bt500_rejected")), bool(p.get("inconsistency_at_floor"))),
        })
    return _numeric(pd.DataFrame(rows))


def kappa_pairs(report: Mapping[str, Any], weight: str = "quadratic") -> pd.DataFrame:
    """One row per rater pair: Cohen's kappa with the given weights (CI with bootstrap)."""
    cols = ["rater_a", "rater_b", "n_items", "kappa", "kappa_ci_low", "kappa_ci_high", "kappa_reason"]
    rows = [{"rater_a": str(p["rater_a"]), "rater_b": str(p["rater_b"]), "n_items": p["n_items"],
             **_coef_cols(p.get(weight), "kappa")} for p in report.get("pairwise_kappa") or []]
    return _numeric(pd.DataFrame(rows, columns=cols))


def gold_by_rater(report: Mapping[str, Any]) -> pd.DataFrame:
    """Per rater: gold ratings judged, how many fell in the expected range, accuracy with its
    Wilson 95% CI. Empty when the data have no gold items."""
    cols = ["rater", "gold_n", "gold_correct", "gold_accuracy", "gold_accuracy_ci_low",
            "gold_accuracy_ci_high"]
    rows = []
    for p in report.get("per_rater") or []:
        if "gold_accuracy" not in p:
            continue
        ci = p.get("gold_accuracy_ci95")
        rows.append({"rater": str(p["rater"]), "gold_n": p["gold_n"], "gold_correct": p["gold_correct"],
                     "gold_accuracy": _num(p["gold_accuracy"]),
                     "gold_accuracy_ci_low": _num(ci[0]) if ci else None,
                     "gold_accuracy_ci_high": _num(ci[1]) if ci else None})
    return _numeric(pd.DataFrame(rows, columns=cols))


def _numeric(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns of numbers-or-None as float (None -> NaN) so tables sort and charts read them."""
    for c in frame.columns:
        if frame[c].dtype == object and not frame[c].empty:
            vals = frame[c].dropna()
            if not vals.empty and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                      for v in vals):
                frame[c] = pd.to_numeric(frame[c])
    return frame


# --------------------------------------------------------------------------------------------
# Charts (Altair / Vega-Lite)
# --------------------------------------------------------------------------------------------


_TICKS = alt.MarkConfig(size=14)


def agreement_chart(frame: pd.DataFrame, column: str) -> alt.TopLevelMixin | None:
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
    return alt.layer(zero, bars, points).properties(height=260)


def comparison_chart(frame: pd.DataFrame) -> alt.TopLevelMixin | None:
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
    return alt.layer(zero, bars, points).properties(height=alt.Step(40))


def mos_chart(frame: pd.DataFrame, scale: Sequence[int] = (1, 5)) -> alt.TopLevelMixin | None:
    """MOS over blur level, one line per restorer with its 95% CI band, faceted by blur kind."""
    d = frame.dropna(subset=["blur_level", "mos"])
    if d.empty:
        return None
    x = alt.X("blur_level:Q", title="blur level (px)")
    y_scale = alt.Scale(domain=[float(scale[0]), float(scale[1])])
    color = alt.Color("series:N", title="restorer", scale=alt.Scale(scheme="tableau10"),
                      legend=alt.Legend(labelLimit=320, orient="bottom", columns=2, symbolType="stroke",
                                        symbolOpacity=1, symbolStrokeWidth=3))
    tip = ["series:N", "blur_kind:N", "blur_level:Q", alt.Tooltip("mos:Q", format=".2f", title="MOS"),
           alt.Tooltip("mos_ci_low:Q", format=".2f", title="CI low"),
           alt.Tooltip("mos_ci_high:Q", format=".2f", title="CI high"), "n_items:Q", "n_ratings:Q"]
    band = alt.Chart().mark_area(opacity=0.18).encode(x=x, y=alt.Y("mos_ci_low:Q", scale=y_scale),
                                                      y2="mos_ci_high:Q", color=color)
    line = alt.Chart().mark_line(point=True).encode(
        x=x, y=alt.Y("mos:Q", title="MOS", scale=y_scale), color=color, tooltip=tip)
    layered = alt.layer(band, line, data=d).properties(width=320, height=240)
    if d["blur_kind"].nunique() > 1:
        return layered.facet(column=alt.Column("blur_kind:N", title="blur kind"))
    return layered


def rater_chart(frame: pd.DataFrame) -> alt.TopLevelMixin | None:
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
    return alt.layer(points, labels).properties(height=320)


def kappa_heatmap(frame: pd.DataFrame) -> alt.TopLevelMixin | None:
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


def gold_chart(frame: pd.DataFrame) -> alt.TopLevelMixin | None:
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
    return alt.layer(bars, err).properties(height=alt.Step(22))


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
    chart: alt.TopLevelMixin | None = None
    empty: str = ""
    notes: list[str] = field(default_factory=list)


def build_views(report: Mapping[str, Any], ratings: pd.DataFrame) -> list[View]:
    """Every chart of the Analyst page, from a build_report dict and the (filtered) ratings it
    was computed from."""
    views: list[View] = []
    boot = (report.get("bootstrap") or {}).get("resamples", 0)
    no_ci = "" if boot else " No bootstrap resamples were requested, so alpha has no interval."
    breakdowns = report.get("breakdowns") or {}
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
        mos, mos_chart(mos, report.get("scale") or (1, 5)),
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
            "inside that range, with the Wilson 95% interval.",
            gold, gold_chart(gold), "" if gold["gold_accuracy"].notna().any()
            else "No reviewer has rated a gold item."))
    return views


# --------------------------------------------------------------------------------------------
# Export files
# --------------------------------------------------------------------------------------------

MIME = {"csv": "text/csv", "jsonl": "application/x-ndjson", "parquet": "application/vnd.apache.parquet",
        "json": "application/json", "md": "text/markdown", "html": "text/html"}


def ratings_bytes(df: pd.DataFrame, fmt: str) -> bytes:
    """Long-format ratings as CSV, JSON Lines or Parquet bytes, exactly as the CLI export writes
    them (review.analysis.export.write_frame)."""
    with tempfile.TemporaryDirectory(prefix="review-export-") as tmp:
        path = write_frame(df, Path(tmp) / f"ratings.{fmt}", fmt)
        return path.read_bytes()


def frame_csv(frame: pd.DataFrame, *, index: bool = False) -> bytes:
    """A table as UTF-8 CSV (missing numbers as empty cells)."""
    return frame.to_csv(index=index).encode("utf-8")


def matrix_csv(df: pd.DataFrame) -> bytes:
    """The wide item x rater score matrix as CSV (empty cell = not rated)."""
    return frame_csv(wide_matrix(df), index=True)


def report_json(report: Mapping[str, Any]) -> str:
    """The report as strict JSON (no NaN)."""
    return json.dumps(report, indent=2, allow_nan=False, ensure_ascii=False)


# --------------------------------------------------------------------------------------------
# HTML report
# --------------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;
padding:0 1rem;color:#1d1d1f;line-height:1.45}
h1{font-size:1.7rem}h2{font-size:1.3rem;margin-top:2.2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6rem 0;font-size:.85rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;font-variant-numeric:tabular-nums}
th{background:#f3f3f3}.scroll{overflow-x:auto}
.warn{background:#fff4e5;border-left:4px solid #f0a020;padding:.5rem .8rem;margin:.4rem 0}
.note{color:#555;font-size:.9rem}.chart{margin:.8rem 0}
"""


def _html_table(frame: pd.DataFrame, digits: int = 3) -> str:
    if frame.empty:
        return "<p class='note'>No rows.</p>"
    out = frame.copy()
    for c in out.columns:
        if pd.api.types.is_float_dtype(out[c]):
            out[c] = [format_number(v, digits) for v in out[c]]
        else:
            out[c] = ["—" if v is None or (isinstance(v, float) and math.isnan(v)) else v
                      for v in out[c]]
    return "<div class='scroll'>" + out.to_html(index=False, escape=True, border=0, na_rep="—") + "</div>"


def _spec_json(chart: alt.TopLevelMixin) -> str:
    """The chart's Vega-Lite spec as JSON safe inside a <script> element."""
    s = json.dumps(chart.to_dict(), allow_nan=False)
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def html_report(report: Mapping[str, Any], views: Sequence[View], *, title: str,
                context: Sequence[str] = ()) -> str:
    """A standalone HTML report: headline, warnings, every chart and the numbers behind it.

    Charts are Vega-Lite specs drawn by vega-embed from the jsDelivr CDN when the file is opened
    online; every figure is also an HTML table, so the report reads fully offline. All text is
    escaped.
    """
    e = html.escape
    parts = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
             f"<title>{e(title)}</title>", f"<style>{_CSS}</style>",
             f"<script src='{VEGA_CDN}/vega@{alt.VEGA_VERSION}'></script>",
             f"<script src='{VEGA_CDN}/vega-lite@{alt.VEGALITE_VERSION}'></script>",
             f"<script src='{VEGA_CDN}/vega-embed@{alt.VEGAEMBED_VERSION}'></script>",
             "</head><body>", f"<h1>{e(title)}</h1>"]
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(f"<p class='note'>Generated {e(generated)}. Charts load from the Vega CDN "
                 f"({e(VEGA_CDN)}) when this file is opened online; offline, the table under each "
                 f"chart holds the same numbers.</p>")
    if context:
        parts.append("<ul>" + "".join(f"<li>{e(str(c))}</li>" for c in context) + "</ul>")
    n_multi = report.get("n_multiply_rated_items", 0)
    parts.append(f"<p>{e(str(report.get('n_ratings', 0)))} ratings of {e(str(report.get('n_items', 0)))} "
                 f"items by {e(str(report.get('n_raters', 0)))} raters; {e(str(n_multi))} items rated "
                 f"two or more times; scale {e(str((report.get('scale') or [1, 5])[0]))}.."
                 f"{e(str((report.get('scale') or [1, 5])[1]))}.</p>")
    boot = (report.get("bootstrap") or {})
    parts.append("<p class='note'>" + e(
        f"95% intervals: percentile bootstrap over items, {boot.get('resamples')} resamples, seed "
        f"{boot.get('seed')}; ICC intervals from the F distribution." if boot.get("resamples")
        else "No bootstrap resamples: alpha, kappa and percent agreement have no interval; ICC "
             "intervals come from the F distribution.") + "</p>")
    warnings = list(report.get("warnings") or [])
    if warnings:
        parts.append("<h2>Warnings</h2>")
        parts += [f"<div class='warn'>{e(str(w))}</div>" for w in warnings]
    parts.append("<h2>Agreement</h2>")
    parts.append(_html_table(headline_frame(report)))
    if not has_chance_corrected(report):
        parts.append("<p class='note'>Percent agreement is not shown: no chance-corrected "
                     "coefficient could be computed to read it beside.</p>")
    parts.append("<h3>Intraclass correlation (Shrout &amp; Fleiss)</h3>")
    parts.append(_html_table(icc_frame(report)))
    notes = report.get("notes") or []
    if notes:
        parts.append("<p class='note'>Method notes:</p><ul class='note'>"
                     + "".join(f"<li>{e(str(n))}</li>" for n in notes) + "</ul>")
    scripts = []
    for i, v in enumerate(views):
        parts.append(f"<h2 id='{e(v.key)}'>{e(v.title)}</h2>")
        parts.append(f"<p class='note'>{e(v.caption)}</p>")
        parts += [f"<div class='warn'>{e(n)}</div>" for n in v.notes]
        if v.chart is not None:
            parts.append(f"<div class='chart' id='chart-{i}'></div>")
            scripts.append(f"vegaEmbed('#chart-{i}', {_spec_json(v.chart)}, {{actions: false}})"
                           ".catch(function () {});")
        elif v.empty:
            parts.append(f"<p class='note'>{e(v.empty)}</p>")
        parts.append(_html_table(v.frame))
    if scripts:
        parts.append("<script>if (typeof vegaEmbed !== 'undefined') {\n" + "\n".join(scripts)
                     + "\n}</script>")
    parts.append("</body></html>")
    return "\n".join(parts)

