"""The admin Generate page through AppTest: a plan started from the form runs in a background
worker process and lands in the study; reviewers are stopped."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from db.models import GenerationJob, Restoration, StudyItem
from review.labeling.study import StudyConfig, ensure_study
from review.media import catalog
from tests.support import wait_until
from tests.support_app import page_app, page_user


@pytest.mark.slow
def test_start_a_plan_from_the_form_and_watch_it_finish(lab):
    arr = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)
    with lab.sessions() as s, s.begin():
        catalog.add_source(s, lab.store, Image.fromarray(arr), title="noise", content="object")
        ensure_study(s, StudyConfig(name="gen"), None)
    at = page_app("generate_page", page_user("admin")).run()
    assert not at.exception, at.exception
    assert any("not configured" in i.value for i in at.info)  # SD1.5 status said plainly
    at.text_input(key="lv_defocus").set_value("2")
    at.multiselect[1].set_value(["wiener", "blurred"])
    at.button[0].click().run()  # "Start generation" (the form's submit button)
    assert not at.exception, at.exception
    assert any("started in the background" in m.value for m in at.success)

    def finished_status() -> str | None:
        with lab.sessions() as s:
            status = s.scalar(select(GenerationJob.status))
        return status if status in ("done", "failed", "cancelled") else None

    assert wait_until(finished_status, timeout=90, what="the background job to finish") == "done"
    with lab.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Restoration)) == 2
        assert s.scalar(select(func.count()).select_from(StudyItem)) == 2


def test_reviewers_are_stopped(lab):
    at = page_app("generate_page", page_user("reviewer")).run()
    assert any("only available to admins" in e.value for e in at.error)
