"""The statistics report: shape, agreement with the reference libraries, robustness, Markdown,
and reading rating files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import krippendorff
import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss_kappa

from review.analysis import agreement as ag
from review.analysis.agreement import Coef
from review.analysis.formatting import format_ci, format_coef, format_number
from review.analysis.markdown_report import report_to_markdown
from review.analysis.ratings_file import RatingsFileError, read_ratings_file
from review.analysis.report import build_report
from review.analysis.report_json import report_dict, report_json
from review.analysis.report_types import Report, rows

TOP_KEYS = {"n_items", "n_raters", "n_ratings", "krippendorff_alpha", "fleiss_kappa", "icc",
            "pairwise_kappa", "percent_agreement", "warnings", "per_item", "per_rater",
            "breakdowns"}


def study(n_items: int = 80, n_raters: int = 6, missing: float = 0.15,
          seed: int = 0) -> pd.DataFrame:
    """A small study with every optional column: gold items, hidden references, breakdowns."""
    rng = np.random.default_rng(seed)
    quality = rng.uniform(1, 5, n_items)
    is_ref = np.arange(n_items) % 8 == 0
    quality[is_ref] = 4.8
    bias = np.linspace(-0.4, 0.4, n_raters)
    noise = np.linspace(0.6, 1.0, n_raters)
    item = np.repeat(np.arange(n_items), n_raters)
    rater = np.tile(np.arange(n_raters), n_items)
    score = np.clip(np.rint(quality[item] + bias[rater]
                            + noise[rater] * rng.standard_normal(item.size)), 1, 5).astype(int)
    keep = rng.random(item.size) >= missing
    item, rater, score = item[keep], rater[keep], score[keep]
    gold = (np.arange(n_items) % 10 == 3)[item]
    expected = np.clip(np.rint(quality[item]), 1, 5)
    return pd.DataFrame({
        "item": [f"img{i:03d}" for i in item],
        "rater": [f"r{j}" for j in rater],
        "score": score,
        "guideline_version": np.where(rater % 2 == 0, "v1", "v2"),
        "qa_cohort": np.where(rater < n_raters // 2, "qa", "no_qa"),
        "restorer": np.array(["sd15", "wiener"])[item % 2],
        "blur_level": np.array([4, 16])[(item // 2) % 2],
        "is_gold": gold,
        "expected_min": np.where(gold, expected - 1, np.nan),
        "expected_max": np.where(gold, expected + 1, np.nan),
        "reference_group": item // 8,
        "is_hidden_reference": is_ref[item],
    })


def wide(df: pd.DataFrame) -> np.ndarray:
    """raters x items matrix in the report's (sorted) id order, NaN where not rated."""
    return df.pivot(index="rater", columns="item", values="score").to_numpy(dtype=float)


def assert_coef(c: Coef) -> None:
    """A report's coefficient: a finite value (and interval), or no value and a reason; its JSON
    form has exactly the schema's keys."""
    if c.value is None:
        assert isinstance(c.reason, str) and c.reason and c.ci95 is None
        assert set(c.to_dict()) == {"value", "reason"}
    else:
        assert c.reason is None and math.isfinite(c.value) and isinstance(c.n_items, int)
        assert c.ci95 is None or (len(c.ci95) == 2 and c.ci95[0] <= c.ci95[1])
        assert set(c.to_dict()) == {"value", "ci95", "n_items"}


def all_coefs(report: Report) -> list[Coef]:
    out = [c for _, c in report.krippendorff_alpha.items()] + [c for _, c in report.icc.items()]
    out += [report.fleiss_kappa, report.percent_agreement]
    for p in report.pairwise_kappa:
        out += [p.unweighted, p.linear, p.quadratic]
    for groups in report.breakdowns.values():
        for g in groups:
            out += [g.alpha_ordinal, g.mos] + ([g.gold_accuracy] if g.gold_accuracy else [])
    for c in report.comparisons:
        out += [c.alpha_ordinal_diff] + ([c.gold_accuracy_diff] if c.gold_accuracy_diff else [])
    return out


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return study()


@pytest.fixture(scope="module")
def report(df: pd.DataFrame) -> Report:
    return build_report(df)


def test_report_shape_and_strict_json(report: Report) -> None:
    data = report_dict(report)
    assert TOP_KEYS <= set(data)
    assert set(data["krippendorff_alpha"]) == {"nominal", "ordinal", "interval"}
    assert set(data["icc"]) == {"ICC1", "ICC2", "ICC3", "ICC1k", "ICC2k", "ICC3k"}
    assert len(report.pairwise_kappa) == 15  # 6 raters
    assert {"rater_a", "rater_b", "unweighted", "linear", "quadratic"} <= set(
        data["pairwise_kappa"][0])
    for c in all_coefs(report):
        assert_coef(c)
    text = json.dumps(data, allow_nan=False)
    assert json.loads(text) == json.loads(report_json(report))
    assert set(report.breakdowns) == {"guideline_version", "qa_cohort", "restorer", "blur_level"}


def test_report_is_frozen_survives_the_page_cache_and_a_misspelt_name_fails(report: Report) -> None:
    """Readers take attributes: a wrong name raises instead of showing an empty table; the page's
    st.cache_data pickles the report."""
    import dataclasses
    import pickle

    from review.analysis.tables import breakdown_frame

    with pytest.raises(dataclasses.FrozenInstanceError):
        report.n_items = 0
    with pytest.raises(AttributeError):
        _ = report.krippendorf_alpha
    with pytest.raises(KeyError):
        breakdown_frame(report, "guideline")
    assert pickle.loads(pickle.dumps(report)) == report
    assert report_json(pickle.loads(pickle.dumps(report))) == report_json(report)


def test_report_values_equal_reference_libraries(df: pd.DataFrame, report: Report) -> None:
    x = wide(df)
    for level in ("nominal", "ordinal", "interval"):
        ref = krippendorff.alpha(reliability_data=x, level_of_measurement=level)
        assert report.krippendorff_alpha.level(level).value == pytest.approx(ref, abs=1e-12)
    assert report.n_items == 80 and report.n_raters == 6 and report.n_ratings == len(df)
    # Fleiss on the modal-count items, from the pivot
    counts = np.stack([(x == v).sum(axis=0) for v in range(1, 6)], axis=1)
    m = counts.sum(axis=1)
    freq = np.bincount(m[m >= 2])
    modal = np.flatnonzero(freq == freq.max()).max()  # documented rule: ties -> larger count
    ref_f = sm_fleiss_kappa(counts[m == modal])
    assert report.fleiss_kappa.value == pytest.approx(ref_f)
    assert report.fleiss_kappa.n_items == int((m == modal).sum())
    # one rater pair
    row = next(p for p in report.pairwise_kappa if (p.rater_a, p.rater_b) == ("r0", "r3"))
    both = ~np.isnan(x[0]) & ~np.isnan(x[3])
    for wt in ("unweighted", "linear", "quadratic"):
        ref = ag.cohen_kappa(x[0][both], x[3][both], wt, categories=[1, 2, 3, 4, 5])
        assert row.weighted(wt).value == pytest.approx(ref)
        assert row.weighted(wt).n_items == int(both.sum())
    # ICC on the complete table of the top-k raters (by number of ratings) that has the most
    # cells, rebuilt here by brute force from the pivot
    order = np.argsort(-(~np.isnan(x)).sum(axis=1), kind="stable")
    best = max((int((~np.isnan(x[order[:k]])).all(axis=0).sum()) * k, k)
                for k in range(2, 7))
    top = x[order[:best[1]]]
    table = top[:, ~np.isnan(top).any(axis=0)].T
    icc = ag.icc(table)
    reported = dict(report.icc.items())
    for form in ("ICC1", "ICC2", "ICC3k"):
        assert reported[form].value == pytest.approx(icc[form].value)
        assert reported[form].ci95 == pytest.approx(icc[form].ci95)
    assert report.icc.icc2.n_items == table.shape[0]
    assert any(f"x {best[1]} of 6 raters" in n for n in report.notes)
    # per item MOS with the 1.96 std / sqrt(n) interval
    g = df.groupby("item")["score"]
    items = report.per_item
    assert items.item[0] == "img000"
    assert items.mos[0] == pytest.approx(g.mean()["img000"])
    half = 1.96 * g.std()["img000"] / math.sqrt(g.size()["img000"])
    assert items.mos_ci95[0] == pytest.approx([items.mos[0] - half, items.mos[0] + half])
    # per rater
    raters = report.per_rater
    assert raters.dawid_skene is not None and raters.gold is not None
    assert raters.rater[0] == "r0" and raters.n_ratings[0] == int((df["rater"] == "r0").sum())
    assert raters.bias[0] < 0 < raters.bias[-1]  # generated bias -0.4 .. +0.4
    confusion = raters.dawid_skene.confusion[0]
    assert len(confusion) == 5 and len(confusion[0]) == 5
    assert raters.gold.n[0] > 0 and 0 <= raters.gold.accuracy[0] <= 1


def test_report_dmos_and_gold_columns(report: Report) -> None:
    items = {it["item"]: it for it in rows(report.per_item)}
    ref, pvs = items["img000"], items["img001"]
    assert ref["is_hidden_reference"] is True and ref["dmos"] is None
    assert pvs["dmos"] is not None and pvs["dmos_n"] >= 1
    assert pvs["reference_group"] == 0 and pvs["restorer"] == "wiener"
    assert "guideline_version" not in pvs  # varies within an item
    assert items["img003"]["is_gold"] is True and items["img003"]["gold_pass_rate"] is not None


def test_breakdowns_and_comparisons(df: pd.DataFrame) -> None:
    rep = build_report(df, bootstrap=200, seed=4)
    groups = {g.group: g for g in rep.breakdowns["restorer"]}
    assert set(groups) == {"sd15", "wiener"}
    sub = df[df["restorer"] == "sd15"]
    ref = krippendorff.alpha(reliability_data=wide(sub), level_of_measurement="ordinal")
    assert groups["sd15"].alpha_ordinal.value == pytest.approx(ref)
    ci = groups["sd15"].alpha_ordinal.ci95
    assert ci is not None and ci[0] < ref < ci[1]
    assert groups["sd15"].n_items + groups["wiener"].n_items == 80
    assert groups["sd15"].mos.n_items == 40
    cmp = [c for c in rep.comparisons if c.column == "guideline_version"]
    assert len(cmp) == 1 and (cmp[0].group_a, cmp[0].group_b) == ("v1", "v2")
    a = krippendorff.alpha(reliability_data=wide(df[df["guideline_version"] == "v1"]),
                           level_of_measurement="ordinal")
    b = krippendorff.alpha(reliability_data=wide(df[df["guideline_version"] == "v2"]),
                           level_of_measurement="ordinal")
    diff = cmp[0].alpha_ordinal_diff
    assert diff.value == pytest.approx(a - b)
    assert diff.ci95 is not None and diff.ci95[0] < diff.value < diff.ci95[1]
    gold_diff = cmp[0].gold_accuracy_diff
    assert gold_diff is not None and gold_diff.ci95 is not None
    assert {c.column for c in rep.comparisons} == {"guideline_version", "qa_cohort"}


def test_bootstrap_cis_are_seeded(df: pd.DataFrame) -> None:
    a = build_report(df, bootstrap=150, seed=1)
    b = build_report(df, bootstrap=150, seed=1)
    c = build_report(df, bootstrap=150, seed=2)
    assert a.krippendorff_alpha == b.krippendorff_alpha
    assert a.krippendorff_alpha.ordinal.ci95 != c.krippendorff_alpha.ordinal.ci95
    for coef in (a.krippendorff_alpha.ordinal, a.fleiss_kappa, a.percent_agreement,
                 a.pairwise_kappa[0].linear):
        assert coef.ci95 is not None and coef.value is not None
        assert coef.ci95[0] <= coef.value <= coef.ci95[1]
    assert a.icc.icc2.ci95 is not None  # F-distribution interval, always there
    assert build_report(df).krippendorff_alpha.ordinal.ci95 is None


EDGE_CASES = {
    "empty with columns": pd.DataFrame({"item": [], "rater": [], "score": []}),
    "empty without columns": pd.DataFrame(),
    "one rating": pd.DataFrame({"item": [1], "rater": ["a"], "score": [3]}),
    "every item rated once": pd.DataFrame({"item": [1, 2, 3], "rater": ["a", "b", "a"],
                                           "score": [1, 4, 5]}),
    "all scores equal": pd.DataFrame({"item": [1, 1, 2, 2, 3, 3], "rater": ["a", "b"] * 3,
                                      "score": [4] * 6}),
    "a constant rater": pd.DataFrame({"item": [1, 1, 2, 2, 3, 3], "rater": ["a", "b"] * 3,
                                      "score": [3, 1, 3, 4, 3, 5]}),
    "rater with one rating and missing scores": pd.DataFrame({
        "item": [1, 1, 1, 2, 2, 3, 3], "rater": ["a", "b", "c", "a", "b", "a", "b"],
        "score": [1, 2, 5, 4, None, 5, 5]}),
    "gold without ranges": pd.DataFrame({"item": [1, 1], "rater": ["a", "b"], "score": [2, 3],
                                         "is_gold": [True, True]}),
}


@pytest.mark.parametrize("name", list(EDGE_CASES))
def test_report_never_crashes_or_shows_nan(name: str) -> None:
    rep = build_report(EDGE_CASES[name], bootstrap=20)
    json.dumps(report_dict(rep), allow_nan=False)
    for c in all_coefs(rep):
        assert_coef(c)
    md = report_to_markdown(rep)
    assert "nan" not in md.lower().replace("nominal", "")
    if rep.n_ratings == 0:
        assert rep.krippendorff_alpha.ordinal.value is None
        assert len(rep.per_item) == 0 and rep.pairwise_kappa == ()
    else:
        assert any("noise" in w for w in rep.warnings)  # < 20 multiply-rated items


def test_edge_case_reasons() -> None:
    rep = build_report(EDGE_CASES["all scores equal"])
    assert "no variation" in (rep.krippendorff_alpha.ordinal.reason or "")
    assert "no variation" in (rep.fleiss_kappa.reason or "")
    assert "no variance" in (rep.icc.icc1.reason or "")
    assert rep.percent_agreement.value == 1.0
    assert rep.pairwise_kappa == ()  # the pair shares 3 items (< MIN_PAIR_ITEMS)
    assert rep.pairwise_kappa_summary.skipped.fewer_shared_items == 1
    rep = build_report(EDGE_CASES["all scores equal"], all_pairs=True)
    assert "undefined" in (rep.pairwise_kappa[0].unweighted.reason or "")
    assert rep.pairwise_kappa_summary.skipped.kappa_undefined == 1
    rep = build_report(EDGE_CASES["every item rated once"])
    assert "two or more ratings" in (rep.krippendorff_alpha.nominal.reason or "")
    rep = build_report(EDGE_CASES["rater with one rating and missing scores"])
    assert any("without a score" in w for w in rep.warnings)
    assert any("single rating" in w for w in rep.warnings)
    c = next(p for p in rows(rep.per_rater) if p["rater"] == "c")
    assert c["bias"] is None and c["inconsistency"] is None and c["n_ratings"] == 1
    rep = build_report(EDGE_CASES["gold without ranges"])
    assert any("expected_min" in w for w in rep.warnings)


def test_duplicates_and_validation() -> None:
    df = pd.DataFrame({"item": [1, 1, 1, 2, 2], "rater": ["a", "b", "a", "a", "b"],
                       "score": [1, 2, 2, 3, 3]})
    rep = build_report(df)
    assert rep.n_ratings == 4 and any("repeated" in w for w in rep.warnings)
    assert rep.percent_agreement.value == 1.0  # the superseded 1 is gone
    with pytest.raises(ValueError, match=r"column 'score', row 2: score outside the scale 1\.\.5"):
        build_report(pd.DataFrame({"item": [1, 2], "rater": ["a", "a"], "score": [3, 7]}))
    with pytest.raises(ValueError, match=r"column 'score', row 1: not an integer"):
        build_report(pd.DataFrame({"item": [1], "rater": ["a"], "score": [2.5]}))
    with pytest.raises(ValueError, match="missing required column"):
        build_report(pd.DataFrame({"item": [1], "score": [2]}))
    with pytest.raises(ValueError, match=r"column 'rater', row 2: missing value"):
        build_report(pd.DataFrame({"item": [1, 2], "rater": ["a", None], "score": [2, 3]}))
    seven = build_report(pd.DataFrame({"item": [1, 1], "rater": ["a", "b"], "score": [7, 6]}),
                         scale=(1, 7))
    assert seven.scale == (1, 7)


def test_floor_is_flagged_in_report_and_markdown() -> None:
    rng = np.random.default_rng(3)
    q = rng.uniform(1, 5, 150)
    noise = np.array([0.3, 0.9, 1.0, 1.1])  # rater 0 far more consistent than the rest
    x = np.clip(np.rint(q[None, :] + noise[:, None] * rng.standard_normal((4, 150))), 1, 5)
    df = pd.DataFrame([(u, f"r{o}", int(x[o, u])) for o in range(4) for u in range(150)],
                      columns=["item", "rater", "score"])
    rep = build_report(df)
    assert rep.per_rater.inconsistency_at_floor == [True, False, False, False]
    assert any("sits at the floor" in w for w in rep.warnings)
    assert "| r0 | 150 |" in report_to_markdown(rep) and " (floor) |" in report_to_markdown(rep)


def test_one_formatter_for_every_rendering() -> None:
    """review.analysis.formatting serves the Markdown report, the HTML report and the page."""
    assert [format_number(x) for x in (None, float("nan"), np.float64("inf"), True, np.int64(3),
                                       0.71234, "r<0>")] == ["—", "—", "—", "yes", "3", "0.712", "r<0>"]
    assert format_ci([0.6, 0.8]) == "[0.60, 0.80]" and format_ci([0.6, None]) == format_ci(None) == "—"
    assert format_coef(Coef(0.71234, 30, (0.6, 0.8))) == "0.712 [0.600, 0.800]"
    assert format_coef(Coef(0.5, 30)) == "0.500"
    assert format_coef(Coef.missing("too few items")) == "— (too few items)"
    assert format_coef(None) == "—"


def test_markdown_rendering(report: Report) -> None:
    md = report_to_markdown(report)
    alpha = report.krippendorff_alpha.ordinal.value
    assert md.startswith("# Rating agreement report")
    assert f"| Krippendorff's alpha (ordinal) | {alpha:.3f} |" in md
    assert "| Percent agreement (not chance-corrected) |" in md
    assert "ICC(2,1) two-way random, absolute agreement, single rater" in md
    assert "| r0 | r1 |" in md
    assert "## Breakdown by restorer" in md and "## Comparisons (A minus B)" in md
    assert "nan" not in md.lower()
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert all(ln.endswith("|") for ln in lines)
    short = report_to_markdown(report, max_item_rows=5)
    assert "The 5 items with the lowest MOS of 80" in short


# ------------------------------------------------------------------------- reading files


def test_read_ratings_file_formats(tmp_path: Path, df: pd.DataFrame) -> None:
    small = df[["item", "rater", "score", "restorer"]].head(30)
    small.to_csv(tmp_path / "r.csv", index=False)
    small.to_json(tmp_path / "r.jsonl", orient="records", lines=True)
    small.to_parquet(tmp_path / "r.parquet")
    for name in ("r.csv", "r.jsonl", "r.parquet"):
        read = read_ratings_file(tmp_path / name)
        got = read.frame
        assert read.missing_scores is None
        assert got["score"].tolist() == small["score"].tolist()
        assert got["item"].tolist() == small["item"].tolist()
        assert got["score"].dtype == np.int64
        rep = build_report(got)
        assert rep.n_ratings == 30


@pytest.mark.parametrize("content,message", [
    ("item,rater\n1,a\n", r"bad.csv: missing required column\(s\): 'score'"),
    ("item,rater,score\n1,a,4\n1,b,3.5\n",
     r"bad.csv, row 3, column 'score': not a whole number \(got '3.5'\); give a whole number"),
    ("item,rater,score\n1,a,4\n1,b,4\n2,a,good\n", r"bad.csv, row 4, column 'score': not a number"),
    ("item,rater,score\n1,a,4\n,b,2\n", r"bad.csv, row 3, column 'item': missing value; give"),
])
def test_read_ratings_file_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(RatingsFileError, match=message) as err:
        read_ratings_file(path)
    assert "\n" not in str(err.value)


def test_read_ratings_file_accepts_integral_floats_and_checks_scale(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"item": 1, "rater": "a", "score": 4.0}\n'
                    '{"item": 1, "rater": "b", "score": 6}\n')
    assert read_ratings_file(path).frame["score"].tolist() == [4, 6]
    with pytest.raises(RatingsFileError, match=r"r.jsonl, row 2, column 'score': outside the scale"):
        read_ratings_file(path, scale=(1, 5))
    with pytest.raises(RatingsFileError, match="unknown ratings file type"):
        read_ratings_file(tmp_path / "r.xlsx")


def test_optional_columns_without_any_value_are_ignored_not_a_crash():
    """A study without gold items exports expected_min/max as all-empty columns."""
    import pandas as pd

    df = pd.DataFrame({"item": [1, 1, 2, 2, 3, 3], "rater": list("ababab"),
                       "score": [4, 5, 2, 2, 3, 4], "is_gold": [False] * 6,
                       "expected_min": [None] * 6, "expected_max": [None] * 6,
                       "blur_level": [None] * 6, "blur_kind": ["real"] * 6})
    report = build_report(df)
    assert report.n_ratings == 6
    assert report.krippendorff_alpha.ordinal.value is not None


def test_big_reports_are_written_compact_with_the_same_content(report: Report, monkeypatch) -> None:
    """A report over the size limit is written compact (1M ratings: 58 MB, 86 MB indented); both
    hold what the standard library's encoder writes."""
    from review.analysis import report_json as rendering

    small = rendering.report_json(report)
    assert small.startswith("{\n  ")
    monkeypatch.setattr(rendering, "INDENT_MAX_CHARS", len(small) // 4)
    big = rendering.report_json(report)
    assert "\n" not in big and len(big) < len(small)
    assert json.loads(big) == json.loads(small) == json.loads(json.dumps(report_dict(report)))


def test_formula_like_cells_come_back_from_an_exported_csv(tmp_path: Path) -> None:
    """The CSV export quotes cells a spreadsheet would run ("=1+2" -> "'=1+2"); reading the file
    back restores exactly those, and leaves a text that merely starts with a quote alone."""
    from review.analysis.export import write_frame

    df = pd.DataFrame({"item": ["=1+2", "'plain", "b", "b"], "rater": ["r1", "r1", "@r2", "r1"],
                       "score": [3, 4, 5, 2], "restorer": ["-x", "'", None, "w"]})
    path = write_frame(df, tmp_path / "out.csv")
    assert "'=1+2" in path.read_text("utf-8")
    back = read_ratings_file(path).frame
    assert back["item"].tolist() == df["item"].tolist()
    assert back["rater"].tolist() == df["rater"].tolist()
    assert back["restorer"].tolist()[:2] == ["-x", "'"] and back["restorer"].tolist()[3] == "w"
