"""The command line: init (idempotent, upgrades in place), users, demo (idempotent), stats."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from db.models import DegradedImage, Restoration, SourceImage, StudyItem, User
from review.cli import ReviewCommands, cli
from review.config import load_settings
from review.database import open_lab
from review.demo import (
    CROWD_INHOUSE,
    CROWD_PARTICIPANTS,
    SIMULATED_LEVELS,
    SIMULATED_RATERS,
    SIMULATED_SOURCES,
    SIMULATED_STUDY,
)
from review.labeling.cohorts import CohortError


@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.setenv("REVIEW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("REVIEW_DATABASE_URL", raising=False)
    r = CliRunner()
    result = r.invoke(cli, ["init"])
    assert result.exit_code == 0, result.output
    return r


def test_init_twice_is_harmless(runner):
    result = runner.invoke(cli, ["init"])
    assert result.exit_code == 0 and "3 guideline versions" in result.output


def test_commands_refuse_an_uninitialised_database(tmp_path, monkeypatch):
    monkeypatch.setenv("REVIEW_DATA_DIR", str(tmp_path / "empty"))
    result = CliRunner().invoke(cli, ["users", "list"])
    assert result.exit_code == 1 and "python -m review init" in result.output


def test_bad_setting_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("REVIEW_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("REVIEW_DATABASE_URL", "oracle://x/y")
    result = CliRunner().invoke(cli, ["init"])
    assert result.exit_code == 1 and "REVIEW_DATABASE_URL" in result.output


def test_users_add_list_deactivate(runner):
    assert runner.invoke(cli, ["users", "add", "eve", "--role", "qa", "--password",
                               "eight chars"]).exit_code == 0
    dup = runner.invoke(cli, ["users", "add", "eve", "--role", "qa", "--password", "eight chars"])
    assert dup.exit_code == 1 and "already exists" in dup.output
    short = runner.invoke(cli, ["users", "add", "zed", "--role", "qa", "--password", "short"])
    assert short.exit_code == 1 and "at least 8" in short.output
    assert runner.invoke(cli, ["users", "deactivate", "eve"]).exit_code == 0
    listing = runner.invoke(cli, ["users", "list"]).output
    assert "eve" in listing and " no " in listing
    missing = runner.invoke(cli, ["users", "deactivate", "nobody"])
    assert missing.exit_code == 1 and "No user named" in missing.output


def test_users_unlock_clears_failed_logins(runner):
    from review.accounts.users import FREE_FAILURES, LoginRefused, authenticate

    added = runner.invoke(cli, ["users", "add", "ivy", "--role", "qa", "--password", "eight chars"])
    assert added.exit_code == 0
    sessions = open_lab(load_settings()).sessions
    for _ in range(FREE_FAILURES):
        with pytest.raises(LoginRefused, match="wrong password"):
            authenticate(sessions, "ivy", "not it at all")
    with pytest.raises(LoginRefused, match="Too many failed logins"):
        authenticate(sessions, "ivy", "eight chars")
    result = runner.invoke(cli, ["users", "unlock", "ivy"])
    assert result.exit_code == 0 and "Failed logins of ivy cleared" in result.output
    assert authenticate(sessions, "ivy", "eight chars").username == "ivy"
    assert runner.invoke(cli, ["users", "unlock", "nobody"]).exit_code == 1


def _counts():
    lab = open_lab(load_settings())
    with lab.sessions() as s:
        return tuple(s.scalar(select(func.count()).select_from(m))
                     for m in (User, SourceImage, DegradedImage, Restoration, StudyItem))


@pytest.mark.slow
def test_demo_is_idempotent_and_ratable_without_weights(runner):
    first = runner.invoke(cli, ["demo"])
    assert first.exit_code == 0, first.output
    counts = _counts()
    # 5 demo accounts + the simulated panel's raters + the simulated crowd study's in-house raters
    # and participants; 7 photos + 2 small ones shared by the two simulated studies.
    assert counts[0] == 5 + SIMULATED_RATERS + CROWD_INHOUSE + CROWD_PARTICIPANTS
    assert counts[1] == 7 + len(SIMULATED_SOURCES) and counts[4] >= 50
    again = runner.invoke(cli, ["demo"])
    assert again.exit_code == 0 and _counts() == counts
    lab = open_lab(load_settings())
    with lab.sessions() as s:
        methods = set(s.scalars(select(Restoration.method)))
        kinds = set(s.scalars(select(DegradedImage.kind)))
        gold = s.scalar(select(func.count()).select_from(StudyItem).where(StudyItem.is_gold))
    assert {"wiener", "richardson_lucy", "blurred", "hidden_reference"} <= methods
    assert {"defocus", "motion_line", "camera_shake", "gaussian", "real"} <= kinds
    assert gold >= 12
    from review.demo import DEMO_QA_SHARE, DEMO_STUDY
    from review.labeling.settings import StudySettings
    from review.labeling.study import get_study

    with lab.sessions() as s:  # QA has work out of the box: half the demo reviewers go through QA
        assert StudySettings.of(get_study(s, DEMO_STUDY)).qa_share == DEMO_QA_SHARE == 0.5
    # The simulated study answers at once, and says its ratings are simulated.
    md = runner.invoke(cli, ["answer", "--study", SIMULATED_STUDY])
    assert md.exit_code == 0 and "Wiener deconvolution stays faithful" in md.output, md.output
    n = SIMULATED_RATERS * len(SIMULATED_SOURCES) * len(SIMULATED_LEVELS) * 2  # x wiener and blurred
    assert f"{n} ratings, {n} of them from a simulated panel" in md.output


KRIPPENDORFF_2011 = {  # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability"
    "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    "C": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
}


def test_stats_from_a_ratings_file_matches_the_published_example(runner, tmp_path):
    lines = ["item,rater,score"] + [f"u{i},{rater},{v}" for rater, vals in KRIPPENDORFF_2011.items()
                                    for i, v in enumerate(vals) if v is not None]
    path = tmp_path / "k.csv"
    path.write_text("\n".join(lines) + "\n")
    result = runner.invoke(cli, ["stats", "--input", str(path), "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    alpha = report["krippendorff_alpha"]
    assert round(alpha["nominal"]["value"], 3) == 0.743
    assert round(alpha["interval"]["value"], 3) == 0.849
    md = runner.invoke(cli, ["stats", "--input", str(path)])
    assert md.exit_code == 0 and "0.743" in md.output


def test_stats_input_errors_are_one_clear_line(runner, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("item,rater\n1,a\n")
    result = runner.invoke(cli, ["stats", "--input", str(bad)])
    assert result.exit_code == 1 and "missing required column" in result.output
    both = runner.invoke(cli, ["stats"])
    assert both.exit_code == 2 and "exactly one" in both.output


def test_stats_as_its_own_process_writes_the_whole_report(tmp_path):
    """`python -m review stats` leaves its process without the interpreter's teardown: the report
    on a pipe and in a file is still complete, and the same text as the library's."""
    from review.analysis.ratings_file import read_ratings_file
    from review.analysis.report import build_report
    from review.analysis.report_json import report_json

    path = tmp_path / "many.csv"
    rows = [f"i{i},r{(i + k) % 7},{1 + (i * 3 + k) % 5}" for i in range(10_007) for k in (0, 1)]
    path.write_text("item,rater,score\n" + "\n".join(rows) + "\n")
    want = report_json(build_report(read_ratings_file(path).frame))
    command = [sys.executable, "-m", "review", "stats", "--input", str(path), "--format", "json"]
    piped = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    assert piped.stdout == want + "\n" and len(piped.stdout) > 1 << 20  # far past a pipe's buffer
    out = tmp_path / "report.json"
    written = subprocess.run([*command, "-o", str(out)], capture_output=True, text=True, timeout=120,
                             check=True)
    assert written.stdout == f"Wrote {out}.\n" and out.read_text(encoding="utf-8") == want + "\n"


@pytest.mark.slow
def test_backup_is_a_consistent_working_copy(runner, tmp_path, monkeypatch):
    assert runner.invoke(cli, ["demo"]).exit_code == 0
    counts = _counts()
    dest = tmp_path / "backup"
    result = runner.invoke(cli, ["backup", str(dest)])
    assert result.exit_code == 0, result.output
    again = runner.invoke(cli, ["backup", str(dest)])
    assert again.exit_code == 1 and "not empty" in again.output
    monkeypatch.setenv("REVIEW_DATA_DIR", str(dest))
    assert _counts() == counts  # the copy opens as a lab with the same rows
    lab = open_lab(load_settings())
    with lab.sessions() as s:
        for path in s.scalars(select(Restoration.path)):
            assert lab.store.open_image(path).size[0] > 0  # every image it refers to is there
    assert not (dest / "images" / "display").exists()  # display JPEGs are a cache, made again
    assert lab.store.display_jpeg(path)[:2] == b"\xff\xd8"


def test_studies_create_and_list(runner):
    ok = runner.invoke(cli, ["studies", "create", "Faces", "--guideline", "fidelity:2",
                             "--raters-per-item", "5", "--max-per-reviewer", "40"])
    assert ok.exit_code == 0, ok.output
    assert runner.invoke(cli, ["studies", "create", "Faces"]).exit_code == 1
    bad = runner.invoke(cli, ["studies", "create", "X", "--guideline", "fidelity:9"])
    assert bad.exit_code == 1 and "No guideline version" in bad.output
    bad_rate = runner.invoke(cli, ["studies", "create", "Y", "--gold-rate", "2"])
    assert bad_rate.exit_code == 1 and "gold_rate" in bad_rate.output
    listing = runner.invoke(cli, ["studies", "list"]).output
    assert "Faces  (0 items, 5 raters per item)" in listing
    lab = open_lab(load_settings())
    from review.labeling.settings import StudySettings
    from review.labeling.study import get_study

    with lab.sessions() as s:
        study = get_study(s, "Faces")
        assert StudySettings.of(study).max_items_per_reviewer == 40
        assert study.guideline_version.version == 2


def test_every_review_error_is_one_line_and_other_errors_keep_their_traceback():
    """The command group is the CLI's one handler: any ReviewError subclass, from a command of a
    sub-group too, prints `Error: <message>` and exits 1; a bug is not hidden as a message."""
    group = ReviewCommands("lab")
    sub = click.Group("studies")
    group.add_command(sub)

    @sub.command()
    def arms() -> None:
        raise CohortError("Study 'x' has no guideline version; assign one first.")

    @group.command()
    def bug() -> None:
        raise ValueError("a bug")

    refused = CliRunner().invoke(group, ["studies", "arms"])
    assert refused.exit_code == 1
    assert refused.output == "Error: Study 'x' has no guideline version; assign one first.\n"
    crashed = CliRunner().invoke(group, ["bug"])
    assert isinstance(crashed.exception, ValueError) and "Error:" not in crashed.output
