"""`stats` turns only the lab's own refusals (ReviewError) into a one-line message: a bug anywhere
on its path, a ValueError included, keeps its traceback and exit status, so it is reported as a
bug instead of being read as bad input."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import pytest
from click.testing import CliRunner

from review.analysis import markdown_report, ratings_file, report
from review.cli import cli


@pytest.fixture()
def ratings(tmp_path: Path) -> Path:
    path = tmp_path / "ratings.csv"
    path.write_text("item,rater,score\ni1,a,4\ni1,b,5\ni2,a,2\ni2,b,2\n", encoding="utf-8")
    return path


def _planted_bug(kind: type[Exception]) -> Callable[..., NoReturn]:
    def broken(*_args: object, **_kwargs: object) -> NoReturn:
        raise kind("planted bug")
    return broken


@pytest.mark.parametrize("kind", [ValueError, KeyError, RuntimeError])
@pytest.mark.parametrize("module, name", [(ratings_file, "read_ratings_file"),
                                          (report, "build_report"),
                                          (markdown_report, "report_to_markdown")])
def test_a_bug_in_stats_keeps_its_traceback(ratings: Path, monkeypatch: pytest.MonkeyPatch,
                                            module: object, name: str, kind: type[Exception]) -> None:
    monkeypatch.setattr(module, name, _planted_bug(kind))
    result = CliRunner().invoke(cli, ["stats", "--input", str(ratings)])
    assert isinstance(result.exception, kind) and "planted bug" in str(result.exception)
    assert result.exit_code == 1 and "Error:" not in result.output
    assert gc.isenabled()  # the collector is back on after the failed report


def test_a_refusal_is_still_one_line(ratings: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("item,rater,score\ni1,a,9\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["stats", "--input", str(bad)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.output.startswith("Error: bad.csv, row 2, column 'score'")
    negative = CliRunner().invoke(cli, ["stats", "--input", str(ratings), "--bootstrap", "-1"])
    assert negative.exit_code == 2 and "--bootstrap" in negative.output


def test_a_bug_in_python_m_review_stats_prints_its_traceback(ratings: Path) -> None:
    """In its own process too (where a successful stats leaves by exit_without_teardown)."""
    planted = textwrap.dedent("""
        import sys
        from review import cli
        from review.analysis import report
        def broken(*args, **kwargs):
            raise ValueError("planted bug")
        report.build_report = broken
        sys.argv = ["python -m review", "stats", "--input", sys.argv[1]]
        cli.main()
    """)
    done = subprocess.run([sys.executable, "-c", planted, str(ratings)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert done.stderr.rstrip().endswith("ValueError: planted bug")
