"""The readable HTML report of the Analyst page: headline, warnings, every chart and the numbers
behind it, in one standalone file.

Charts are Vega-Lite specs drawn by vega-embed; vega, vega-lite and vega-embed are embedded in
the file (pinned copies in review/analysis/vendor/), so the report opens and draws offline. Every
figure is also an HTML table. All text from the data is escaped.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache
from importlib import resources

import pandas as pd

from review.analysis.charts import TopChart, View
from review.analysis.formatting import MISSING, format_number
from review.analysis.report_types import Report
from review.analysis.tables import has_chance_corrected, headline_frame, icc_frame

#: The embedded scripts, in load order, and the pinned versions (review/analysis/vendor/README.md).
VENDORED = {"vega.min.js": "vega 6.4.0", "vega-lite.min.js": "vega-lite 6.4.1",
            "vega-embed.min.js": "vega-embed 7.3.0"}

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


def html_table(frame: pd.DataFrame, digits: int = 3) -> str:
    if frame.empty:
        return "<p class='note'>No rows.</p>"
    out = frame.copy()
    for c in out.columns:
        if pd.api.types.is_float_dtype(out[c]):
            out[c] = [format_number(v, digits) for v in out[c]]
        else:
            out[c] = [MISSING if v is None or (isinstance(v, float) and math.isnan(v)) else v
                      for v in out[c]]
    return "<div class='scroll'>" + out.to_html(index=False, escape=True, border=0, na_rep=MISSING) + "</div>"


def _spec_json(chart: TopChart) -> str:
    """The chart's Vega-Lite spec as JSON safe inside a <script> element."""
    s = json.dumps(chart.to_dict(), allow_nan=False)
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@cache
def vendored_scripts() -> str:
    """The pinned vega, vega-lite and vega-embed builds as inline <script> elements (about 830 kB),
    so that a report drawn on an air-gapped machine, or years from now, still draws its charts."""
    vendor = resources.files("review.analysis") / "vendor"
    parts = []
    for name, version in VENDORED.items():
        code = (vendor / name).read_text(encoding="utf-8").replace("</script", "<\\/script")
        parts.append(f"<script>/* {version}, BSD-3-Clause */\n{code}\n</script>")
    return "\n".join(parts)


def html_report(report: Report, views: Sequence[View], *, title: str,
                context: Sequence[str] = (), answer_sections: Sequence[str] = ()) -> str:
    """A standalone HTML report: headline, warnings, every chart and the numbers behind it.

    Charts are Vega-Lite specs drawn by the embedded vega-embed (no network needed); every figure
    is also an HTML table. All text is escaped. `answer_sections` are HTML parts the answer
    renders itself (review.answer.sentences.answer_html), placed after the agreement tables.
    """
    e = html.escape
    parts = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
             f"<title>{e(title)}</title>", f"<style>{_CSS}</style>",
             vendored_scripts(),
             "</head><body>", f"<h1>{e(title)}</h1>"]
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(f"<p class='note'>Generated {e(generated)}. Charts are drawn by the embedded "
                 f"{e(', '.join(VENDORED.values()))}; no network is needed. The table under each "
                 f"chart holds the same numbers.</p>")
    if context:
        parts.append("<ul>" + "".join(f"<li>{e(str(c))}</li>" for c in context) + "</ul>")
    lo, hi = report.scale
    parts.append(f"<p>{report.n_ratings} ratings of {report.n_items} items by {report.n_raters} "
                 f"raters; {report.n_multiply_rated_items} items rated two or more times; scale "
                 f"{lo}..{hi}.</p>")
    if report.ratings_read is not None:
        parts.append(f"<p><strong>{e(report.ratings_read.sentence())}</strong></p>")
    boot = report.bootstrap
    parts.append("<p class='note'>" + e(
        f"95% intervals: percentile bootstrap over items, {boot.resamples} resamples, seed "
        f"{boot.seed}; ICC intervals from the F distribution." if boot.resamples
        else "No bootstrap resamples: alpha, kappa and percent agreement have no interval; ICC "
             "intervals come from the F distribution.") + "</p>")
    if report.warnings:
        parts.append("<h2>Warnings</h2>")
        parts += [f"<div class='warn'>{e(w)}</div>" for w in report.warnings]
    parts.append("<h2>Agreement</h2>")
    parts.append(html_table(headline_frame(report)))
    if not has_chance_corrected(report):
        parts.append("<p class='note'>Percent agreement is not shown: no chance-corrected "
                     "coefficient could be computed to read it beside.</p>")
    parts.append("<h3>Intraclass correlation (Shrout &amp; Fleiss)</h3>")
    parts.append(html_table(icc_frame(report)))
    if report.notes:
        parts.append("<p class='note'>Method notes:</p><ul class='note'>"
                     + "".join(f"<li>{e(n)}</li>" for n in report.notes) + "</ul>")
    parts += answer_sections
    shown = list(views)
    if report.pools:  # a crowd study's pools compared come first (review.analysis.pools_report)
        from review.analysis.pools_report import pools_views

        shown = pools_views(report.pools) + shown
    scripts = []
    for i, v in enumerate(shown):
        parts.append(f"<h2 id='{e(v.key)}'>{e(v.title)}</h2>")
        parts.append(f"<p class='note'>{e(v.caption)}</p>")
        parts += [f"<div class='warn'>{e(n)}</div>" for n in v.notes]
        if v.chart is not None:
            parts.append(f"<div class='chart' id='chart-{i}'></div>")
            scripts.append(f"vegaEmbed('#chart-{i}', {_spec_json(v.chart)}, {{actions: false}})"
                           ".catch(function () {});")
        elif v.empty:
            parts.append(f"<p class='note'>{e(v.empty)}</p>")
        parts.append(html_table(v.frame))
    if scripts:
        parts.append("<script>if (typeof vegaEmbed !== 'undefined') {\n" + "\n".join(scripts)
                     + "\n}</script>")
    parts.append("</body></html>")
    return "\n".join(parts)
