"""The admin Generate page through AppTest: a plan started from the form runs in a background
worker process and lands in the study; reviewers are stopped."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from db.models import GenerationJob, Restoration, StudyItem
from review.labeling.study import StudyConfig, ensure_study
from review.media import catalog

SCRIPT = """
from types import SimpleNamespace

from review.config import load_settings
from review.database import open_lab
from review.ui.generate_page import render

render(open_lab(load_settings()), SimpleNamespace(id=1, username="boss", role={role!r}))
"""


def _app(tmp_path: Path, role: str) -> AppTest:
    path = tmp_path / f"generate_{role}.py"
    path.write_text(SCRIPT.format(role=role))
    return AppTest.from_file(str(path), default_timeout=60)


def test_start_a_plan_from_the_form_and_watch_it_finish(lab, tmp_path):
    arr = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)
    with lab.sessions() as s, s.begin():
        catalog.add_source(s, lab.store, Image.fromarray(arr), title="noise", content="object")
        ensure_study(s, StudyConfig(name="gen"), None)
    at = _app(tmp_path, "admin").run()
    assert not at.exception, at.exception
    assert any("not configured" in i.value for i in at.info)  # SD1.5 status said plainly
    at.text_input(key="lv_defocus").set_value("2")
    at.multiselect[1].set_value(["wiener", "blurred"])
    at.button[0].click().run()  # "Start generation" (the form's submit button)
    assert not at.exception, at.exception
    assert any("started in the background" in m.value for m in at.success)
    deadline = time.time() + 90
    while time.time() < deadline:
        with lab.sessions() as s:
            status = s.scalar(select(GenerationJob.status))
        if status in ("done", "failed", "cancelled"):
            break
        time.sleep(0.5)
    assert status == "done"
    with lab.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Restoration)) == 2
        assert s.scalar(select(func.count()).select_from(StudyItem)) == 2


def test_reviewers_are_stopped(lab, tmp_path):
    at = _app(tmp_path, "reviewer").run()
    assert any("only available to admins" in e.value for e in at.error)
