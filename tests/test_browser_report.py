"""The HTML report in Debian's Chromium with the network cut off: the embedded vega scripts draw
every chart, and every chart fits the page at 1366 and 1920 px (nothing wider than its box)."""

from __future__ import annotations

import pandas as pd
import pytest

from review.analysis.charts import View, build_views, mos_chart
from review.analysis.export import ratings_frame
from review.analysis.html_report import html_report
from review.analysis.report import build_report
from review.labeling.study import get_study
from tests.support_analysis import STUDY, rated_study
from tests.support_browser import chromium_page


@pytest.mark.parametrize("width", [1366, 1920])
def test_report_draws_every_chart_offline_and_each_fits(tmp_path, width, chromium, lab):
    rated_study(lab)
    with lab.sessions() as s:
        df = ratings_frame(s, get_study(s, STUDY))
    lab.engine.dispose()
    report = build_report(df)
    views = build_views(report, df)
    # the headline chart with all four blur kinds: one row of panels would run off the page
    kinds = pd.DataFrame([{"series": f"restorer {r}", "blur_kind": k, "blur_level": lv,
                           "mos": 5.0 - lv / 4 - r / 2, "mos_ci_low": 4.6 - lv / 4 - r / 2,
                           "mos_ci_high": 5.4 - lv / 4 - r / 2, "n_items": 3, "n_ratings": 9}
                          for k in ("defocus", "gaussian", "motion_line", "camera_shake")
                          for r in range(3) for lv in (1.0, 4.0, 8.0)])
    views.append(View("mos_four_kinds", "MOS, four blur kinds", "", kinds, mos_chart(kinds)))
    n_charts = sum(v.chart is not None for v in views)
    path = tmp_path / "report.html"
    path.write_text(html_report(report, views, title="offline"), encoding="utf-8")

    asked: list[str] = []
    with chromium_page(viewport=(width, 900)) as page:
        def only_the_file(route) -> None:  # noqa: ANN001 - playwright Route
            asked.append(route.request.url)
            if route.request.url.startswith("file:"):
                route.continue_()
            else:
                route.abort()

        page.route("**/*", only_the_file)
        page.goto(path.as_uri())
        page.wait_for_function(
            f"document.querySelectorAll('.chart canvas, .chart svg.marks').length === {n_charts}")
        sizes = page.evaluate("""() => [...document.querySelectorAll('.chart')].map(div => {
            const drawn = div.querySelector('canvas, svg.marks').getBoundingClientRect();
            const box = div.getBoundingClientRect();
            return {id: div.id, drawn: [drawn.left, drawn.right, drawn.height], box: [box.left, box.right]};
        })""")
        page_width = page.evaluate("document.documentElement.clientWidth")
        overflow = page.evaluate("document.documentElement.scrollWidth")
    assert [u for u in asked if not u.startswith("file:")] == []
    assert len(sizes) == n_charts >= 5
    for s in sizes:
        (left, right, height), (box_left, box_right) = s["drawn"], s["box"]
        assert height > 50, s  # drawn, not an empty element
        assert box_left - 1 <= left and right <= box_right + 1, s  # inside its box: nothing cut off
    assert overflow <= page_width  # no horizontal scrolling
