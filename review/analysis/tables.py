"""The Analyst page's tables: which ratings an analysis keeps (filters), and the statistics report
turned into tidy frames, one row per figure, group, rater or rater pair.

Why apart from the page: every number the page, its charts and the HTML report show comes from
these frames, so it can be checked without Streamlit. Missing numbers are NaN/None here; the
charts leave those rows out and the renderings print "—".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from review.analysis.agreement import Coef
from review.analysis.formatting import finite
from review.analysis.report import GOLD_COLUMNS, ICC_LABELS, OPTIONAL_COLUMNS
from review.analysis.report_types import Report
from review.media.restore import controls

#: Columns the page offers as multiselect filters (blur_level gets a range instead).
FILTER_COLUMNS = ("guideline_version", "qa_cohort", "blur_kind", "restorer", "content")
#: How a missing value appears among filter options.
MISSING_LABEL = "(none)"

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
        return lines or ["none (every rating the choice above reads)"]


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
        mask |= df["restorer"].isin(list(controls()))
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


def report_input(df: pd.DataFrame) -> pd.DataFrame:
    """The ratings as build_report should see them: optional columns without a single value are
    dropped (nothing to break down by; review.analysis.report fails on an all-missing column, e.g.
    expected_min in a study without gold items), and the gold columns go when no rated item is
    gold (no gold accuracy to report, rather than a warning about missing expected ranges)."""
    drop = [c for c in OPTIONAL_COLUMNS if c in df.columns and df[c].isna().all()]
    if "is_gold" in df.columns and not df["is_gold"].fillna(False).astype(bool).any():
        drop += [c for c in GOLD_COLUMNS if c in df.columns]
    return df.drop(columns=sorted(set(drop)))


# --------------------------------------------------------------------------------------------
# Figure tables
# --------------------------------------------------------------------------------------------


def _coef_cols(c: Coef | None, prefix: str) -> dict[str, Any]:
    """A coefficient as columns `prefix`, `prefix`_ci_low/_ci_high and `prefix`_reason."""
    value = None if c is None else c.value
    ci = None if c is None else c.ci95
    return {prefix: value, f"{prefix}_ci_low": ci[0] if ci else None,
            f"{prefix}_ci_high": ci[1] if ci else None,
            f"{prefix}_reason": c.reason if c is not None and value is None else None}


def has_chance_corrected(report: Report) -> bool:
    """Whether a chance-corrected coefficient (alpha or Fleiss' kappa) has a value: percent
    agreement is shown only then (it is inflated when one score dominates)."""
    ka = report.krippendorff_alpha
    return any(c.value is not None for c in (ka.ordinal, ka.interval, ka.nominal)) or \
        report.fleiss_kappa.value is not None


def headline_frame(report: Report) -> pd.DataFrame:
    """Agreement coefficients, one row each: figure, value, 95% CI, items, reason when missing.
    Percent agreement is included only beside a chance-corrected coefficient."""
    rows: list[dict[str, Any]] = []
    for lvl, label in ALPHA_LEVELS:
        rows.append({"figure": label, "chance_corrected": True,
                     **_flat(report.krippendorff_alpha.level(lvl))})
    rows.append({"figure": "Fleiss' kappa", "chance_corrected": True,
                 **_flat(report.fleiss_kappa)})
    if has_chance_corrected(report):
        rows.append({"figure": "Percent agreement (not chance-corrected)",
                     "chance_corrected": False, **_flat(report.percent_agreement)})
    return pd.DataFrame(rows)


def icc_frame(report: Report) -> pd.DataFrame:
    """The six Shrout & Fleiss ICC forms with what each means, value, F-distribution CI."""
    return pd.DataFrame([{"form": f, "meaning": ICC_LABELS.get(f, f), **_flat(c)}
                         for f, c in report.icc.items()])


def _flat(c: Coef) -> dict[str, Any]:
    ci = c.ci95
    ok = c.value is not None
    return {"value": c.value, "ci_low": ci[0] if ci else None, "ci_high": ci[1] if ci else None,
            "n_items": c.n_items if ok else None,
            "reason": None if ok else (c.reason or "not computable")}


def breakdown_frame(report: Report, column: str) -> pd.DataFrame:
    """Agreement, MOS (and gold accuracy) per group of a characteristic column."""
    rows = []
    for g in report.breakdowns[column]:
        alpha = g.alpha_ordinal
        row = {"group": MISSING_LABEL if g.group is None else str(g.group),
               "n_items": g.n_items, "n_raters": g.n_raters, "n_ratings": g.n_ratings,
               "n_multiply_rated": alpha.n_items if alpha.value is not None else None,
               **_coef_cols(alpha, "alpha_ordinal"),
               **{k: v for k, v in _coef_cols(g.mos, "mos").items() if k != "mos_reason"}}
        if g.gold_accuracy is not None:
            gold = g.gold_accuracy
            row.update({k: v for k, v in _coef_cols(gold, "gold_accuracy").items()
                        if k != "gold_accuracy_reason"})
            row["gold_n"] = gold.n_items if gold.value is not None else 0
        rows.append(row)
    return _numeric(pd.DataFrame(rows))


def comparison_frame(report: Report, column: str) -> pd.DataFrame:
    """A minus B for every pair of groups of `column` (alpha ordinal, gold accuracy) with CIs."""
    rows = []
    for c in report.comparisons:
        if c.column != column:
            continue
        row = {"comparison": f"{c.group_a} − {c.group_b}", "group_a": str(c.group_a),
               "group_b": str(c.group_b), **_coef_cols(c.alpha_ordinal_diff, "alpha_diff")}
        if c.gold_accuracy_diff is not None:
            row.update(_coef_cols(c.gold_accuracy_diff, "gold_accuracy_diff"))
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
    s = finite(strength)
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


def rater_frame(report: Report) -> pd.DataFrame:
    """Per rater: P.910 bias and inconsistency with CIs, BT.500 screening, the flag to mark."""
    pr = report.per_rater
    rows = []
    for i in range(len(pr)):
        b_ci, i_ci = pr.bias_ci95[i], pr.inconsistency_ci95[i]
        rejected, at_floor = bool(pr.bt500_rejected[i]), bool(pr.inconsistency_at_floor[i])
        rows.append({
            "rater": str(pr.rater[i]), "n_ratings": pr.n_ratings[i],
            "mean_score": finite(pr.mean_score[i]),
            "bias": finite(pr.bias[i]), "bias_ci_low": finite(b_ci[0]) if b_ci else None,
            "bias_ci_high": finite(b_ci[1]) if b_ci else None,
            "inconsistency": finite(pr.inconsistency[i]),
            "inconsistency_ci_low": finite(i_ci[0]) if i_ci else None,
            "inconsistency_ci_high": finite(i_ci[1]) if i_ci else None,
            "inconsistency_at_floor": at_floor,
            "bt500_p": pr.bt500_p[i], "bt500_q": pr.bt500_q[i],
            "bt500_rejected": rejected,
            "ds_accuracy": finite(pr.dawid_skene.accuracy[i]) if pr.dawid_skene else None,
            "status": rater_status(rejected, at_floor),
        })
    return _numeric(pd.DataFrame(rows))


def kappa_pairs(report: Report, weight: str = "quadratic") -> pd.DataFrame:
    """One row per rater pair: Cohen's kappa with the given weights (CI with bootstrap)."""
    cols = ["rater_a", "rater_b", "n_items", "kappa", "kappa_ci_low", "kappa_ci_high", "kappa_reason"]
    rows = [{"rater_a": str(p.rater_a), "rater_b": str(p.rater_b), "n_items": p.n_items,
             **_coef_cols(p.weighted(weight), "kappa")} for p in report.pairwise_kappa]
    return _numeric(pd.DataFrame(rows, columns=cols))


def gold_by_rater(report: Report) -> pd.DataFrame:
    """Per rater: gold ratings judged, how many fell in the expected range, accuracy with its
    Wilson 95% CI. Empty when the data have no gold items."""
    cols = ["rater", "gold_n", "gold_correct", "gold_accuracy", "gold_accuracy_ci_low",
            "gold_accuracy_ci_high"]
    pr, gold = report.per_rater, report.per_rater.gold
    if gold is None:
        return pd.DataFrame(columns=cols)
    rows = []
    for i in range(len(pr)):
        ci = gold.accuracy_ci95[i]
        rows.append({"rater": str(pr.rater[i]), "gold_n": gold.n[i], "gold_correct": gold.correct[i],
                     "gold_accuracy": finite(gold.accuracy[i]),
                     "gold_accuracy_ci_low": finite(ci[0]) if ci else None,
                     "gold_accuracy_ci_high": finite(ci[1]) if ci else None})
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


#: Kinds of report warnings, tried in order: (name, words one of which the warning contains).
WARNING_KINDS = (
    ("rater pairs", ("rater pairs", "pairwise kappa")),
    ("breakdowns", ("breakdown by",)),
    ("rows left out", ("were ignored", "repeated (item, rater)")),
    ("controls", ("dmos",)),
    ("few items behind a figure", ("fewer than", "only", "rests on", "no item has")),
)


def group_warnings(warnings: Sequence[str]) -> list[tuple[str, list[str]]]:
    """The report's warnings by kind (WARNING_KINDS, then "other"), kinds in that order and
    warnings in report order: the page shows them as one note with a count per kind instead of a
    stack of boxes above the first figure."""
    groups: dict[str, list[str]] = {name: [] for name, _ in WARNING_KINDS}
    groups["other"] = []
    for w in warnings:
        low = str(w).lower()
        kind = next((name for name, words in WARNING_KINDS if any(x in low for x in words)), "other")
        groups[kind].append(str(w))
    return [(k, v) for k, v in groups.items() if v]


def warnings_summary(groups: Sequence[tuple[str, Sequence[str]]]) -> str:
    """One line for the collapsed note: "5 warnings: 3 few items behind a figure, 2 breakdowns"."""
    total = sum(len(v) for _, v in groups)
    return (f"{total} warning{'s' if total != 1 else ''}: "
            + ", ".join(f"{len(v)} {k}" for k, v in groups))

