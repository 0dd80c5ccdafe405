"""The statistics report as JSON: one rendering of a :class:`~review.analysis.report_types.Report`,
beside the Markdown and HTML ones.

The JSON's keys and order are the report's schema for scripts and notebooks (tests/golden/ holds
it byte for byte). Top level: ``n_items, n_raters, n_ratings, n_multiply_rated_items,
pairwise_kappa, pairwise_kappa_summary, krippendorff_alpha, fleiss_kappa, icc,
percent_agreement, breakdowns, comparisons, warnings, notes, scale, bootstrap, per_item,
per_rater`` (a crowd study's report adds ``ratings_read`` where data cleansing leaves ratings out
and ``pools`` where it has more than one rater pool, before ``per_item``). A coefficient is
``{"value": float, "ci95": [low, high] or null, "n_items": int}``
or ``{"value": null, "reason": str}``; a pair, group, comparison, item or rater is an object with
the fields of its part (an item's and a rater's optional columns only when present). All values
are strict JSON: a NaN is null.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from review.analysis.report_types import (
    BreakdownGroup,
    Comparison,
    KappaDistribution,
    PairKappa,
    PairwiseSummary,
    RatingsRead,
    Report,
    json_safe,
    rows,
)

if TYPE_CHECKING:
    from review.analysis.pools_compared import PoolFigures, Share

#: Reports whose JSON is longer than this are written compact (1M ratings: 58 MB instead of
#: 86 MB indented); same content.
INDENT_MAX_CHARS = 1_000_000

#: Keys as `json` writes them (a breakdown by blur level has numbers as keys).
_ORJSON = orjson.OPT_NON_STR_KEYS


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(json_safe(k)): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_clean(v) for v in obj.tolist()]
    return json_safe(obj)


def _pair(p: PairKappa) -> dict[str, Any]:
    return {"rater_a": p.rater_a, "rater_b": p.rater_b, "n_items": p.n_items,
            "unweighted": p.unweighted.to_dict(), "linear": p.linear.to_dict(),
            "quadratic": p.quadratic.to_dict()}


def _distribution(d: KappaDistribution) -> dict[str, Any]:
    if not d.n_pairs:
        return {"n_pairs": 0}
    return {"n_pairs": d.n_pairs, "mean": d.mean, "min": d.min, "q25": d.q25,
            "median": d.median, "q75": d.q75, "max": d.max}


def _summary(s: PairwiseSummary) -> dict[str, Any]:
    return {"min_shared_items": s.min_shared_items, "n_rater_pairs": s.n_rater_pairs,
            "n_pairs_computed": s.n_pairs_computed, "n_pairs_listed": s.n_pairs_listed,
            "skipped": {"fewer_shared_items": s.skipped.fewer_shared_items,
                        "over_budget": s.skipped.over_budget,
                        "kappa_undefined": s.skipped.kappa_undefined},
            "distribution": {w: _distribution(d) for w, d in s.distribution.items()}}


def _group(g: BreakdownGroup) -> dict[str, Any]:
    out = {"group": g.group, "n_items": g.n_items, "n_raters": g.n_raters,
           "n_ratings": g.n_ratings, "alpha_ordinal": g.alpha_ordinal.to_dict(),
           "mos": g.mos.to_dict()}
    if g.gold_accuracy is not None:
        out["gold_accuracy"] = g.gold_accuracy.to_dict()
    return out


def _comparison(c: Comparison) -> dict[str, Any]:
    out = {"column": c.column, "group_a": c.group_a, "group_b": c.group_b,
           "alpha_ordinal_diff": c.alpha_ordinal_diff.to_dict()}
    if c.gold_accuracy_diff is not None:
        out["gold_accuracy_diff"] = c.gold_accuracy_diff.to_dict()
    return out


def _ratings_read(r: RatingsRead) -> dict[str, Any]:
    return {"which": r.which, "left_out_ratings": r.left_out, "left_out_participants": r.participants,
            "sentence": r.sentence()}


def _share(s: Share | None) -> dict[str, Any] | None:
    if s is None:
        return None
    return {"value": s.value, "ci95": list(s.ci95) if s.ci95 else None, "right": s.right, "n": s.n}


def _pool(f: PoolFigures) -> dict[str, Any]:
    return {"pool": f.pool, "raters": f.raters, "items": f.items, "ratings": f.ratings,
            "alpha_ordinal": f.alpha.to_dict(), "gold_accuracy": _share(f.gold_accuracy),
            "consensus_accuracy": _share(f.consensus_accuracy),
            "submissions_used": _share(f.used_share), "median_seconds": f.median_seconds,
            "cost_per_used_rating": f.cost_per_used_rating, "currency": f.currency,
            "by_guideline_version": [_group(g) for g in f.by_guideline],
            "by_qa_cohort": [_group(g) for g in f.by_qa]}


def report_dict(report: Report) -> dict[str, Any]:
    """The report as plain JSON-safe dicts and lists, in the schema's key order."""
    out: dict[str, Any] = {
        "n_items": report.n_items, "n_raters": report.n_raters, "n_ratings": report.n_ratings,
        "n_multiply_rated_items": report.n_multiply_rated_items,
        "pairwise_kappa": [_pair(p) for p in report.pairwise_kappa],
        "pairwise_kappa_summary": _summary(report.pairwise_kappa_summary),
        "krippendorff_alpha": {lvl: c.to_dict() for lvl, c in report.krippendorff_alpha.items()},
        "fleiss_kappa": report.fleiss_kappa.to_dict(),
        "icc": {f: c.to_dict() for f, c in report.icc.items()},
        "percent_agreement": report.percent_agreement.to_dict(),
        "breakdowns": {col: [_group(g) for g in groups] for col, groups in report.breakdowns.items()},
        "comparisons": [_comparison(c) for c in report.comparisons],
        "warnings": list(report.warnings), "notes": list(report.notes),
        "scale": list(report.scale),
        "bootstrap": {"resamples": report.bootstrap.resamples, "seed": report.bootstrap.seed},
    }
    if report.ratings_read is not None:
        out["ratings_read"] = _ratings_read(report.ratings_read)
    if report.pools:
        out["pools"] = [_pool(f) for f in report.pools]
    out = _clean(out)
    # the two big tables hold native, JSON-safe values already: a recursive clean of per_rater
    # took ~3 s for one item rated by 20,000 raters
    out["per_item"] = list(rows(report.per_item))
    out["per_rater"] = list(rows(report.per_rater))
    return out


def report_json(report: Report) -> str:
    """The report as strict JSON (a NaN becomes null), by orjson (1M ratings: 0.16 s where the
    standard library's encoder took 1.2-1.6 s): indented for reading, compact when it is big."""
    data = report_dict(report)
    text = orjson.dumps(data, option=_ORJSON)
    if len(text) <= INDENT_MAX_CHARS:
        text = orjson.dumps(data, option=_ORJSON | orjson.OPT_INDENT_2)
    return text.decode("utf-8")
