"""The Analyst page: its tables, charts and exports (review.analysis) on a really rated study
(tests/support_analysis.py), checked against independent pandas / statsmodels computations, and
the page itself through AppTest."""

from __future__ import annotations

import html
import io
import json
import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.inter_rater import cohens_kappa
from streamlit.testing.v1 import AppTest

from db.models import User
from review.analysis import charts, export, formatting, html_report, tables
from review.analysis.export import ratings_frame
from review.analysis.report import build_report
from review.analysis.report_json import report_json
from review.analysis.report_types import rows
from review.config import load_settings
from review.database import Lab, open_lab
from review.labeling.assignment import next_assignment
from review.labeling.ratings import Submission, submit
from review.labeling.study import StudyConfig, ensure_study, get_study
from review.media.restore import RESTORERS, controls
from tests.support import make_study
from tests.support_analysis import N_REVIEWERS, RATERS_PER_ITEM, STUDY, rated_study
from tests.support_app import page_app, page_user


def _frame(lab: Lab) -> pd.DataFrame:
    with lab.sessions() as s:
        return ratings_frame(s, get_study(s, STUDY))


@pytest.fixture(scope="module")
def ratings(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """The study's ratings, built once for the tests that only read them."""
    lab = open_lab(load_settings({"REVIEW_DATA_DIR": str(tmp_path_factory.mktemp("analyst"))}),
                   migrate=True)
    rated_study(lab)
    df = _frame(lab)
    lab.engine.dispose()
    return df


@dataclass
class RatedLab:
    """A fresh lab holding the rated study (for the page, which reads the database) and its ratings."""

    lab: Lab
    frame: pd.DataFrame


@pytest.fixture
def rated(lab: Lab) -> RatedLab:
    rated_study(lab)
    return RatedLab(lab, _frame(lab))


# --------------------------------------------------------------------------------------------
# Tables, charts and exports
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_study_has_the_designed_shape(ratings):
    df = ratings
    assert len(df) == 60 * RATERS_PER_ITEM and df["item"].nunique() == 60
    assert set(df["guideline_version"]) == {"fid v1", "fid v3"}
    assert set(df["qa_cohort"]) == {"qa", "no_qa"}
    assert df["rater"].nunique() == N_REVIEWERS


def test_mos_by_level_equals_pandas_groupby_of_item_means(ratings):
    df = ratings
    got = tables.mos_by_level(df)
    items = df.groupby("item").agg(mos=("score", "mean"), n=("score", "size"),
                                   blur_kind=("blur_kind", "first"), restorer=("restorer", "first"),
                                   strength=("strength", "first"), blur_level=("blur_level", "first"))
    items["strength"] = items["strength"].astype(float)
    want = (items.groupby(["blur_kind", "restorer", "strength", "blur_level"], dropna=False)
            .agg(mos=("mos", "mean"), sd=("mos", "std"), n_items=("mos", "size"), n_ratings=("n", "sum"))
            .reset_index())
    # 2 kinds x 3 levels x 3 restorer variants + hidden reference at level 2 of each kind
    assert len(got) == len(want) == 2 * 3 * 3 + 2
    merged = got.merge(want, on=["blur_kind", "restorer", "strength", "blur_level"], how="outer",
                       suffixes=("", "_pd"), indicator=True)
    assert (merged["_merge"] == "both").all()
    np.testing.assert_allclose(merged["mos"], merged["mos_pd"], rtol=0, atol=1e-12)
    assert (merged["n_items"] == merged["n_items_pd"]).all()
    assert (merged["n_ratings"] == merged["n_ratings_pd"]).all()
    half = 1.96 * merged["sd"] / np.sqrt(merged["n_items"])
    np.testing.assert_allclose(merged["mos_ci_high"] - merged["mos"], half, atol=1e-12)
    # strengths differ for sd15 only, so only its series names carry the strength
    assert set(got["series"]) == {"wiener", "hidden_reference", "sd15_img2img (strength 0.3)",
                                  "sd15_img2img (strength 0.6)"}
    # the designed trend survives rating noise: wiener MOS falls with blur level
    w = got[(got["series"] == "wiener") & (got["blur_kind"] == "defocus")].sort_values("blur_level")
    assert w["mos"].is_monotonic_decreasing


def test_mos_chart_is_a_faceted_line_with_ci_band(ratings):
    df = ratings
    spec = charts.mos_chart(tables.mos_by_level(df)).to_dict()
    # panels wrap (two a row, 300 px each) instead of one row that runs off the page
    assert spec["facet"]["field"] == "blur_kind" and spec["columns"] == charts.FACET_COLUMNS == 2
    assert spec["spec"]["width"] == charts.FACET_WIDTH == 300
    marks = [layer["mark"]["type"] if isinstance(layer["mark"], dict) else layer["mark"]
             for layer in spec["spec"]["layer"]]
    assert marks == ["area", "line"]
    band, line = spec["spec"]["layer"]
    assert band["encoding"]["y2"]["field"] == "mos_ci_high"
    # the score axis is the rating scale: clamped, not rounded past it, padded off the edges
    y = line["encoding"]["y"]["scale"]
    assert (y["domain"], y["clamp"], y["nice"]) == ([1.0, 5.0], True, False)
    assert y["padding"] == charts.EDGE_PADDING
    assert band["encoding"]["y"]["scale"] == y and band["mark"]["clip"] is True


def test_mos_chart_clips_intervals_to_the_scale_and_fills_a_single_panel():
    frame = pd.DataFrame({"series": ["wiener"] * 2, "blur_kind": ["defocus"] * 2, "blur_level": [2.0, 6.0],
                          "mos": [5.0, 1.2], "mos_ci_low": [4.6, 0.4], "mos_ci_high": [5.4, 2.0],
                          "n_items": [3, 3], "n_ratings": [9, 9]})
    spec = charts.mos_chart(frame, (1, 5)).to_dict()
    assert spec["width"] == "container"  # one kind: the chart takes the container's width
    (data,) = spec["datasets"].values()
    assert [(r["mos_ci_low"], r["mos_ci_high"]) for r in data] == [(4.6, 5.0), (1.0, 2.0)]
    assert frame["mos_ci_high"].tolist() == [5.4, 2.0]  # the table keeps the computed numbers
    assert spec["layer"][1]["encoding"]["y"]["axis"]["values"] == [1, 2, 3, 4, 5]
    assert charts.agreement_chart(pd.DataFrame({"group": ["a"], "alpha_ordinal": [0.5],
                                                "alpha_ordinal_ci_low": [0.4], "alpha_ordinal_ci_high": [0.6],
                                                "n_items": [30], "n_raters": [3]}), "content"
                                  ).to_dict()["width"] == "container"


def test_kappa_heatmap_frame_has_one_row_per_pair_with_report_values(ratings):
    df = ratings
    report = build_report(df, bootstrap=50, seed=1)
    frame = tables.kappa_pairs(report, "quadratic")
    pairs = {(p.rater_a, p.rater_b): p for p in report.pairwise_kappa}
    assert len(frame) == len(pairs) == math.comb(N_REVIEWERS, 2)
    assert not frame.duplicated(["rater_a", "rater_b"]).any()
    for row in frame.itertuples():
        p = pairs[(row.rater_a, row.rater_b)]
        assert row.kappa == p.quadratic.value and row.n_items == p.n_items
        assert (row.kappa_ci_low, row.kappa_ci_high) == p.quadratic.ci95
    # one pair against statsmodels' weighted kappa on the 5 x 5 table of the shared items
    a, b = frame.iloc[0]["rater_a"], frame.iloc[0]["rater_b"]
    wide = df.pivot_table(index="item", columns="rater", values="score")[[a, b]].dropna()
    table = pd.crosstab(wide[a], wide[b]).reindex(index=range(1, 6), columns=range(1, 6), fill_value=0)
    ref = cohens_kappa(table.to_numpy(), wt="quadratic").kappa
    assert frame.iloc[0]["kappa"] == pytest.approx(ref, abs=1e-12)
    chart = charts.kappa_heatmap(frame).to_dict()
    data = next(iter(chart["datasets"].values()))
    assert len(data) == 2 * len(frame)  # mirrored: symmetric heatmap


def test_breakdowns_and_comparisons_follow_the_report(ratings):
    df = ratings
    report = build_report(df, bootstrap=100, seed=2)
    gv = tables.breakdown_frame(report, "guideline_version")
    assert list(gv["group"]) == ["fid v1", "fid v3"]
    for row, g in zip(gv.itertuples(), report.breakdowns["guideline_version"], strict=True):
        assert row.alpha_ordinal == g.alpha_ordinal.value
        assert (row.alpha_ordinal_ci_low, row.alpha_ordinal_ci_high) == g.alpha_ordinal.ci95
        assert row.n_ratings == g.n_ratings
        assert row.n_multiply_rated == g.alpha_ordinal.n_items
    # the group's ratings really are the guideline's ratings
    assert gv["n_ratings"].tolist() == df.groupby("guideline_version").size().tolist()
    cmp = tables.comparison_frame(report, "qa_cohort")
    (c,) = [c for c in report.comparisons if c.column == "qa_cohort"]
    assert cmp.iloc[0]["alpha_diff"] == c.alpha_ordinal_diff.value
    assert cmp.iloc[0]["comparison"] == f"{c.group_a} − {c.group_b}"
    assert cmp.iloc[0]["alpha_diff_ci_low"] < cmp.iloc[0]["alpha_diff"] < cmp.iloc[0]["alpha_diff_ci_high"]
    views = {v.key: v for v in charts.build_views(report, df)}
    keys = list(views)
    # 6 hidden-reference items and 18 wiener items: too few for alpha, and the view says so
    assert views["agreement_by_restorer"].notes == [
        "Groups with fewer than 20 multiply-rated items (hidden_reference, wiener): their alpha is "
        "mostly noise."]
    assert not views["agreement_by_guideline_version"].notes
    assert keys[:4] == ["agreement_by_guideline_version", "comparison_guideline_version",
                        "agreement_by_qa_cohort", "comparison_qa_cohort"]
    assert {"mos_by_level", "raters", "pairwise_kappa", "gold_accuracy"} <= set(keys)


def test_rater_and_gold_frames(ratings):
    df = ratings
    report = build_report(df)
    raters = tables.rater_frame(report)
    assert len(raters) == N_REVIEWERS
    for row, p in zip(raters.itertuples(), rows(report.per_rater), strict=True):
        assert row.bias == pytest.approx(p["bias"]) and row.bt500_rejected == p["bt500_rejected"]
        assert (row.status != "not flagged") == (p["bt500_rejected"] or p["inconsistency_at_floor"])
    gold = tables.gold_by_rater(report).set_index("rater")
    g = df[df["is_gold"]]
    ok = (g["score"] >= g["expected_min"]) & (g["score"] <= g["expected_max"])
    want = ok.groupby(g["rater"]).mean()
    for rater, acc in want.items():
        assert gold.loc[rater, "gold_accuracy"] == pytest.approx(acc)
        assert gold.loc[rater, "gold_n"] == int((g["rater"] == rater).sum())


def test_filters(ratings):
    df = ratings
    opts = tables.filter_options(df)
    assert opts["guideline_version"] == ["fid v1", "fid v3"] and opts["content"] == ["face", "text"]
    f = tables.Filters.of({"guideline_version": ["fid v3"], "content": []}, (2.0, 6.0), exclude_gold=True)
    out = tables.apply_filters(df, f)
    want = df[(df["guideline_version"] == "fid v3") & df["blur_level"].between(2, 6) & ~df["is_gold"]]
    assert len(out) == len(want) > 0
    assert set(out["restorer"]) == {"wiener", "sd15_img2img"}
    assert f.describe() == ["guideline version: fid v3", "blur level: 2 to 6",
                            "gold and control items excluded"]
    assert tables.Filters.of({"content": ["text", "face"]}) == \
        tables.Filters.of({"content": ["face", "text"]})
    with pytest.raises(ValueError, match="cannot filter"):
        tables.Filters.of({"score": ["5"]})


def test_controls_come_from_the_restorer_registry():
    """One list of controls (each restorer class's `control`, read through
    review.media.restore.controls()): the filter that leaves them out and the study that makes them
    gold read it."""
    names = list(controls())
    assert set(names) == {"blurred", "hidden_reference"} and set(names) <= set(RESTORERS)
    df = pd.DataFrame({"restorer": [*names, "wiener"], "is_gold": [False] * (len(names) + 1)})
    assert tables.is_control(df).tolist() == [True] * len(names) + [False]


def test_percent_agreement_only_beside_a_chance_corrected_coefficient(ratings):
    df = ratings
    full = tables.headline_frame(build_report(df))
    assert "Percent agreement (not chance-corrected)" in set(full["figure"])
    once = df.drop_duplicates("item")  # every item rated once: nothing chance-corrected
    report = build_report(once)
    frame = tables.headline_frame(report)
    assert not tables.has_chance_corrected(report)
    assert not any("Percent" in f for f in frame["figure"])
    assert frame["value"].isna().all() and frame["reason"].notna().all()
    assert formatting.format_coef(report.fleiss_kappa).startswith("— (")
    assert formatting.format_number(float("nan")) == "—"


def test_exports_round_trip(ratings):
    df = ratings
    back = pd.read_parquet(io.BytesIO(export.ratings_bytes(df, "parquet")))
    assert len(back) == len(df) and back["score"].tolist() == df["score"].tolist()
    lines = export.ratings_bytes(df, "jsonl").decode().splitlines()
    assert len(lines) == len(df) and json.loads(lines[0])["rater"] == df["rater"].iloc[0]
    csv = pd.read_csv(io.BytesIO(export.ratings_bytes(df, "csv")))
    assert csv["item"].tolist() == df["item"].tolist()
    matrix = pd.read_csv(io.BytesIO(export.matrix_csv(df)), index_col=0)
    assert matrix.shape == (60, N_REVIEWERS) and int(matrix.notna().sum().sum()) == len(df)
    report = build_report(df)
    assert json.loads(report_json(report))["n_ratings"] == len(df)


def test_html_report_is_escaped_and_carries_the_tables(ratings):
    df = ratings
    report = build_report(df, bootstrap=50)
    views = charts.build_views(report, df)
    page = html_report.html_report(report, views, title=f"Agreement report: {STUDY}",
                          context=["Filters: <b>none</b>"])
    assert "Blur &lt;study&gt; &amp; co" in page and "<study>" not in page
    assert "&lt;b&gt;none&lt;/b&gt;" in page
    assert "rater&lt;0&gt;" in page and "rater<0>" not in page
    # every view's table, plus the headline and ICC tables
    markup = re.sub(r"<script>.*?</script>", "", page, flags=re.S)  # the embedded vega code aside
    assert markup.count("<table") == len(views) + 2
    for v in views:
        assert f"<h2 id='{v.key}'>{html.escape(v.title)}</h2>" in page
    # opens offline: the pinned scripts are inline, nothing is loaded from a URL
    assert not re.search(r"<script[^>]*\bsrc\s*=", page, re.I)
    assert "cdn.jsdelivr" not in page and "vega-embed 7.3.0" in page
    # the numbers are in the tables as text (offline reading); no NaN anywhere
    alpha = report.krippendorff_alpha.ordinal.value
    assert f"{alpha:.3f}" in page
    specs_and_markup = markup + re.findall(r"<script>(.*?)</script>", page, re.S)[-1]
    assert not re.search(r">\s*nan\s*<", markup, re.I) and "NaN" not in specs_and_markup
    # chart specs are embedded as JSON that cannot close the script element early
    scripts = re.findall(r"<script>(.*?)</script>", page, re.S)
    assert len(scripts) == 1 + len(html_report.VENDORED) and "</" not in scripts[-1]
    assert [s.split("\n", 1)[0] for s in scripts[:3]] == [
        "/* vega 6.4.0, BSD-3-Clause */", "/* vega-lite 6.4.1, BSD-3-Clause */",
        "/* vega-embed 7.3.0, BSD-3-Clause */"]
    specs = re.findall(r"vegaEmbed\('#chart-\d+', (\{.*\}), \{actions: false\}\)", scripts[-1])
    assert len(specs) == sum(v.chart is not None for v in views)
    assert all(json.loads(s)["$schema"].startswith("https://vega.github.io/schema/vega-lite/")
               for s in specs)


# --------------------------------------------------------------------------------------------
# The page through AppTest
# --------------------------------------------------------------------------------------------

def _metric(at: AppTest, label: str) -> str:
    (m,) = [m for m in at.metric if m.label == label]
    return m.value


@pytest.mark.slow
def test_page_shows_headline_charts_and_follows_new_ratings(rated):
    lab, df = rated.lab, rated.frame
    at = page_app("analyst_page", page_user("admin")).run()
    assert not at.exception, at.exception
    assert at.selectbox(key="analyst_study").value is not None
    assert _metric(at, "Ratings") == str(len(df)) and _metric(at, "Raters") == str(N_REVIEWERS)
    report = build_report(df)
    assert _metric(at, "Alpha (ordinal)") == f"{report.krippendorff_alpha.ordinal.value:.3f}"
    assert _metric(at, "Fleiss' kappa") == f"{report.fleiss_kappa.value:.3f}"
    for form, c in report.icc.items():
        assert _metric(at, form) == f"{c.value:.3f}"
    assert "Percent agreement" in [m.label for m in at.metric]
    assert not any("nan" in m.value.lower() for m in at.metric)
    warnings = " ".join(m.value for e in at.expander if "warning" in e.label
                        for m in e.markdown).replace("\\", "")  # markdown escapes
    assert "rater pairs share fewer than 20 items" in warnings
    subheaders = [h.value for h in at.subheader]
    assert "Agreement by guideline version" in subheaders and "Exports" in subheaders
    assert "Rater-pair agreement (quadratic weighted kappa)" in subheaders

    # a filter: one guideline version only
    at.multiselect(key=f"analyst_guideline_version_{_study_id(lab)}").set_value(["fid v1"]).run()
    assert not at.exception, at.exception
    assert _metric(at, "Ratings") == str(int((df["guideline_version"] == "fid v1").sum()))

    # bootstrap on: intervals appear under the coefficients
    at.number_input(key="analyst_boot").set_value(100).run()
    assert not at.exception, at.exception
    assert any(c.value.startswith("95% CI [") for c in at.caption)

    # a new rating changes the fingerprint, so the cached report is recomputed
    with lab.sessions() as s, s.begin():
        study = get_study(s, STUDY)
        uid = _new_reviewer(s)
        study.raters_per_item = RATERS_PER_ITEM + 1  # room for one more rating per item
        lease = next_assignment(s, study, uid)
        assert lease is not None
        submit(s, lease.assignment_id, uid, Submission(3))
        gv = ratings_frame(s, study)["guideline_version"]
    at.run()
    assert not at.exception, at.exception
    assert _metric(at, "Ratings") == str(int((gv == "fid v1").sum()))
    assert _metric(at, "Raters") in (str(N_REVIEWERS // 2), str(N_REVIEWERS // 2 + 1))


def _study_id(lab: Lab) -> int:
    with lab.sessions() as s:
        return get_study(s, STUDY).id


def _new_reviewer(s) -> int:  # noqa: ANN001 - a Session
    u = User(username="late", role="reviewer", password_hash="x")
    s.add(u)
    s.flush()
    return u.id


@pytest.mark.parametrize("role", ["reviewer", "qa"])
def test_page_stops_non_admins(lab, role):
    with lab.sessions() as s, s.begin():
        ensure_study(s, StudyConfig(name="secret"), None)
    at = page_app("analyst_page", page_user(role)).run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == ["The Analysis page is only available to admins."]
    assert not at.metric and not at.selectbox and not at.info and not at.title


def test_page_without_studies_or_ratings(lab):
    at = page_app("analyst_page", page_user("admin")).run()
    assert not at.exception and "No studies yet" in at.info[0].value
    with lab.sessions() as s, s.begin():
        ensure_study(s, StudyConfig(name="empty"), None)
    at.run()
    assert not at.exception and "has no ratings yet" in at.info[0].value


def test_page_with_too_few_items_and_no_gold_says_figures_are_noise(lab):
    with lab.sessions() as s, s.begin():
        made = make_study(s, 4, raters_per_item=2, n_reviewers=2, name="tiny")
        study, users = made.study, made.reviewers
        for u in users:
            while (lease := next_assignment(s, study, u.id)) is not None:
                submit(s, lease.assignment_id, u.id, Submission(4 if lease.item_id % 2 else 2))
        df = ratings_frame(s, study)
    # no gold item: expected_min/max are empty and the gold columns are left out of the report
    assert df["expected_min"].isna().all()
    assert {"is_gold", "expected_min", "expected_max"}.isdisjoint(tables.report_input(df).columns)
    assert build_report(tables.report_input(df)).per_rater.gold is None
    at = page_app("analyst_page", page_user("admin")).run()
    assert not at.exception, at.exception
    # the report's warnings: one collapsed note with a count per kind, not boxes above the figures
    groups = tables.group_warnings(build_report(tables.report_input(df)).warnings)
    (note,) = [e for e in at.expander if e.label == tables.warnings_summary(groups)]
    assert note.proto.expanded is False
    # inert text: Markdown escapes and character references, read back as the page shows them
    inside = html.unescape(" ".join(m.value for m in note.markdown).replace("\\", ""))
    assert "Only 4 items have two or more ratings (< 20)" in inside and "mostly noise" in inside
    assert not any("Only 4 items" in w.value.replace("\\", "") for w in at.warning)
    assert not any("nan" in m.value.lower() for m in at.metric)


def test_report_warnings_are_grouped_by_kind_with_counts():
    warnings = [
        "Only 4 items have two or more ratings (< 20): agreement figures are mostly noise.",
        "Fleiss' kappa rests on only 4 items (< 20).",
        "3 of 6 listed rater pairs share fewer than 20 items: their kappas are mostly noise.",
        "Breakdown by content: 2 of 2 groups have fewer than 20 multiply-rated items.",
        "Breakdown by restorer: 3 of 3 groups have fewer than 20 multiply-rated items.",
        "2 rows without a score were ignored.",
        "DMOS: no item has a rater who also rated its hidden reference.",
        "Something new.",
    ]
    groups = tables.group_warnings(warnings)
    assert [(k, len(v)) for k, v in groups] == [
        ("rater pairs", 1), ("breakdowns", 2), ("rows left out", 1), ("controls", 1),
        ("few items behind a figure", 2), ("other", 1)]
    assert sorted(w for _, v in groups for w in v) == sorted(warnings)  # none lost
    assert tables.warnings_summary(groups) == (
        "8 warnings: 1 rater pairs, 2 breakdowns, 1 rows left out, 1 controls, "
        "2 few items behind a figure, 1 other")
    assert tables.group_warnings([]) == []

