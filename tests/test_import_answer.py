"""Ratings imported from a file are answered like generated ones: items of one restorer at one
setting and blur kind form one curve across blur levels, and a restorer rated at a single blur
level is named as left out (never dropped in silence). JSON Lines files whose ids are objects or
lists are refused in one line naming the line and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from review.analysis.export import ratings_frame
from review.analysis.ratings_file import RatingsFileError, read_ratings_file
from review.analysis.ratings_import import import_ratings
from review.answer.sentences import answer_html, answer_markdown, study_answer
from review.cli import cli
from review.database import Lab

#: Share of 8 raters rating faithful (score 5 vs 2) at each blur level: usable up to ~8 px.
FAITHFUL_OF_8 = {2.0: 8, 4.0: 8, 6.0: 8, 8.0: 7, 10.0: 3, 12.0: 1, 16.0: 0}


def _rows() -> list[dict]:
    rows = []
    for level, good in FAITHFUL_OF_8.items():
        for photo in ("p1", "p2"):
            item = f"wiener-{photo}-{level:g}"
            for r in range(8):
                rows.append({"item": item, "rater": f"r{r}", "score": 5 if r < good else 2,
                             "restorer": "wiener", "restorer_params": json.dumps({"balance": 0.1}),
                             "blur_kind": "motion_line", "blur_level": level})
    for r in range(4):  # a restorer rated at one blur level only: named, not answered
        rows.append({"item": "acme-p1-5", "rater": f"r{r}", "score": 4, "restorer": "acme",
                     "restorer_params": "", "blur_kind": "motion_line", "blur_level": 5.0})
    return rows


def _write(rows: list[dict], path: Path) -> Path:
    if path.suffix == ".csv":
        pd.DataFrame(rows).to_csv(path, index=False)
    else:  # JSON Lines with restorer_params as an object, as a crowd platform writes them
        with path.open("w") as f:
            for row in rows:
                params = row["restorer_params"]
                f.write(json.dumps({**row, "restorer_params": json.loads(params) if params else {}})
                        + "\n")
    return path


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_import_then_answer_gives_a_boundary_and_names_the_one_level_restorer(
        settings, tmp_path: Path, suffix: str) -> None:
    path = _write(_rows(), tmp_path / f"ratings{suffix}")
    runner = CliRunner()
    assert runner.invoke(cli, ["init"]).exit_code == 0
    result = runner.invoke(cli, ["import", str(path), "--study", "external"])
    assert result.exit_code == 0, result.output
    md = runner.invoke(cli, ["answer", "--study", "external"])
    assert md.exit_code == 0, md.output
    text = md.output
    assert "No answer yet" not in text
    # one curve over the 7 levels of the 14 Wiener items, with its setting, and a boundary
    assert "Wiener deconvolution (balance=0.1) stays faithful" in text and "up to about" in text
    assert "Rests on 112 ratings of 14 items" in text
    assert ("Left out, rated at one blur level only (a curve needs two or more): acme on "
            "motion blur (line length) at 5 px only (4 ratings)") in text
    out = json.loads(runner.invoke(cli, ["answer", "--study", "external", "--format", "json"]).output)
    [curve] = out["curves"]
    assert curve["restorer"] == "wiener" and curve["setting"] == "balance=0.1"
    assert [p["level"] for p in curve["points"]] == sorted(FAITHFUL_OF_8)
    boundary = curve["by_strength"][0]["boundary"]
    assert boundary is not None and 6.0 < boundary < 12.0
    assert out["one_level"] == [{"restorer": "acme", "setting": "", "blur_kind": "motion_line",
                                 "blur_level": 5.0, "ratings": 4}]


def test_only_one_level_says_why_there_is_no_answer(lab: Lab) -> None:
    df = pd.DataFrame([{"item": f"i{i}", "rater": f"r{r}", "score": 4, "restorer": "wiener",
                        "blur_kind": "defocus", "blur_level": 3.0} for i in range(2) for r in range(3)])
    with lab.sessions() as s, s.begin():
        study = import_ratings(s, df, "one-level")
        answer = study_answer(ratings_frame(s, study), "one-level")
    md = answer_markdown(answer)
    assert not answer.curves
    assert "No answer yet: no restorer has ratings at two or more blur levels." in md
    assert ("Left out, rated at one blur level only (a curve needs two or more): wiener on defocus "
            "(disk radius) at 3 px only (6 ratings).") in md


def test_strength_and_seed_columns_become_parameters(lab: Lab) -> None:
    df = pd.DataFrame([{"item": f"i{lv}-{st}", "rater": f"r{r}", "score": 4, "restorer": "sd15_img2img",
                        "strength": st, "seed": 3, "blur_kind": "defocus", "blur_level": lv}
                       for lv in (2.0, 6.0) for st in (0.3, 0.5) for r in range(2)])
    with lab.sessions() as s, s.begin():
        frame = ratings_frame(s, import_ratings(s, df, "strengths"))
    assert sorted(set(frame["strength"])) == [0.3, 0.5] and set(frame["seed"]) == {3}
    assert not any("imported_item" in p for p in frame["restorer_params"])


def test_bad_restorer_params_or_level_are_refused_in_words(settings, tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["init"]).exit_code == 0
    bad = tmp_path / "bad.csv"
    pd.DataFrame([{"item": "a", "rater": "x", "score": 3,
                   "restorer_params": "[1, 2]"}]).to_csv(bad, index=False)
    result = runner.invoke(cli, ["import", str(bad), "--study", "b1"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "Item 'a': restorer_params is not a JSON object ('[1, 2]')" in result.output
    pd.DataFrame([{"item": "a", "rater": "x", "score": 3, "blur_level": "big"}]).to_csv(bad, index=False)
    result = runner.invoke(cli, ["import", str(bad), "--study", "b2"])
    assert result.exit_code == 1 and "Item 'a': blur_level 'big' is not a number" in result.output


# ------------------------------------------------------------------ JSON Lines with object ids


@pytest.mark.parametrize(("line", "field", "shown"), [
    ('{"item": {"a": 1}, "rater": "r1", "score": 3}', "item", "{'a': 1}"),
    ('{"item": "x", "rater": ["r2"], "score": 4}', "rater", "['r2']"),
    ('{"item": "x", "rater": "r", "score": 4, "blur_level": [1]}', "blur_level", "[1]"),
])
def test_jsonl_object_or_list_values_are_refused_naming_line_and_field(
        tmp_path: Path, line: str, field: str, shown: str) -> None:
    path = tmp_path / "ids.jsonl"
    path.write_text('{"item": "ok", "rater": "r0", "score": 3}\n' + line + "\n")
    with pytest.raises(RatingsFileError) as err:
        read_ratings_file(path)
    assert str(err.value) == (f"ids.jsonl, line 2, field {field!r}: an object or list (got {shown}) "
                              f"where a single value belongs; write the {field} as one string or "
                              "number.")
    for command in (["stats", "--input", str(path)], ["import", str(path), "--study", "x"]):
        result = CliRunner().invoke(cli, command)
        assert result.exit_code == 1, result.output
        assert result.output.strip().splitlines() == [f"Error: {err.value}"]


def test_jsonl_restorer_params_object_and_extra_nested_fields_are_read(tmp_path: Path) -> None:
    path = tmp_path / "ok.jsonl"
    path.write_text('{"item": "a", "rater": "r", "score": 3, "restorer_params": {"balance": 0.1}, '
                    '"meta": {"platform": "x"}}\n')
    df = read_ratings_file(path).frame
    assert df["restorer_params"].iloc[0] == {"balance": 0.1} and len(df) == 1


def test_the_answer_page_names_the_one_level_restorer(lab: Lab) -> None:
    from tests.support_app import page_app, page_user

    with lab.sessions() as s, s.begin():
        import_ratings(s, pd.DataFrame(_rows()), "external")
    at = page_app("answer_page", page_user("qa", username="quinn")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Wiener deconvolution (balance=0.1) stays faithful" in m.value for m in at.markdown)
    [left_out] = [i.value for i in at.info if i.value.startswith("Left out")]
    assert "acme on motion blur (line length) at 5 px only (4 ratings)" in left_out


def test_jsonl_flags_as_a_list_of_names_are_read_as_exported_flags(lab: Lab, tmp_path: Path) -> None:
    path = tmp_path / "flags.jsonl"
    path.write_text('{"item": "a", "rater": "r", "score": 2, "flags": ["artifacts", "identity"]}\n')
    df = read_ratings_file(path).frame
    assert df["flags"].tolist() == ["artifacts,identity"]
    with lab.sessions() as s, s.begin():
        frame = ratings_frame(s, import_ratings(s, df, "flags"))
    assert frame["flags"].tolist() == ["artifacts,identity"]


def test_the_html_report_names_the_one_level_restorer_escaped(lab: Lab) -> None:
    from review.analysis.html_report import html_report
    from review.analysis.report import build_report

    rows = [{**r, "restorer": "<b>acme</b>"} if r["restorer"] == "acme" else r for r in _rows()]
    with lab.sessions() as s, s.begin():
        frame = ratings_frame(s, import_ratings(s, pd.DataFrame(rows), "external"))
    page = html_report(build_report(frame), [], title="t",
                       answer_sections=answer_html(study_answer(frame, "external")))
    assert ("Left out, rated at one blur level only (a curve needs two or more): &lt;b&gt;acme&lt;/b&gt; "
            "on motion blur (line length) at 5 px only (4 ratings)") in page
