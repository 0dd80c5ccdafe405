"""Exports and the round trip: export, import into a fresh database, identical statistics."""

from __future__ import annotations

import json
import random

import pandas as pd
import pytest
from click.testing import CliRunner

from review.analysis.export import ratings_frame, wide_matrix, write_frame
from review.analysis.ratings_file import read_ratings_file
from review.analysis.report import build_report
from review.analysis.report_json import report_dict
from review.cli import cli
from review.config import load_settings
from review.database import open_lab
from review.labeling.assignment import next_assignment
from review.labeling.ratings import Submission, submit, undo_last
from review.labeling.study import get_study
from tests.support import make_study


def _rated_study(lab, n_items=25, n_reviewers=4, rpi=3, seed=1):
    rng = random.Random(seed)
    with lab.sessions() as s, s.begin():
        made = make_study(s, n_items, raters_per_item=rpi, n_reviewers=n_reviewers,
                          gold_every=5, name="rt")
        study, users = made.study, made.reviewers
        ids = [u.id for u in users]
        truth = {}
        for uid in ids:
            while (lease := next_assignment(s, study, uid)) is not None:
                base = truth.setdefault(lease.item_id, rng.randint(1, 5))
                score = min(5, max(1, base + rng.choice([-1, 0, 0, 1])))
                submit(s, lease.assignment_id, uid, Submission(score, ("artifacts",) if score < 3
                                                               else ()))
        undo_last(s, study, ids[0])  # leaves one retracted row in the history
    return "rt"


def _core(report):
    keep = ("n_items", "n_raters", "n_ratings", "krippendorff_alpha", "fleiss_kappa", "icc",
            "percent_agreement")
    data = report_dict(report)
    out = {k: data[k] for k in keep}
    out["kappas"] = sorted(round(p.quadratic.value, 12) for p in report.pairwise_kappa
                           if p.quadratic.value is not None)
    return json.loads(json.dumps(out))


def test_long_frame_has_context_and_history(lab):
    name = _rated_study(lab)
    with lab.sessions() as s:
        study = get_study(s, name)
        active = ratings_frame(s, study)
        full = ratings_frame(s, study, include_history=True)
    assert len(full) == len(active) + 1
    assert set(active["blur_kind"]) == {"defocus"} and active["guideline_version"].iloc[0] == "g-rt v1"
    assert active["is_gold"].any() and active["restorer"].isin(["wiener", "hidden_reference"]).all()
    matrix = wide_matrix(active)
    assert matrix.shape == (active["item"].nunique(), active["rater"].nunique())
    assert int(matrix.notna().sum().sum()) == len(active)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_round_trip_gives_identical_statistics(lab, tmp_path, monkeypatch, fmt):
    name = _rated_study(lab)
    with lab.sessions() as s:
        df = ratings_frame(s, get_study(s, name))
    original = build_report(df)
    path = write_frame(df, tmp_path / f"ratings.{fmt}")

    fresh = tmp_path / "fresh"
    monkeypatch.setenv("REVIEW_DATA_DIR", str(fresh))
    runner = CliRunner()
    assert runner.invoke(cli, ["init"]).exit_code == 0
    result = runner.invoke(cli, ["import", str(path), "--study", "copy"])
    assert result.exit_code == 0, result.output
    lab2 = open_lab(load_settings())
    with lab2.sessions() as s:
        again = ratings_frame(s, get_study(s, "copy"))
    assert _core(build_report(again)) == _core(original)
    assert _core(build_report(read_ratings_file(path).frame)) == _core(original)


def test_cli_export_writes_every_file(lab, tmp_path, monkeypatch):
    name = _rated_study(lab)
    monkeypatch.setenv("REVIEW_DATA_DIR", str(lab.settings.data_dir))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["export", name, "--out", str(out), "--history"])
    assert result.exit_code == 0, result.output
    for f in ("ratings.csv", "ratings.jsonl", "ratings.parquet", "matrix.csv", "report.json",
              "report.md"):
        assert (out / f).stat().st_size > 0
    report = json.loads((out / "report.json").read_text())
    assert report["n_ratings"] == len(pd.read_csv(out / "ratings.csv").query("active"))
    assert "Krippendorff" in (out / "report.md").read_text()


def test_import_refuses_an_existing_study_name(lab, tmp_path, monkeypatch):
    name = _rated_study(lab)
    with lab.sessions() as s:
        path = write_frame(ratings_frame(s, get_study(s, name)), tmp_path / "r.csv")
    monkeypatch.setenv("REVIEW_DATA_DIR", str(lab.settings.data_dir))
    result = CliRunner().invoke(cli, ["import", str(path), "--study", name])
    assert result.exit_code == 1 and "already exists" in result.output


FORMULAS = ["=HYPERLINK(\"http://x\",\"y\")", "+1+1", "-2+3", "@SUM(A1)", "\tcmd", "\rcmd",
            "'=kept", "plain", "a=b", "'quoted"]


def test_csv_neutralises_formulas_but_not_numbers(tmp_path):
    from review.analysis.export import matrix_csv, neutralise_cell

    df = pd.DataFrame({"item": range(1, 11), "rater": ["=evil"] + ["r"] * 9, "score": [3] * 10,
                       "comment": FORMULAS, "blur_level": [-1.5] * 10})
    raw = write_frame(df, tmp_path / "r.csv").read_text()
    cells = pd.read_csv(tmp_path / "r.csv", keep_default_na=False)
    assert cells["comment"].tolist() == [
        "'=HYPERLINK(\"http://x\",\"y\")", "'+1+1", "'-2+3", "'@SUM(A1)", "'\tcmd", "'\rcmd",
        "''=kept", "plain", "a=b", "'quoted"]
    assert cells["rater"].iloc[0] == "'=evil" and cells["blur_level"].tolist() == [-1.5] * 10
    assert "\n=" not in raw and ",=" not in raw and ",-1.5" in raw
    # reading the export back takes the quotes off: the round trip is exact
    back = read_ratings_file(tmp_path / "r.csv").frame
    assert back["comment"].tolist() == FORMULAS and back["rater"].iloc[0] == "=evil"
    # the wide matrix: a rater named like a formula is a header cell; scores stay numbers
    matrix = matrix_csv(df.assign(score=[-1] + [2] * 9)).decode()
    assert matrix.splitlines()[0] == "item,'=evil,r" and "\n1,-1.0," in matrix
    assert neutralise_cell(-1.5) == -1.5 and neutralise_cell(None) is None


def test_old_hyphenated_guideline_labels_still_import(lab, tmp_path):
    from review.analysis.ratings_import import import_ratings

    df = pd.DataFrame({"item": ["a", "a"], "rater": ["x", "y"], "score": [3, 4],
                       "guideline_version": ["fidelity-v3", "fidelity v3"]})
    with lab.sessions() as s, s.begin():
        study = import_ratings(s, df, "old-labels")
        frame = ratings_frame(s, study)
    assert set(frame["guideline_version"]) == {"fidelity v3"}
