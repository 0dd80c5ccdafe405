"""The statistics report as readable Markdown tables (the CLI's `stats` output and the Analyst
page's Markdown download); long tables are truncated, the JSON report keeps everything.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from review.analysis.formatting import format_ci, format_coef, format_number
from review.analysis.report import ICC_LABELS


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def esc(s: str) -> str:
        return str(s).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(esc(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return lines


def report_to_markdown(report: dict[str, Any], *, max_item_rows: int = 50,
                       max_pair_rows: int = 100) -> str:
    """Readable Markdown tables of a :func:`build_report` dict (long tables are truncated)."""
    out: list[str] = ["# Rating agreement report", ""]
    out.append(f"{report['n_ratings']} ratings of {report['n_items']} items by "
               f"{report['n_raters']} raters ({report.get('n_multiply_rated_items', 0)} items "
               f"rated two or more times), scale {report['scale'][0]}..{report['scale'][1]}.")
    boot = report.get("bootstrap", {})
    if boot.get("resamples"):
        out.append(f"95% intervals: percentile bootstrap over items, {boot['resamples']} "
                   f"resamples, seed {boot['seed']} (ICC: F distribution).")
    else:
        out.append("No bootstrap intervals were requested (ICC intervals use the F "
                   "distribution).")
    out.append("")
    if report.get("warnings"):
        out += ["## Warnings", ""] + [f"- {w}" for w in report["warnings"]] + [""]

    out += ["## Agreement", ""]
    ka = report["krippendorff_alpha"]
    rows = [
        ["Krippendorff's alpha (ordinal)", format_coef(ka["ordinal"]),
         format_number(ka["ordinal"].get("n_items"))],
        ["Krippendorff's alpha (interval)", format_coef(ka["interval"]),
         format_number(ka["interval"].get("n_items"))],
        ["Krippendorff's alpha (nominal)", format_coef(ka["nominal"]),
         format_number(ka["nominal"].get("n_items"))],
        ["Fleiss' kappa", format_coef(report["fleiss_kappa"]),
         format_number(report["fleiss_kappa"].get("n_items"))],
        ["Percent agreement (not chance-corrected)", format_coef(report["percent_agreement"]),
         format_number(report["percent_agreement"].get("n_items"))],
    ]
    out += _table(["Coefficient", "Value [95% CI]", "Items"], rows)
    out += ["", "Percent agreement is inflated when one score dominates; read it next to the "
            "chance-corrected coefficients above.", ""]
    out += ["### Intraclass correlation (Shrout & Fleiss)", ""]
    out += _table(["Form", "Meaning", "Value [95% CI]", "Items"],
                  [[f, ICC_LABELS[f], format_coef(c), format_number(c.get("n_items"))]
                   for f, c in report["icc"].items()])
    out.append("")
    if report.get("notes"):
        out += ["Method notes:", ""] + [f"- {n}" for n in report["notes"]] + [""]

    pk = report.get("pairwise_kappa", [])
    ps = report.get("pairwise_kappa_summary")
    if ps and ps["n_rater_pairs"]:
        skip, dist = ps["skipped"], ps["distribution"]["quadratic"]
        out += ["### Cohen's kappa per rater pair", "",
                f"{ps['n_pairs_computed']} of {ps['n_rater_pairs']} rater pairs have a kappa; "
                f"skipped: {skip['fewer_shared_items']} sharing fewer than "
                f"{ps['min_shared_items']} items, {skip['over_budget']} beyond the memory budget, "
                f"{skip['kappa_undefined']} with kappa undefined (one score only)."]
        if dist["n_pairs"]:
            out[-1] += (f" Quadratic kappa: median {format_number(dist['median'])}, quartiles "
                        f"{format_number(dist['q25'])} to {format_number(dist['q75'])}, range "
                        f"{format_number(dist['min'])} to {format_number(dist['max'])}.")
        out.append("")
    if pk:
        rows = [[format_number(p["rater_a"]), format_number(p["rater_b"]), str(p["n_items"]),
                 format_coef(p["unweighted"]), format_coef(p["linear"]), format_coef(p["quadratic"])]
                for p in pk[:max_pair_rows]]
        out += _table(["Rater A", "Rater B", "Shared items", "Unweighted", "Linear",
                       "Quadratic"], rows)
        if len(pk) > max_pair_rows:
            out.append(f"\n… {len(pk) - max_pair_rows} more pairs in the JSON report.")
        out.append("")

    pr = report.get("per_rater", [])
    if pr:
        out += ["## Raters", "",
                "Bias and inconsistency: ITU-T P.910 subject model (maximum likelihood). "
                "BT.500: observer screening of ITU-R BT.500 A1-2.3.1 (P above, Q below the "
                "band). DS: Dawid-Skene estimate of how often the rater gives the true score.",
                ""]
        has_gold = "gold_accuracy" in pr[0]
        header = ["Rater", "Ratings", "Mean", "Bias [95% CI]", "Inconsistency",
                  "BT.500 P/Q", "BT.500 rejected", "DS accuracy"]
        if has_gold:
            header += ["Gold accuracy [95% CI]"]
        rows = []
        for p in pr:
            row = [format_number(p["rater"]), str(p["n_ratings"]), format_number(p["mean_score"], 2),
                   f"{format_number(p['bias'], 2)} {format_ci(p['bias_ci95'])}",
                   format_number(p["inconsistency"], 2)
                   + (" (floor)" if p.get("inconsistency_at_floor") else ""),
                   f"{p['bt500_p']}/{p['bt500_q']}",
                   format_number(p["bt500_rejected"]), format_number(p.get("ds_accuracy"), 2)]
            if has_gold:
                row.append(f"{format_number(p['gold_accuracy'], 2)} "
                           f"{format_ci(p['gold_accuracy_ci95'])} (n={p['gold_n']})")
            rows.append(row)
        out += _table(header, rows) + [""]

    for col, groups in report.get("breakdowns", {}).items():
        if not groups:
            continue
        out += [f"## Breakdown by {col}", ""]
        has_gold = "gold_accuracy" in groups[0]
        header = ["Group", "Items", "Raters", "Ratings", "Alpha (ordinal) [95% CI]",
                  "MOS [95% CI]"] + (["Gold accuracy"] if has_gold else [])
        rows = []
        for g in groups:
            row = [format_number(g["group"]), str(g["n_items"]), str(g["n_raters"]),
                   str(g["n_ratings"]), format_coef(g["alpha_ordinal"]), format_coef(g["mos"], 2)]
            if has_gold:
                row.append(format_coef(g["gold_accuracy"], 2))
            rows.append(row)
        out += _table(header, rows) + [""]

    cmp_rows = report.get("comparisons", [])
    if cmp_rows:
        out += ["## Comparisons (A minus B)", ""]
        has_gold = "gold_accuracy_diff" in cmp_rows[0]
        header = ["Column", "A", "B", "Alpha (ordinal) difference [95% CI]"] + (
            ["Gold accuracy difference [95% CI]"] if has_gold else [])
        rows = []
        for c in cmp_rows:
            row = [c["column"], format_number(c["group_a"]), format_number(c["group_b"]),
                   format_coef(c["alpha_ordinal_diff"])]
            if has_gold:
                row.append(format_coef(c["gold_accuracy_diff"]))
            rows.append(row)
        out += _table(header, rows) + [""]
        if not boot.get("resamples"):
            out += ["Alpha differences have no interval without bootstrap resamples.", ""]

    items = report.get("per_item", [])
    if items:
        out += ["## Items", ""]
        shown = sorted(items, key=lambda it: (it["mos"] is None, it["mos"] or 0.0))
        shown = shown[:max_item_rows]
        has_dmos = "dmos" in items[0]
        header = ["Item", "Ratings", "MOS [95% CI]", "MLE quality"] + (
            ["DMOS"] if has_dmos else []) + ["DS label"]
        rows = []
        for it in shown:
            row = [format_number(it["item"]), str(it["n_ratings"]),
                   f"{format_number(it['mos'], 2)} {format_ci(it['mos_ci95'])}",
                   format_number(it["mle_quality"], 2)]
            if has_dmos:
                row.append(format_number(it["dmos"], 2))
            row.append(format_number(it.get("ds_label")))
            rows.append(row)
        if len(items) > max_item_rows:
            out.append(f"The {max_item_rows} items with the lowest MOS of {len(items)}; all "
                       f"items are in the JSON report.")
            out.append("")
        out += _table(header, rows) + [""]
    return "\n".join(out).rstrip() + "\n"
