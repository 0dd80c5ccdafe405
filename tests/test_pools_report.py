"""Used or all ratings, and pools compared (issue 23), on the demo's SIMULATED crowd study (an
in-house team of 4 and a crowd pool of 30 judged by data cleansing): the report (JSON, Markdown,
HTML) says which ratings it read and carries the pools only for a study with more than one pool;
the CLI's --ratings; the Analysis and answer pages' radio, caption and pools section."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from db.models import Study
from review.analysis import crowd_cleansing as cc
from review.analysis.export import default_ratings, ratings_frame, ratings_in_use, ratings_read
from review.analysis.html_report import html_report
from review.analysis.markdown_report import report_to_markdown
from review.analysis.pools_compared import compare_pools, pools_frame
from review.analysis.pools_report import measures_frame, pools_chart, pools_views, with_crowd_parts
from review.analysis.qa_stats import gold_accuracy
from review.analysis.report import build_report
from review.analysis.report_json import report_json
from review.answer.sentences import answer_json, answer_markdown, study_answer
from review.cli import cli
from review.config import load_settings
from review.database import open_lab
from review.demo import CROWD_POOL, CROWD_STUDY, seed_crowd_demo
from review.labeling.assignment import next_assignment
from review.labeling.guidelines.files import GUIDELINES_DIR, authored_dir, sync_all
from review.labeling.ratings import Submission, submit
from tests.support import make_study
from tests.support_app import page_app, page_user

pytestmark = pytest.mark.slow  # seeding the crowd study takes ~8 s, once for the module


@dataclass(frozen=True)
class Crowd:
    data_dir: Path
    study_id: int
    frame: pd.DataFrame  # the study's whole ratings frame
    costs: dict


@pytest.fixture(scope="module")
def crowd(tmp_path_factory: pytest.TempPathFactory) -> Crowd:
    data_dir = tmp_path_factory.mktemp("crowd") / "data"
    lab = open_lab(load_settings({"REVIEW_DATA_DIR": str(data_dir)}), migrate=True)
    with lab.write() as s:
        sync_all(s, GUIDELINES_DIR, authored_dir(lab.settings.data_dir))
    seed_crowd_demo(lab)
    with lab.read() as s:
        study = s.scalar(select(Study).where(Study.name == CROWD_STUDY))
        out = Crowd(data_dir, study.id, ratings_frame(s, study), cc.pool_costs(s, study.id))
    lab.engine.dispose()
    return out


@pytest.fixture
def crowd_env(crowd: Crowd, monkeypatch: pytest.MonkeyPatch) -> Crowd:
    """The crowd lab as the one pages and the CLI open (read only: tests share it)."""
    monkeypatch.setenv("REVIEW_DATA_DIR", str(crowd.data_dir))
    monkeypatch.delenv("REVIEW_DATABASE_URL", raising=False)
    return crowd


def _report(frame: pd.DataFrame, which: str, costs: dict, bootstrap: int = 20):
    report = build_report(ratings_in_use(frame, which), bootstrap=bootstrap, seed=1)
    return with_crowd_parts(report, frame, which, costs, bootstrap=bootstrap, seed=1)


def test_the_crowd_study_reads_its_used_ratings_by_default_and_says_so(crowd: Crowd) -> None:
    frame = crowd.frame
    unused = frame[~frame["used"]]
    assert default_ratings(frame) == "used" and len(unused) > 0
    used = ratings_read(frame, "used")
    assert (used.left_out, used.participants) == (len(unused), unused["rater"].nunique())
    assert used.sentence() == (f"Figures from used ratings only: data cleansing left {len(unused)} ratings "
                               f"of {unused['rater'].nunique()} participants out.")
    assert ratings_read(frame, "all").sentence().startswith("Figures from all ratings, including the ")
    assert ratings_read(frame[frame["used"]], "all") is None  # nothing left out: nothing to say
    with pytest.raises(ValueError, match="used, all"):
        ratings_read(frame, "some")


def test_a_two_pool_reports_json_markdown_and_html_carry_the_pools(crowd: Crowd) -> None:
    report = _report(crowd.frame, "used", crowd.costs)
    assert [f.pool for f in report.pools] == ["In-house", CROWD_POOL]
    assert report.n_ratings == int(crowd.frame["used"].sum())
    data = json.loads(report_json(report))
    assert list(data)[-4:] == ["ratings_read", "pools", "per_item", "per_rater"]
    assert data["ratings_read"]["which"] == "used"
    assert data["ratings_read"]["sentence"] == report.ratings_read.sentence()
    inhouse, pool = data["pools"]
    assert pool["pool"] == CROWD_POOL and pool["currency"] == "GBP"
    assert pool["submissions_used"]["n"] == 30 and inhouse["submissions_used"] is None
    lo, hi = pool["alpha_ordinal"]["ci95"]
    assert lo <= pool["alpha_ordinal"]["value"] <= hi
    figures = {f.pool: f for f in compare_pools(ratings_in_use(crowd.frame, "used"), crowd.costs,
                                                bootstrap=20, seed=1)}
    assert pool["alpha_ordinal"]["value"] == pytest.approx(figures[CROWD_POOL].alpha.value)
    assert pool["gold_accuracy"]["right"] == figures[CROWD_POOL].gold_accuracy.right
    ours = figures[CROWD_POOL]
    assert [g["group"] for g in pool["by_guideline_version"]] == [g.group for g in ours.by_guideline]
    assert [g["group"] for g in pool["by_qa_cohort"]] == [g.group for g in ours.by_qa]

    md = report_to_markdown(report)
    assert report.ratings_read.sentence() in md.splitlines()[:5]
    for title in ("## Pools compared", "### Guideline version by pool", "### QA cohort by pool"):
        assert title in md
    crowd_row = next(line for line in md.splitlines() if line.startswith(f"| {CROWD_POOL} | 21 |"))
    assert "GBP" in crowd_row and "(21/30)" in crowd_row
    page = html_report(report, [], title="crowd")
    assert report.ratings_read.sentence() in page
    for title in ("Pools compared", "Guideline version by pool", "QA cohort by pool"):
        assert f">{title}</h2>" in page
    assert page.count("vegaEmbed('#chart-") == 1  # the pools chart


def test_a_one_pool_study_without_cleansing_adds_nothing(crowd: Crowd) -> None:
    inhouse = crowd.frame[crowd.frame["pool"] == "In-house"].reset_index(drop=True)
    plain = build_report(inhouse, bootstrap=20, seed=1)
    report = with_crowd_parts(plain, inhouse, default_ratings(inhouse), crowd.costs, bootstrap=20, seed=1)
    assert report.ratings_read is None and report.pools == ()
    assert report_json(report) == report_json(plain)
    assert report_to_markdown(report) == report_to_markdown(plain)
    assert "ratings_read" not in json.loads(report_json(report)) and "Pools compared" not in html_report(
        report, [], title="one pool")


def test_all_ratings_show_the_crowd_noisier(crowd: Crowd) -> None:
    used = {f.pool: f for f in _report(crowd.frame, "used", crowd.costs, bootstrap=0).pools}
    every = _report(crowd.frame, "all", crowd.costs, bootstrap=0)
    assert every.ratings_read.which == "all" and every.n_ratings == len(crowd.frame)
    allf = {f.pool: f for f in every.pools}
    assert allf[CROWD_POOL].ratings > used[CROWD_POOL].ratings
    assert allf[CROWD_POOL].alpha.value < used[CROWD_POOL].alpha.value
    assert allf["In-house"].ratings == used["In-house"].ratings


def test_the_pools_chart_and_tables_hold_every_pool_with_intervals(crowd: Crowd) -> None:
    figures = compare_pools(ratings_in_use(crowd.frame, "used"), crowd.costs, bootstrap=20, seed=1)
    measures = measures_frame(figures)
    assert set(measures["measure"]) == {"Alpha (ordinal)", "Gold accuracy", "Consensus accuracy"}
    assert measures["value"].between(measures["ci_low"], measures["ci_high"]).all()
    spec = pools_chart(measures).to_dict()
    assert [layer["mark"]["type"] for layer in spec["layer"]] == ["errorbar", "point"]
    table, by_guideline, by_qa = pools_views(figures)
    assert table.frame.equals(pools_frame(figures)) and table.chart is not None
    crowd_row = table.frame.set_index("pool").loc[CROWD_POOL]
    assert crowd_row["submissions_used_lo"] < crowd_row["submissions_used"] < crowd_row["submissions_used_hi"]
    assert set(by_guideline.frame["pool"]) == set(by_qa.frame["pool"]) == {"In-house", CROWD_POOL}
    assert {"alpha_ordinal_ci_low", "mos_ci_high"} <= set(by_qa.frame.columns)


def test_the_answer_and_gold_accuracy_follow_the_choice(crowd: Crowd) -> None:
    used, every = (study_answer(crowd.frame, CROWD_STUDY, which=w) for w in ("used", "all"))
    assert study_answer(crowd.frame, CROWD_STUDY).ratings_read == used.ratings_read  # the default
    assert every.ratings > used.ratings
    assert used.ratings_read.sentence() in answer_markdown(used)
    assert json.loads(answer_json(every))["ratings_read"]["which"] == "all"
    lab = open_lab(load_settings({"REVIEW_DATA_DIR": str(crowd.data_dir)}))
    with lab.read() as s:
        n_used = gold_accuracy(s, crowd.study_id, "qa_cohort")["n"].sum()
        n_all = gold_accuracy(s, crowd.study_id, "qa_cohort", "all")["n"].sum()
    lab.engine.dispose()
    gold = crowd.frame[crowd.frame["is_gold"].astype(bool)]
    assert (n_used, n_all) == (gold["used"].sum(), len(gold))


def test_cli_ratings_option(crowd_env: Crowd, tmp_path: Path) -> None:
    runner = CliRunner()
    frame = crowd_env.frame
    n_used = int(frame["used"].sum())
    for which, n in (("used", n_used), ("all", len(frame)), (None, n_used)):
        args = ["stats", "--study", CROWD_STUDY, "--format", "json"] + (["--ratings", which] if which else [])
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
        data = json.loads(result.output)
        assert data["n_ratings"] == n and data["ratings_read"]["which"] == (which or "used")
        assert [p["pool"] for p in data["pools"]] == ["In-house", CROWD_POOL]
    refused = runner.invoke(cli, ["stats", "--input", str(tmp_path / "x.csv"), "--ratings", "all"])
    assert refused.exit_code == 2
    (tmp_path / "x.csv").write_text("item,rater,score\n1,a,3\n1,b,4\n", encoding="utf-8")
    refused = runner.invoke(cli, ["stats", "--input", str(tmp_path / "x.csv"), "--ratings", "all"])
    assert refused.exit_code == 2 and "--ratings applies to --study" in refused.output
    assert runner.invoke(cli, ["stats", "--study", CROWD_STUDY, "--ratings", "some"]).exit_code == 2

    answered = runner.invoke(cli, ["answer", "--study", CROWD_STUDY, "--ratings", "all"])
    assert answered.exit_code == 0 and "Figures from all ratings, including the" in answered.output
    for which, n in (("used", int(frame["used"].sum())), ("all", len(frame))):
        out = tmp_path / which
        done = runner.invoke(cli, ["export", CROWD_STUDY, "--out", str(out), "--format", "csv",
                                   "--ratings", which])
        assert done.exit_code == 0, done.output
        assert len(pd.read_csv(out / "ratings.csv")) == n
        assert json.loads((out / "report.json").read_text("utf-8"))["ratings_read"]["which"] == which
        assert "## Pools compared" in (out / "report.md").read_text("utf-8")


def test_analysis_page_radio_caption_and_pools(crowd_env: Crowd) -> None:
    frame, sid = crowd_env.frame, crowd_env.study_id
    at = page_app("analyst_page", page_user("admin"))
    at.run()
    at.selectbox(key="analyst_study").set_value(sid).run()
    assert not at.exception, at.exception
    radio = at.radio(key=f"analyst_ratings_{sid}")
    assert radio.value == "used" and radio.options == ["used only", "all"]
    captions = [c.value for c in at.caption]
    assert ratings_read(frame, "used").sentence() in captions
    assert next(m.value for m in at.metric if m.label == "Ratings") == str(int(frame["used"].sum()))
    assert "Pools compared" in [h.value for h in at.header]
    subheaders = [h.value for h in at.subheader]
    assert {"Pools compared", "Guideline version by pool", "QA cohort by pool"} <= set(subheaders)
    (table,) = [d for d in at.dataframe if "submissions_used" in d.value.columns]
    assert list(table.value["pool"]) == ["In-house", CROWD_POOL]
    csvs = [b.proto.id for b in at.get("download_button") if b.proto.label == "CSV of this table"]
    assert len(csvs) == 3 and any("analyst_dl_pools_compared" in i for i in csvs)

    radio.set_value("all").run()
    assert not at.exception, at.exception
    assert ratings_read(frame, "all").sentence() in [c.value for c in at.caption]
    assert next(m.value for m in at.metric if m.label == "Ratings") == str(len(frame))
    (table,) = [d for d in at.dataframe if "submissions_used" in d.value.columns]
    crowd_ratings = int((frame["pool"] == CROWD_POOL).sum())
    assert table.value.set_index("pool").loc[CROWD_POOL, "ratings"] == crowd_ratings


def test_answer_page_radio_and_sentence(crowd_env: Crowd) -> None:
    sid = crowd_env.study_id
    at = page_app("answer_page", page_user("admin"))
    at.run()
    at.selectbox(key="answer_study").set_value(sid).run()
    assert not at.exception, at.exception
    radio = at.radio(key=f"answer_ratings_{sid}")
    assert radio.value == "used"
    sentence = ratings_read(crowd_env.frame, "used").sentence()
    assert sentence in [c.value for c in at.caption]
    used = int(next(m.value for m in at.metric if m.label == "Ratings the answer rests on"))
    radio.set_value("all").run()
    assert not at.exception, at.exception
    assert int(next(m.value for m in at.metric if m.label == "Ratings the answer rests on")) > used


def test_pages_of_a_study_without_cleansing_show_no_radio_and_no_pools(lab) -> None:  # noqa: ANN001
    with lab.sessions() as s, s.begin():
        made = make_study(s, 4, raters_per_item=2, n_reviewers=2, name="tiny")
        for u in made.reviewers:
            while (lease := next_assignment(s, made.study, u.id)) is not None:
                submit(s, lease.assignment_id, u.id, Submission(4 if lease.item_id % 2 else 2))
    for module in ("analyst_page", "answer_page"):
        at = page_app(module, page_user("admin")).run()
        assert not at.exception, at.exception
        assert not [r for r in at.radio if r.label == "Ratings"]
        assert not any(c.value.startswith("Figures from") for c in at.caption)
        assert "Pools compared" not in [h.value for h in at.header]
