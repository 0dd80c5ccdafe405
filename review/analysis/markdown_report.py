"""The statistics report as readable Markdown tables (the CLI's `stats` output and the Analyst
page's Markdown download); long tables are truncated, the JSON report keeps everything.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from review.analysis.agreement import Coef
from review.analysis.formatting import format_ci, format_coef, format_number
from review.analysis.report import ICC_LABELS
from review.analysis.report_types import BreakdownGroup, Report

if TYPE_CHECKING:
    from review.analysis.pools_compared import PoolFigures, Share


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def esc(s: str) -> str:
        return str(s).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(esc(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return lines


def _n_items(c: Coef) -> str:
    """The items behind a coefficient, "—" when it has no value."""
    return format_number(None if c.value is None else c.n_items)


def report_to_markdown(report: Report, *, max_item_rows: int = 50, max_pair_rows: int = 100) -> str:
    """Readable Markdown tables of a :func:`build_report` report (long tables are truncated)."""
    out: list[str] = ["# Rating agreement report", ""]
    out.append(f"{report.n_ratings} ratings of {report.n_items} items by "
               f"{report.n_raters} raters ({report.n_multiply_rated_items} items "
               f"rated two or more times), scale {report.scale[0]}..{report.scale[1]}.")
    boot = report.bootstrap
    if boot.resamples:
        out.append(f"95% intervals: percentile bootstrap over items, {boot.resamples} "
                   f"resamples, seed {boot.seed} (ICC: F distribution).")
    else:
        out.append("No bootstrap intervals were requested (ICC intervals use the F "
                   "distribution).")
    if report.ratings_read is not None:
        out.append(report.ratings_read.sentence())
    out.append("")
    if report.warnings:
        out += ["## Warnings", ""] + [f"- {w}" for w in report.warnings] + [""]

    out += ["## Agreement", ""]
    ka = report.krippendorff_alpha
    rows = [
        ["Krippendorff's alpha (ordinal)", format_coef(ka.ordinal), _n_items(ka.ordinal)],
        ["Krippendorff's alpha (interval)", format_coef(ka.interval), _n_items(ka.interval)],
        ["Krippendorff's alpha (nominal)", format_coef(ka.nominal), _n_items(ka.nominal)],
        ["Fleiss' kappa", format_coef(report.fleiss_kappa), _n_items(report.fleiss_kappa)],
        ["Percent agreement (not chance-corrected)", format_coef(report.percent_agreement),
         _n_items(report.percent_agreement)],
    ]
    out += _table(["Coefficient", "Value [95% CI]", "Items"], rows)
    out += ["", "Percent agreement is inflated when one score dominates; read it next to the "
            "chance-corrected coefficients above.", ""]
    out += ["### Intraclass correlation (Shrout & Fleiss)", ""]
    out += _table(["Form", "Meaning", "Value [95% CI]", "Items"],
                  [[f, ICC_LABELS[f], format_coef(c), _n_items(c)] for f, c in report.icc.items()])
    out.append("")
    if report.notes:
        out += ["Method notes:", ""] + [f"- {n}" for n in report.notes] + [""]

    pk = report.pairwise_kappa
    ps = report.pairwise_kappa_summary
    if ps.n_rater_pairs:
        skip, dist = ps.skipped, ps.distribution.quadratic
        out += ["### Cohen's kappa per rater pair", "",
                f"{ps.n_pairs_computed} of {ps.n_rater_pairs} rater pairs have a kappa; "
                f"skipped: {skip.fewer_shared_items} sharing fewer than "
                f"{ps.min_shared_items} items, {skip.over_budget} beyond the memory budget, "
                f"{skip.kappa_undefined} with kappa undefined (one score only)."]
        if dist.n_pairs:
            out[-1] += (f" Quadratic kappa: median {format_number(dist.median)}, quartiles "
                        f"{format_number(dist.q25)} to {format_number(dist.q75)}, range "
                        f"{format_number(dist.min)} to {format_number(dist.max)}.")
        out.append("")
    if pk:
        rows = [[format_number(p.rater_a), format_number(p.rater_b), str(p.n_items),
                 format_coef(p.unweighted), format_coef(p.linear), format_coef(p.quadratic)]
                for p in pk[:max_pair_rows]]
        out += _table(["Rater A", "Rater B", "Shared items", "Unweighted", "Linear",
                       "Quadratic"], rows)
        if len(pk) > max_pair_rows:
            out.append(f"\n… {len(pk) - max_pair_rows} more pairs in the JSON report.")
        out.append("")

    pr = report.per_rater
    if len(pr):
        out += ["## Raters", "",
                "Bias and inconsistency: ITU-T P.910 subject model (maximum likelihood). "
                "BT.500: observer screening of ITU-R BT.500 A1-2.3.1 (P above, Q below the "
                "band). DS: Dawid-Skene estimate of how often the rater gives the true score.",
                ""]
        header = ["Rater", "Ratings", "Mean", "Bias [95% CI]", "Inconsistency",
                  "BT.500 P/Q", "BT.500 rejected", "DS accuracy"]
        if pr.gold is not None:
            header += ["Gold accuracy [95% CI]"]
        rows = []
        for i in range(len(pr)):
            row = [format_number(pr.rater[i]), str(pr.n_ratings[i]),
                   format_number(pr.mean_score[i], 2),
                   f"{format_number(pr.bias[i], 2)} {format_ci(pr.bias_ci95[i])}",
                   format_number(pr.inconsistency[i], 2)
                   + (" (floor)" if pr.inconsistency_at_floor[i] else ""),
                   f"{pr.bt500_p[i]}/{pr.bt500_q[i]}",
                   format_number(pr.bt500_rejected[i]),
                   format_number(pr.dawid_skene.accuracy[i] if pr.dawid_skene else None, 2)]
            if pr.gold is not None:
                row.append(f"{format_number(pr.gold.accuracy[i], 2)} "
                           f"{format_ci(pr.gold.accuracy_ci95[i])} (n={pr.gold.n[i]})")
            rows.append(row)
        out += _table(header, rows) + [""]

    for col, groups in report.breakdowns.items():
        if not groups:
            continue
        out += [f"## Breakdown by {col}", ""]
        has_gold = groups[0].gold_accuracy is not None
        header = ["Group", "Items", "Raters", "Ratings", "Alpha (ordinal) [95% CI]",
                  "MOS [95% CI]"] + (["Gold accuracy"] if has_gold else [])
        rows = []
        for g in groups:
            row = [format_number(g.group), str(g.n_items), str(g.n_raters),
                   str(g.n_ratings), format_coef(g.alpha_ordinal), format_coef(g.mos, 2)]
            if has_gold:
                row.append(format_coef(g.gold_accuracy, 2))
            rows.append(row)
        out += _table(header, rows) + [""]

    cmp_rows = report.comparisons
    if cmp_rows:
        out += ["## Comparisons (A minus B)", ""]
        has_gold = cmp_rows[0].gold_accuracy_diff is not None
        header = ["Column", "A", "B", "Alpha (ordinal) difference [95% CI]"] + (
            ["Gold accuracy difference [95% CI]"] if has_gold else [])
        rows = []
        for c in cmp_rows:
            row = [c.column, format_number(c.group_a), format_number(c.group_b),
                   format_coef(c.alpha_ordinal_diff)]
            if has_gold:
                row.append(format_coef(c.gold_accuracy_diff))
            rows.append(row)
        out += _table(header, rows) + [""]
        if not boot.resamples:
            out += ["Alpha differences have no interval without bootstrap resamples.", ""]

    if report.pools:
        out += _pools(report.pools, bool(boot.resamples))

    items = report.per_item
    if len(items):
        out += ["## Items", ""]
        mos = items.mos
        shown = sorted(range(len(items)), key=lambda i: (mos[i] is None, mos[i] or 0.0))
        shown = shown[:max_item_rows]
        header = ["Item", "Ratings", "MOS [95% CI]", "MLE quality"] + (
            ["DMOS"] if items.dmos is not None else []) + ["DS label"]
        rows = []
        for i in shown:
            row = [format_number(items.item[i]), str(items.n_ratings[i]),
                   f"{format_number(mos[i], 2)} {format_ci(items.mos_ci95[i])}",
                   format_number(items.mle_quality[i], 2)]
            if items.dmos is not None:
                row.append(format_number(items.dmos.dmos[i], 2))
            row.append(format_number(items.dawid_skene.label[i] if items.dawid_skene else None))
            rows.append(row)
        if len(items) > max_item_rows:
            out.append(f"The {max_item_rows} items with the lowest MOS of {len(items)}; all "
                       f"items are in the JSON report.")
            out.append("")
        out += _table(header, rows) + [""]
    return "\n".join(out).rstrip() + "\n"


def _share(s: Share | None) -> str:
    """"0.83 [0.70, 0.91] (25/30)", "—" without a value."""
    if s is None or s.value is None:
        return format_number(None)
    return f"{s.value:.2f} {format_ci(s.ci95)} ({s.right}/{s.n})"


def _pool_groups(figures: Sequence[PoolFigures], title: str,
                 groups: Sequence[Sequence[BreakdownGroup]]) -> list[str]:
    rows = [[f.pool, format_number(g.group), str(g.n_items), str(g.n_raters), format_coef(g.alpha_ordinal),
             format_coef(g.mos, 2), format_coef(g.gold_accuracy, 2)]
            for f, of_pool in zip(figures, groups, strict=True) for g in of_pool]
    if not rows:
        return []
    return [f"### {title} by pool", ""] + _table(
        ["Pool", title, "Items", "Raters", "Alpha (ordinal) [95% CI]", "MOS [95% CI]",
         "Gold accuracy [95% CI]"], rows) + [""]


def _pools(figures: Sequence[PoolFigures], bootstrap: bool) -> list[str]:
    """The pools compared (review.analysis.pools_compared), as "Quality Assured" compares providers."""
    out = ["## Pools compared", "",
           "Per pool, on the same ratings as above: Krippendorff's alpha (ordinal) within the pool"
           + (" with its item-bootstrap 95% interval" if bootstrap else " (no interval: no bootstrap)")
           + "; gold accuracy (live gold controls within their expected range) and accuracy against "
           "the study's consensus (within one scale step of the item's median over every pool), with "
           "Wilson 95% intervals and counts; the share of finished submissions data cleansing uses; "
           "the median seconds per item; the cost per used rating.", ""]
    rows = [[f.pool, str(f.raters), str(f.items), str(f.ratings), format_coef(f.alpha),
             _share(f.gold_accuracy), _share(f.consensus_accuracy), _share(f.used_share),
             format_number(f.median_seconds, 1),
             format_number(None) if f.cost_per_used_rating is None
             else f"{f.cost_per_used_rating:.3f} {f.currency}"] for f in figures]
    out += _table(["Pool", "Raters", "Items", "Ratings", "Alpha (ordinal) [95% CI]", "Gold accuracy",
                   "Consensus accuracy", "Submissions used", "Median s/item", "Cost per used rating"],
                  rows) + [""]
    out += _pool_groups(figures, "Guideline version", [f.by_guideline for f in figures])
    out += _pool_groups(figures, "QA cohort", [f.by_qa for f in figures])
    return out
