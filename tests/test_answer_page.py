"""The answer page ("how far can it go?") on the demo's simulated study, through AppTest, and
accepting a proposal into a generation job (review.generation.proposals.accept_proposal)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from db.models import GenerationJob, SourceImage
from review.analysis.export import ratings_frame
from review.answer.sentences import study_answer
from review.database import Lab
from review.demo import SIMULATED_LEVELS, SIMULATED_STUDY
from review.generation.plan import GenerationPlan, JobError
from review.generation.proposals import accept_proposal
from review.labeling.study import get_study
from review.ui.answer_page import chart_frames
from tests.support import wait_until
from tests.support_app import page_app, page_user, texts


def _answer(lab: Lab):
    with lab.sessions() as s:
        return study_answer(ratings_frame(s, get_study(s, SIMULATED_STUDY)), SIMULATED_STUDY)


def test_page_states_the_answer_and_switches_simulated_ratings(simulated_demo: Lab):
    at = page_app("answer_page", page_user("qa", username="quinn")).run()
    assert not at.exception, [e.value for e in at.exception]
    shown = texts(at)
    answer = _answer(simulated_demo)
    wiener = next(c for c in answer.curves if c.restorer == "wiener")
    # The sentence of the domain, word for word, and the simulated ratings flagged as such.
    assert "Wiener deconvolution stays faithful" in shown
    # What is estimated, said as it is: a share of ratings, not of restorations (issue 21).
    assert "80 % of ratings score it 4 or more)" in shown and "of restorations rated" not in shown
    assert f"{answer.simulated_ratings} of these {answer.ratings} ratings are SIMULATED" in shown
    assert [m.value for m in at.metric] == [str(answer.ratings), "0", str(answer.simulated_ratings)]
    assert len(at.get("vega_lite_chart")) == 1  # one blur kind: camera shake
    assert wiener.proposals and "An admin can accept a proposal." in shown  # QA sees, cannot accept

    at.toggle(key="answer_simulated").set_value(False).run()
    assert ("No answer yet: no restorer has ratings at two or more blur levels from real reviewers"
            in texts(at))
    assert [m.value for m in at.metric][2] == "left out"


def test_bad_threshold_and_faithful_minimum_are_refused(simulated_demo: Lab):
    at = page_app("answer_page", page_user("admin")).run()
    at.number_input(key="answer_threshold").set_value(1.0).run()
    assert [e.value for e in at.error] == ["threshold must lie strictly between 0 and 1 (got 1.0). "
                                           "Choose a threshold such as 0.8."]
    assert not at.get("vega_lite_chart")
    at.number_input(key="answer_threshold").set_value(0.8)
    at.number_input(key="answer_faithful_min").set_value(1).run()
    assert "must be above the lowest score 1" in at.error[0].value


def test_chart_layers_stay_on_the_share_scale(simulated_demo: Lab):
    f = chart_frames(_answer(simulated_demo), "camera_shake")
    band, points = f["band"], f["points"]
    assert band["lo"].min() >= 0 and band["hi"].max() <= 1 and (band["lo"] <= band["mean"]).all()
    assert sorted(points["level"].unique()) == list(SIMULATED_LEVELS)
    assert (points["ratings"] == 24).all() and (points["lo"] <= points["share"]).all()
    wiener = f["bounds"][f["bounds"]["series"] == "wiener"].iloc[0]
    assert wiener["lo"] <= wiener["level"] <= wiener["hi"]


def test_accepting_a_proposal_queues_a_job_over_the_study_sources(simulated_demo: Lab):
    answer = _answer(simulated_demo)
    wiener = next(c for c in answer.curves if c.restorer == "wiener")
    level = wiener.proposals[0]["level"]
    at = page_app("answer_page", page_user("admin")).run()
    proposals = at.selectbox(key="answer_proposal")
    labels = list(proposals.options)
    wiener_index = next(i for i, label in enumerate(labels) if label.startswith("wiener"))
    proposals.set_value(wiener_index).run()
    at.button(key="answer_accept").click().run()
    assert not at.exception, [e.value for e in at.exception]
    success = [s.value for s in at.success]
    with simulated_demo.sessions() as s:
        job = s.scalars(select(GenerationJob)).one()
        sources = set(s.scalars(select(SourceImage.id)))
        plan = GenerationPlan.from_json(job.plan)
    assert success == [f"Generation job {job.id} queued: start it on the Generate page (this study, "
                       "tab Jobs, button Start); its items join this study."]
    assert job.status == "queued" and set(plan.source_ids) == sources and len(sources) == 2
    assert [(b["kind"], b["level"], b["seed"]) for b in plan.blurs] == [("camera_shake", level, 7)]
    assert [r["method"] for r in plan.restorers] == ["wiener"]
    assert job.progress_total == 2  # one restoration per source at the new level
    with simulated_demo.sessions() as s, s.begin(), pytest.raises(JobError, match="positive number"):
        accept_proposal(s, job.study_id, restorer="wiener", setting="", blur_kind="camera_shake", level=-1)
    with simulated_demo.sessions() as s, s.begin(), pytest.raises(JobError, match="no sd15_img2img items"):
        accept_proposal(s, job.study_id, restorer="sd15_img2img", setting="", blur_kind="camera_shake",
                        level=5.0, strength=0.3)


def test_metrics_section_shows_correlations_and_image_pairs(simulated_demo: Lab):
    at = page_app("answer_page", page_user("admin")).run()
    assert "Objective metrics against people" in texts(at) and len(at.dataframe) == 1  # proposals only
    at.toggle(key="answer_metrics").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    corr = at.dataframe[1].value
    assert len(corr) == 6 and set(corr["metric"]) == {"psnr", "ssim", "blur_effect"}
    pairs = [c.value for c in at.caption if c.value.startswith("Item ")]
    assert len(pairs) == 6
    shown = texts(at)
    assert shown.count("Reference (sharp source)") == 6


@pytest.mark.slow
def test_an_accepted_proposal_is_started_where_the_message_says(simulated_demo: Lab):
    """The job of an accepted proposal is queued with no worker: the Generate page's Jobs tab, for
    the study, offers Start next to Cancel, and Start runs it to the end in a background worker."""
    answer = _answer(simulated_demo)
    wiener = next(c for c in answer.curves if c.restorer == "wiener")
    with simulated_demo.sessions() as s, s.begin():
        study_id = get_study(s, SIMULATED_STUDY).id
        job_id = accept_proposal(s, study_id, restorer="wiener", setting=wiener.setting,
                                 blur_kind="camera_shake", level=wiener.proposals[0]["level"])
    at = page_app("generate_page", page_user("admin")).run()
    at.selectbox(key="gen_study").set_value(SIMULATED_STUDY).run()
    assert not at.exception, [e.value for e in at.exception]
    assert {b.key for b in at.button} >= {f"cancel_{job_id}", f"start_{job_id}"}
    at.button(key=f"start_{job_id}").click().run()
    assert not at.exception, [e.value for e in at.exception]

    def finished() -> str | None:
        with simulated_demo.sessions() as s:
            status = s.get(GenerationJob, job_id).status
        return status if status in ("done", "failed", "cancelled") else None

    assert wait_until(finished, timeout=120, what="the started job to finish") == "done"
    with simulated_demo.sessions() as s:
        assert s.get(GenerationJob, job_id).progress_done == 2
    at.run()
    assert f"start_{job_id}" not in {b.key for b in at.button}  # done: nothing left to start
