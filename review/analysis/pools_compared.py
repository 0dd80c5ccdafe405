"""Rater pools compared, as the "Quality Assured" study compares annotation providers.

Per pool: agreement within the pool (Krippendorff's alpha, ordinal, with a bootstrap interval over
items), gold accuracy (live gold controls within their expected range, Wilson interval), accuracy
against the study's consensus (a rating within one scale step of the item's median over every
pool's used ratings, Wilson interval), the share of submissions cleansing uses, the median seconds
per item, and the cost per used rating; and the pool's guideline-version and QA breakdowns (alpha
and MOS with intervals, review.analysis.report's breakdown groups), so "company vs crowd" and
"better instructions vs QA" read per pool. Each pool's figures use its used ratings (the analyses'
default once cleansing applies) unless the caller passes all of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from review.analysis.agreement import Coef, wilson_ci
from review.analysis.report import build_report
from review.analysis.report_types import BreakdownGroup


@dataclass(frozen=True)
class PoolCosts:
    """What a pool pays and how its submissions fared (from the database)."""

    pay_per_item: float = 0.0
    pay_per_session: float = 0.0
    currency: str = "USD"
    submissions: int = 0  # finished crowd sessions (0 for an in-house team)
    used_submissions: int = 0
    paid_submissions: int = 0  # accepted, used or not
    paid_items: int | None = None  # live items rated in paid submissions; None: count the ratings given


@dataclass(frozen=True)
class Share:
    right: int
    n: int

    @property
    def value(self) -> float | None:
        return self.right / self.n if self.n else None

    @property
    def ci95(self) -> tuple[float, float] | None:
        return wilson_ci(self.right, self.n)


@dataclass(frozen=True)
class PoolFigures:
    pool: str
    raters: int
    items: int
    ratings: int
    alpha: Coef
    gold_accuracy: Share
    consensus_accuracy: Share
    used_share: Share | None  # None: no crowd submissions (an in-house team)
    median_seconds: float | None
    cost_per_used_rating: float | None
    currency: str
    by_guideline: tuple[BreakdownGroup, ...]
    by_qa: tuple[BreakdownGroup, ...]


def consensus(df: pd.DataFrame) -> pd.Series:
    """Each item's median score over the given ratings (the study's consensus)."""
    return df.groupby("item")["score"].median()


def compare_pools(df: pd.DataFrame, costs: Mapping[str, PoolCosts] | None = None, *,
                  bootstrap: int = 200, seed: int = 0, scale: tuple[int, int] = (1, 5)) -> list[PoolFigures]:
    """Figures per pool of the ratings table (columns of review.analysis.export.ratings_frame,
    already filtered to the ratings in use); pools in order of name, in-house first."""
    costs = costs or {}
    if df.empty:
        return []
    live = df[~df["is_gold"].astype(bool)]
    centre = consensus(live)
    out = []
    for pool in sorted(df["pool"].unique(), key=lambda p: (p != "In-house", str(p))):
        sub = df[df["pool"] == pool]
        report = build_report(sub, bootstrap=bootstrap, seed=seed, scale=scale,
                              breakdown_by=[c for c in ("guideline_version", "qa_cohort") if c in sub])
        gold = sub[sub["is_gold"].astype(bool) & sub["expected_min"].notna()]
        right = ((gold["score"] >= gold["expected_min"]) & (gold["score"] <= gold["expected_max"])).sum()
        own_live = sub[~sub["is_gold"].astype(bool)]
        near = (own_live["score"] - own_live["item"].map(centre)).abs() <= 1
        seconds = own_live["time_taken_ms"].dropna() / 1000
        c = costs.get(str(pool), PoolCosts())
        # What the pool was paid (every paid submission's items, used or not) over the ratings in use.
        items_paid = len(sub) if c.paid_items is None else c.paid_items
        spent = c.pay_per_item * items_paid + c.pay_per_session * c.paid_submissions
        cost = spent / len(sub) if len(sub) and (c.pay_per_item or c.pay_per_session) else None
        out.append(PoolFigures(
            pool=str(pool), raters=int(sub["rater"].nunique()), items=int(sub["item"].nunique()),
            ratings=len(sub), alpha=report.krippendorff_alpha.ordinal,
            gold_accuracy=Share(int(right), len(gold)),
            consensus_accuracy=Share(int(near.sum()), int(near.notna().sum())),
            used_share=Share(c.used_submissions, c.submissions) if c.submissions else None,
            median_seconds=float(seconds.median()) if len(seconds) else None,
            cost_per_used_rating=cost if cost is None or math.isfinite(cost) else None, currency=c.currency,
            by_guideline=report.breakdowns.get("guideline_version", ()),
            by_qa=report.breakdowns.get("qa_cohort", ())))
    return out


def pools_frame(figures: list[PoolFigures]) -> pd.DataFrame:
    """One row per pool, the figures and their intervals as columns (for tables and CSV)."""
    def ci(share: Share | None, end: int) -> float | None:
        return None if share is None or share.ci95 is None else share.ci95[end]

    rows = []
    for f in figures:
        rows.append({
            "pool": f.pool, "raters": f.raters, "items": f.items, "ratings": f.ratings,
            "alpha": f.alpha.value, "alpha_lo": f.alpha.ci95[0] if f.alpha.ci95 else None,
            "alpha_hi": f.alpha.ci95[1] if f.alpha.ci95 else None,
            "gold_accuracy": f.gold_accuracy.value, "gold_lo": ci(f.gold_accuracy, 0),
            "gold_hi": ci(f.gold_accuracy, 1), "gold_n": f.gold_accuracy.n,
            "consensus_accuracy": f.consensus_accuracy.value, "consensus_lo": ci(f.consensus_accuracy, 0),
            "consensus_hi": ci(f.consensus_accuracy, 1),
            "submissions_used": None if f.used_share is None else f.used_share.value,
            "submissions_used_lo": ci(f.used_share, 0), "submissions_used_hi": ci(f.used_share, 1),
            "submissions": None if f.used_share is None else f.used_share.n,
            "median_seconds": f.median_seconds, "cost_per_used_rating": f.cost_per_used_rating,
            "currency": f.currency,
        })
    return pd.DataFrame(rows)
