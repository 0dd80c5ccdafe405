"""The statistics report's JSON (and Markdown) stay byte for byte what they were before the report
became typed (issue 22): golden files in tests/golden/, written by the code at commit 99a36bf.

- demo_stats.json, demo_unrated_stats.json: `python -m review stats --study NAME --format json`
  after `python -m review init` and `python -m review demo` (the simulated-panel study, and the
  demo study whose items have no ratings yet). demo_ratings.parquet is the simulated study's
  ratings frame from that lab (its created_at differs per run; the report does not read it).
- demo_page_bootstrap.json/.md: the Analysis page's path (report_input) over that frame with 50
  bootstrap resamples, seed 3.
- bench_agreement.json/.md: bench/agreement.py's make_study(150 items, 6 raters, 10 % missing,
  seed 0), 20 bootstrap resamples, seed 1 (gold, DMOS, breakdowns and comparisons).

No field depends on the run (the report holds no timestamp), so nothing was removed. Regenerate
a golden only for a deliberate change of the report's format, and say so in the commit.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest
from click.testing import CliRunner

from review.analysis.markdown_report import report_to_markdown
from review.analysis.report import build_report
from review.analysis.report_json import report_json
from review.analysis.tables import report_input
from review.cli import cli
from review.demo import DEMO_STUDY, SIMULATED_STUDY

GOLDEN = Path(__file__).resolve().parent / "golden"
BENCH = Path(__file__).resolve().parent.parent / "bench"


def _golden(name: str) -> str:
    return (GOLDEN / name).read_text(encoding="utf-8")


def _bench_agreement(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """bench/agreement.py as a module (it imports `machine` from beside itself)."""
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_agreement", BENCH / "agreement.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_ratings_report_json_is_byte_identical() -> None:
    df = pd.read_parquet(GOLDEN / "demo_ratings.parquet")
    # the CLI echoes the JSON with a final newline
    assert report_json(build_report(df, scale=(1, 5))) + "\n" == _golden("demo_stats.json")


def test_demo_page_report_with_bootstrap_is_byte_identical() -> None:
    df = report_input(pd.read_parquet(GOLDEN / "demo_ratings.parquet"))
    report = build_report(df, bootstrap=50, seed=3, scale=(1, 5))
    assert report_json(report) == _golden("demo_page_bootstrap.json")
    assert report_to_markdown(report) == _golden("demo_page_bootstrap.md")


def test_bench_agreement_report_is_byte_identical(monkeypatch: pytest.MonkeyPatch) -> None:
    df = _bench_agreement(monkeypatch).make_study(n_items=150, n_raters=6, missing=0.1, seed=0)
    report = build_report(df, bootstrap=20, seed=1)
    assert report_json(report) == _golden("bench_agreement.json")
    assert report_to_markdown(report) == _golden("bench_agreement.md")


@pytest.mark.slow
def test_demo_stats_cli_json_is_byte_identical(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The end-to-end path: a fresh lab, the demo, `stats --format json` (about 30 s)."""
    monkeypatch.setenv("REVIEW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("REVIEW_DATABASE_URL", raising=False)
    runner = CliRunner()
    for args in (["init"], ["demo"]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
    for study, golden in ((SIMULATED_STUDY, "demo_stats.json"),
                          (DEMO_STUDY, "demo_unrated_stats.json")):
        result = runner.invoke(cli, ["stats", "--study", study, "--format", "json"])
        assert result.exit_code == 0, result.output
        assert result.output == _golden(golden)
