"""Hostile ratings files for the statistics CLI: whatever a spreadsheet or a crowd platform
writes is either read as meant or refused in one line naming the file, the row and the fix; and
a file with many raters costs memory in proportion to its ratings, not to raters squared."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from review.analysis import agreement as ag
from review.analysis.ratings_file import MissingScores, RatingsFileError, read_ratings_file
from review.analysis.report import build_report
from review.cli import cli

ROWS = [("i1", "a", 4), ("i1", "b", 5), ("i2", "a", 2), ("i2", "b", 2)]


def _csv(sep: str = ",") -> str:
    return "\n".join([sep.join(("item", "rater", "score"))]
                     + [sep.join((i, r, str(s))) for i, r, s in ROWS]) + "\n"


def _same_ratings(df) -> None:  # noqa: ANN001
    assert sorted(zip(df["item"], df["rater"], df["score"], strict=True)) == sorted(ROWS)


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_other_delimiters_are_sniffed(tmp_path: Path, sep: str) -> None:
    path = tmp_path / "r.csv"
    path.write_text(_csv(sep))
    _same_ratings(read_ratings_file(path).frame)


def test_excel_export_bom_semicolons_crlf_and_trailing_empty_rows(tmp_path: Path) -> None:
    text = _csv(";").replace("\n", "\r\n").replace(";4\r\n", ";4,0\r\n") + ";;\r\n;;\r\n\r\n"
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    df = read_ratings_file(path, scale=(1, 5)).frame
    _same_ratings(df)
    assert len(df) == 4 and list(df.columns) == ["item", "rater", "score"]


def test_ids_with_surrounding_spaces_are_one_id(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text('item,rater,score\ni1, a,4\n"i1 ",b ,5\n i2,a,2\ni2,b, 2\n')
    df = read_ratings_file(path).frame
    _same_ratings(df)
    rep = build_report(df)
    assert (rep.n_items, rep.n_raters) == (2, 2)


@pytest.mark.parametrize("codec,prefix", [("cp1252", b""), ("utf-16", b""),
                                          ("utf-16-le", b"\xff\xfe")])
def test_windows_1252_and_utf16_files(tmp_path: Path, codec: str, prefix: bytes) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes(prefix + "item,rater,score\ni1,Zoë,4\ni1,José,5\n".encode(codec))
    assert sorted(read_ratings_file(path).frame["rater"]) == ["José", "Zoë"]


def test_undecodable_file_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "binary.csv"
    path.write_bytes(b"item,rater,score\ni1,\x81\x8d,4\n")  # bytes no text codec here maps
    with pytest.raises(RatingsFileError, match=r"^binary.csv: not UTF-8, UTF-16 or "
                                               r"Windows-1252 text \(byte \d+\); save it as CSV"):
        read_ratings_file(path)


def test_empty_score_rows_are_dropped_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("item,rater,score\ni1,a,4\ni1,b,\ni2,a,2\ni2,b,  \ni3,a,3\n")
    read = read_ratings_file(path, scale=(1, 5))
    assert len(read.frame) == 3 and read.missing_scores == MissingScores(2, (3, 5))
    assert not read.frame.attrs  # what was dropped travels beside the frame, not in it
    rep = build_report(read.frame, missing_scores=read.missing_scores)
    assert rep.n_ratings == 3
    warning = "2 rows of the file without a score were dropped (rows 3, 5)."
    assert warning in rep.warnings
    res = CliRunner().invoke(cli, ["stats", "--input", str(path), "--format", "json"])
    assert res.exit_code == 0 and warning in json.loads(res.output)["warnings"]


def test_scale_has_a_maximum_number_of_categories() -> None:
    assert ag.check_scale((0, 100)) == (0, 100)
    with pytest.raises(ValueError, match=r"scale 1\.\.100000 has 100000 categories; at most 101"):
        ag.check_scale((1, 100000))


def test_cli_refusals_are_one_line_without_traceback(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_text(_csv())
    bad.write_text("item;rater;score\ni1;a;4\ni1;b;7\n")
    runner = CliRunner()
    res = runner.invoke(cli, ["stats", "--input", str(good), "--scale", "1-100000"])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit)
    assert res.output.strip().splitlines() == [
        "Error: --scale 1-100000: scale 1..100000 has 100000 categories; at most 101 are "
        "supported (e.g. 0..100)."]
    res = runner.invoke(cli, ["stats", "--input", str(bad)])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit)
    assert res.output.strip().splitlines() == [
        "Error: bad.csv, row 3, column 'score': outside the scale 1..5 (got '7'); give a whole "
        "number from 1 to 5 (or give the right scale)."]
    res = runner.invoke(cli, ["stats", "--input", str(good), "--format", "json"])
    assert res.exit_code == 0 and json.loads(res.output)["n_ratings"] == 4


# ------------------------------------------------------------------------- many raters

_MANY_RATERS = textwrap.dedent("""
    import json, resource, sys, time
    import numpy as np, pandas as pd
    from review.analysis.report import build_report
    from review.analysis.report_json import report_dict
    n = int(sys.argv[1])
    df = pd.DataFrame({"item": ["only"] * n, "rater": [f"r{i:05d}" for i in range(n)],
                       "score": np.random.default_rng(0).integers(1, 6, n)})
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    rep = report_dict(build_report(df))
    text = json.dumps(rep, allow_nan=False)
    print(json.dumps({"s": time.perf_counter() - t, "base_kb": base,
                      "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "summary": rep["pairwise_kappa_summary"], "pairs": len(rep["pairwise_kappa"]),
                      "n_raters": rep["n_raters"], "per_rater": len(rep["per_rater"]),
                      "json_mb": len(text) / 1e6}))
""")


def _many_raters(n: int) -> dict:
    out = subprocess.run([sys.executable, "-c", _MANY_RATERS, str(n)], capture_output=True,
                         text=True, timeout=120, check=True, cwd=Path(__file__).parent.parent)
    return json.loads(out.stdout)


@pytest.mark.slow
def test_one_item_rated_by_2000_raters_costs_little_memory() -> None:
    """Was a MemoryError at ~8 GB: one kappa row per rater pair (2 million rows)."""
    got = _many_raters(2000)
    n_pairs = math.comb(2000, 2)
    assert got["n_raters"] == got["per_rater"] == 2000 and got["pairs"] == 0
    assert got["summary"]["n_rater_pairs"] == n_pairs
    assert got["summary"]["skipped"] == {"fewer_shared_items": n_pairs, "over_budget": 0,
                                         "kappa_undefined": 0}
    assert (got["peak_kb"] - got["base_kb"]) / 1024 < 200, got  # MB above the imports
    assert got["s"] < 10, got
