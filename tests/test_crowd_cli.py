"""`python -m review pool ...` and `python -m review cleanse ...` on a real lab: a pool added,
listed, its link given out and then voided, closed and opened; a study's crowd submissions
cleansed, one decision overridden by an admin, items reopened and each export written."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from review.accounts.links import lab_secret, read_link
from review.cli import cli
from review.config import load_settings
from review.database import Lab
from review.labeling.participants import JoinRefused, join
from tests.support import build_study
from tests.support_crowd import crowd_session


@pytest.fixture
def lab_and_runner(lab: Lab) -> tuple[Lab, CliRunner]:
    build_study(lab, 12, raters_per_item=2)
    return lab, CliRunner()


def _ok(runner: CliRunner, *args: str) -> str:
    result = runner.invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_pool_add_list_link_close_open_void(lab_and_runner) -> None:  # noqa: ANN001
    lab, runner = lab_and_runner
    said = _ok(runner, "pool", "add", "--study", "Portraits", "--name", "Prolific wave 1", "--platform",
               "prolific", "--completion-code", "C0DE", "--quota", "30", "--pay-per-item", "0.1",
               "--currency", "GBP", "--training-items", "0", "--trap-rate", "0.2")
    assert "Added pool 'Prolific wave 1' (id 1)" in said
    listed = _ok(runner, "pool", "list", "--study", "Portraits")
    assert "Prolific wave 1  [crowd, prolific, open] 0 participants, 30 places left, 0.1 GBP/item" in listed
    link = _ok(runner, "pool", "link", "1", "--base-url", "https://lab.example.org").strip().splitlines()[0]
    assert link.startswith("https://lab.example.org/_lab/join?t=")
    assert link.endswith("&PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}"
                         "&SESSION_ID={{%SESSION_ID%}}")
    token = link.split("t=")[1].split("&")[0]
    secret = lab_secret(load_settings())
    assert read_link(secret, token).pool_id == 1
    assert "is closed" in _ok(runner, "pool", "close", "1")
    assert "[crowd, prolific, closed]" in _ok(runner, "pool", "list", "--study", "Portraits")
    assert "is open" in _ok(runner, "pool", "open", "1")
    assert "now version 2" in _ok(runner, "pool", "void", "1")
    with pytest.raises(JoinRefused, match="withdrawn"), lab.write() as s:
        join(s, secret, token, {"PROLIFIC_PID": "p1"}, "addr")
    bad = runner.invoke(cli, ["pool", "add", "--study", "Portraits", "--name", "x", "--platform", "mturk"])
    assert bad.exit_code == 1 and "completion code" in bad.output  # a domain refusal, one line


def test_cleanse_override_reopen_and_export(lab_and_runner, tmp_path) -> None:  # noqa: ANN001
    lab, runner = lab_and_runner
    _ok(runner, "pool", "add", "--study", "Portraits", "--name", "crowd", "--completion-code", "OK",
        "--no-viewing-check", "--training-items", "0", "--qualification-items", "0",
        "--items-per-session", "6", "--trap-rate", "0.34", "--pay-per-item", "0.5")
    assert "No finished crowd submissions" in _ok(runner, "cleanse", "--study", "Portraits")
    token = _ok(runner, "pool", "link", "1", "--base-url", "https://x.org").split("t=")[1].split("&")[0]
    secret = lab_secret(load_settings())
    crowd_session(lab, secret, token, {"pid": "good"})
    flat = crowd_session(lab, secret, token, {"pid": "flat"}, score=lambda _i: 4)
    crowd_session(lab, secret, token, {"pid": "spam"}, trap_right=False)
    said = _ok(runner, "cleanse", "--study", "Portraits")
    assert said.strip() == "3 submissions: 1 accept and use, 1 accept but do not use, 1 reject."
    refused = runner.invoke(cli, ["cleanse", "--study", "Portraits", "--override", str(flat),
                                  "--outcome", "accept_use", "--reason", "checked"])
    assert refused.exit_code == 2 and "--by ADMIN" in refused.output
    said = _ok(runner, "cleanse", "--study", "Portraits", "--override", str(flat), "--outcome", "accept_use",
               "--reason", "Checked by hand", "--by", "admin")
    assert f"Participant {flat}: accept_use" in said
    report = _ok(runner, "cleanse", "--study", "Portraits", "--export", "report")
    assert report.splitlines()[0].startswith("participant,pool,platform,platform_id,live_items")
    assert f"\n{flat},crowd,plain,flat," in report and ",Checked by hand,,admin," in report
    out = tmp_path / "approve.csv"
    _ok(runner, "cleanse", "--study", "Portraits", "--export", "approve", "-o", str(out))
    rows = out.read_text().splitlines()
    assert rows[0] == "pid,decision,reason" and "good,APPROVE," in rows and "flat,APPROVE," in rows
    assert any(r.startswith("spam,REJECT,Your answers did not pass") for r in rows)
    bonus = _ok(runner, "cleanse", "--study", "Portraits", "--export", "bonus", "--platform", "plain")
    assert bonus.splitlines() == ["pid,amount,currency,items", "good,3.00,USD,6", "flat,3.00,USD,6"]
    said = _ok(runner, "cleanse", "--study", "Portraits", "--reopen")
    assert said.strip() == "6 items reopened (1 submission set aside); 12 more ratings needed on 9 items."

