"""Generation jobs: plans, progress, per-item errors, cancellation, resume after a kill, and the
tiny SD1.5 pipeline through the same path as real weights."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import socket
import subprocess
import sys
from datetime import UTC, timedelta

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from db.models import GenerationJob, Restoration, StudyItem, utcnow
from db.models import GenerationWorkItem as WorkItem
from review.generation.plan import GenerationPlan, JobBusy, JobError, create_job
from review.generation.workers import LEASE, cancel, job_errors, run_job
from review.labeling.study import StudyConfig, ensure_study
from review.media import catalog

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _source(lab, size=48, seed=0):
    rng = np.random.default_rng(seed)
    arr = (rng.random((size, size, 3)) * 255).astype(np.uint8)
    arr[size // 4: size // 2, :, :] = 250  # some structure to blur
    with lab.sessions() as s, s.begin():
        src = catalog.add_source(s, lab.store, Image.fromarray(arr), title=f"src{seed}")
        ensure_study(s, StudyConfig(name="jobs"), None)
        return src.id


def _count(lab, model):
    with lab.sessions() as s:
        return s.scalar(select(func.count()).select_from(model))


def _classical_plan(source_ids):
    return GenerationPlan(
        source_ids=source_ids,
        blurs=[{"kind": "defocus", "level": 2.0}, {"kind": "motion_line", "level": 5.0}],
        restorers=[{"method": "wiener", "params": {"balance": [0.01, 0.05]}},
                   {"method": "blurred"}, {"method": "hidden_reference"}],
    )


def test_plan_expands_the_parameter_grid_with_defaults():
    units = _classical_plan([1]).units()
    assert len(units) == 2 * (2 + 1 + 1)
    wiener = [u for u in units if u.method == "wiener"]
    assert sorted(u.params["balance"] for u in wiener) == [0.01, 0.01, 0.05, 0.05]
    assert all("pad_mode" in u.params for u in wiener)  # defaults filled in: stable identity


def test_invalid_plans_are_refused_clearly(lab):
    with pytest.raises(JobError, match="at least one"):
        GenerationPlan([], [], []).units()
    with pytest.raises(JobError, match="balance"):
        GenerationPlan([1], [{"kind": "defocus", "level": 2}],
                       [{"method": "wiener", "params": {"balance": -1}}]).units()
    with pytest.raises(JobError, match="blur entry of the plan is malformed"):
        GenerationPlan([1], [{"kind": "defocus"}], [{"method": "blurred"}]).units()
    with pytest.raises(JobError, match="wiener needs the blur kernel"):
        GenerationPlan([1], [{"kind": "real", "level": None}], [{"method": "wiener"}]).units()
    _source(lab)
    with pytest.raises(JobError, match="Unknown source"):
        create_job(lab, "jobs", _classical_plan([999]))


def test_a_photo_that_arrived_blurred_is_planned_only_as_it_is(lab):
    from review.media.catalog import add_blurred_photo, plannable_sources

    sharp = _source(lab)
    with lab.sessions() as s, s.begin():
        blurred = add_blurred_photo(s, lab.store, Image.new("RGB", (40, 40), "gray"), title="shaky",
                                    content="object").id
        assert [src.id for src in plannable_sources(s)] == [sharp, blurred]  # sharp ones first
    mixed = GenerationPlan([sharp, blurred], [{"kind": "defocus", "level": 2.0}], [{"method": "blurred"}])
    with pytest.raises(JobError, match=f"#{blurred} arrived blurred: use them as they are"):
        create_job(lab, "jobs", mixed)
    assert _count(lab, GenerationJob) == 0
    as_is = GenerationPlan([blurred], [{"kind": "real", "level": None}], [{"method": "blurred"}])
    assert run_job(lab, create_job(lab, "jobs", as_is)) == "done"
    assert _count(lab, StudyItem) == 1


def test_job_runs_records_progress_and_is_idempotent(lab):
    sid = _source(lab)
    job = create_job(lab, "jobs", _classical_plan([sid]))
    seen = []
    assert run_job(lab, job, lambda done, total: seen.append((done, total))) == "done"
    assert seen[-1] == (8, 8)
    assert _count(lab, Restoration) == 8 and _count(lab, StudyItem) == 8
    with lab.sessions() as s:
        j = s.get(GenerationJob, job)
        assert (j.status, j.progress_done, j.progress_total) == ("done", 8, 8)
    again = create_job(lab, "jobs", _classical_plan([sid]))
    assert run_job(lab, again) == "done"
    assert _count(lab, Restoration) == 8 and _count(lab, StudyItem) == 8


def test_per_item_errors_are_recorded_and_the_job_goes_on(lab):
    sid = _source(lab)
    plan = GenerationPlan([sid], [{"kind": "defocus", "level": 2.0}],
                          [{"method": "wiener"}, {"method": "sd15_img2img"}])
    job = create_job(lab, "jobs", plan)  # sd15 without REVIEW_SD15_PATH fails per item
    assert run_job(lab, job) == "done"
    errors = job_errors(lab, job)
    assert len(errors) == 1 and "REVIEW_SD15_PATH" in errors[0].error
    assert _count(lab, Restoration) == 1
    with lab.sessions() as s:
        assert "1 of 2 items failed" in s.get(GenerationJob, job).error


def test_cancel_stops_between_items(lab):
    sid = _source(lab)
    job = create_job(lab, "jobs", _classical_plan([sid]))
    assert run_job(lab, job, lambda done, total: cancel(lab, job) if done == 2 else None) \
        == "cancelled"
    with lab.sessions() as s:
        j = s.get(GenerationJob, job)
        assert j.status == "cancelled" and j.progress_done == 2
    queued = create_job(lab, "jobs", _classical_plan([sid]))
    cancel(lab, queued)
    with pytest.raises(JobError, match="cancelled"):
        run_job(lab, queued)


def _one_unit_plan(source_id):
    return GenerationPlan([source_id], [{"kind": "defocus", "level": 2.0}], [{"method": "blurred"}])


def _running_in(lab, job, worker, lease_age=timedelta(0)):
    """Record the job as running in `worker`, holding every item under a lease last renewed
    `lease_age` ago; returns when that lease runs out."""
    with lab.sessions() as s, s.begin():
        j = s.get(GenerationJob, job)
        j.status, j.worker, j.heartbeat_at = "running", worker, utcnow() - lease_age
        expires = utcnow() - lease_age + LEASE
        for item in s.scalars(select(WorkItem).where(WorkItem.job_id == job)):
            item.state, item.lease_owner, item.lease_expires_at = "claimed", worker, expires
    with lab.sessions() as s:
        expires = s.scalar(select(WorkItem.lease_expires_at).where(WorkItem.job_id == job))
    return expires if expires.tzinfo else expires.replace(tzinfo=UTC)


def test_a_live_job_is_refused_saying_when_it_can_be_taken_over(lab):
    job = create_job(lab, "jobs", _one_unit_plan(_source(lab)))
    deadline = _running_in(lab, job, "elsewhere:1", timedelta(seconds=30))
    with pytest.raises(JobBusy, match="running in elsewhere:1 \\(another host") as refused:
        run_job(lab, job)
    message = str(refused.value)
    assert f"taken over from {deadline.astimezone():%Y-%m-%d %H:%M:%S %Z}" in message
    wait = int(re.search(r"\(in (\d+) s\)", message).group(1))
    assert LEASE.total_seconds() - 40 <= wait <= LEASE.total_seconds() - 30
    this_process = f"{socket.gethostname()}:{os.getpid()}"  # alive, on this host
    _running_in(lab, job, this_process)
    with pytest.raises(JobError, match="a live process on this host.*at once, once that process"):
        run_job(lab, job)
    _running_in(lab, job, "elsewhere:1", LEASE + timedelta(seconds=1))
    assert run_job(lab, job) == "done"  # stale: taken over


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="process states need /proc")
def test_a_job_whose_worker_ended_on_this_host_is_taken_over_at_once(lab):
    sid = _source(lab)
    host = socket.gethostname()
    reused = create_job(lab, "jobs", _one_unit_plan(sid))
    _running_in(lab, reused, f"{host}:{os.getpid()}@1")  # the pid is now a later process's
    assert run_job(lab, reused) == "done"
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:  # the worker exited and its parent (the page that started it) has not reaped it yet
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
        zombie = create_job(lab, "jobs", _one_unit_plan(sid))
        _running_in(lab, zombie, f"{host}:{child.pid}")
        assert run_job(lab, zombie) == "done"
    finally:
        child.wait()


#: `python -m review generate --job ID --quiet`, except that the worker stops after storing its
#: first unit and says so: the test kills it at that known point, not whenever a poll notices.
HANG_AFTER_FIRST_UNIT = """
import sys

import review.generation.workers
from review.cli import main

real_finish_item = review.generation.workers._finish_item


def finish_item_then_hang(*args):
    real_finish_item(*args)
    print("unit stored", flush=True)
    sys.stdin.read()  # until the test kills this process


review.generation.workers._finish_item = finish_item_then_hang
sys.argv = ["review", "generate", "--job", sys.argv[1], "--quiet"]
main()
"""


@pytest.mark.slow
def test_job_resumes_after_the_worker_is_killed(lab):
    sid = _source(lab, size=96)
    plan = GenerationPlan([sid], [{"kind": "defocus", "level": 3.0}],
                          [{"method": "richardson_lucy", "params": {"num_iter": [5, 10, 15, 20,
                                                                                   25, 30]}}])
    job = create_job(lab, "jobs", plan)
    env = dict(os.environ, REVIEW_DATA_DIR=str(lab.settings.data_dir))
    worker = subprocess.Popen([sys.executable, "-c", HANG_AFTER_FIRST_UNIT, str(job)], cwd=ROOT, env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout.readline() == "unit stored\n"  # "" if the worker died first
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.communicate()
    assert _count(lab, Restoration) == 1
    with lab.sessions() as s:
        j = s.get(GenerationJob, job)
        assert j.status == "running" and j.progress_done == 1  # the killed worker left it "running"
    # at once: the heartbeat is fresh, but the process it names is gone from this host
    resume = subprocess.run([sys.executable, "-m", "review", "generate", "--job", str(job), "--quiet"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert resume.returncode == 0, resume.stdout + resume.stderr
    assert f"Job {job}: done." in resume.stdout
    assert _count(lab, Restoration) == 6 and _count(lab, StudyItem) == 6


@pytest.mark.sd15
def test_tiny_sd15_grid_through_the_job_runner(lab):
    sid = _source(lab, size=64)
    plan = GenerationPlan([sid], [{"kind": "gaussian", "level": 1.5}],
                          [{"method": "sd15_img2img",
                            "params": {"strength": [0.3, 0.6], "steps": 4}}],
                          seeds=[0, 1], model="tiny")
    job = create_job(lab, "jobs", plan)
    assert run_job(lab, job) == "done", job_errors(lab, job)
    with lab.sessions() as s:
        rows = s.scalars(select(Restoration)).all()
    assert len(rows) == 4 and all(r.is_smoke_test for r in rows)
    assert {(r.params["strength"], r.params["seed"]) for r in rows} == \
        {(0.3, 0), (0.3, 1), (0.6, 0), (0.6, 1)}
    assert len({r.sha256 for r in rows}) == 4


def _other_tiny_weights(folder, dest, seed):
    """A copy of the tiny model's folder whose UNet weights are changed by seeded noise: other
    weights, same file names and sizes (what a merged or fine-tuned checkpoint saved over the
    old one looks like)."""
    import shutil

    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    shutil.copytree(folder, dest)
    for f in (dest / "unet").glob("*.safetensors"):
        with safe_open(str(f), "pt") as fh:
            meta = fh.metadata()
            state = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - not a dict
        gen = torch.Generator().manual_seed(seed)
        state = {k: v + 0.05 * torch.randn(v.shape, generator=gen, dtype=v.dtype)
                 if v.is_floating_point() else v for k, v in state.items()}
        size = f.stat().st_size
        save_file(state, str(f), metadata=meta)
        assert f.stat().st_size == size
    return dest


@pytest.mark.sd15
def test_a_job_with_other_weights_makes_new_restorations(lab, tmp_path):
    """The model is part of a restoration's identity: after a smoke-test (tiny) run, the same plan
    with other weights makes its own restorations instead of reporting model A's as done; run
    again, it finds its own; restorers without a model are shared."""
    sid = _source(lab, size=64)

    def plan(model):
        return GenerationPlan([sid], [{"kind": "gaussian", "level": 1.5}],
                              [{"method": "sd15_img2img", "params": {"strength": 0.5, "steps": 4}},
                               {"method": "wiener"}], seeds=[0, 1], model=model)

    job_a = create_job(lab, "jobs", plan("tiny"))
    assert run_job(lab, job_a) == "done", job_errors(lab, job_a)
    other = _other_tiny_weights(lab.settings.models_dir / "tiny_sd15", tmp_path / "model_b", 1)
    job_b = create_job(lab, "jobs", plan(str(other)))
    assert run_job(lab, job_b) == "done", job_errors(lab, job_b)
    with lab.sessions() as s:
        rows = s.scalars(select(Restoration).order_by(Restoration.id)).all()
        sd = [r for r in rows if r.method == "sd15_img2img"]
        idents = {r.model_identity for r in sd}
        assert len(sd) == 4 and len(idents) == 2, [(r.id, r.model_identity) for r in sd]
        assert all(r.provenance["model_identity"] == r.model_identity for r in sd)
        assert len({r.sha256 for r in sd}) == 4  # B's outputs are B's, not A's
        assert [r.model_identity for r in rows if r.method == "wiener"] == [""]
        assert s.scalar(select(func.count()).select_from(StudyItem)) == 5
    job_again = create_job(lab, "jobs", plan(str(other)))
    assert run_job(lab, job_again) == "done"
    assert _count(lab, Restoration) == 5


@pytest.mark.sd15
def test_two_models_draw_two_curves_and_a_proposal_runs_with_its_curves_weights(lab, tmp_path):
    """Restorations of one setting by two models are two curves (the setting names the model),
    and a proposal on one of them plans with that curve's weights: with both models configured
    (no default), the job finds the curve's weights among them by content."""
    from review.answer.boundary import curve_setting
    from review.generation.proposals import proposal_plan
    from review.media.restore.sd15_tiny import MARKER

    sid = _source(lab, size=64)

    def plan(model):
        return GenerationPlan([sid], [{"kind": "gaussian", "level": 1.5}],
                              [{"method": "sd15_img2img", "params": {"strength": 0.5, "steps": 4}}],
                              model=model)

    assert run_job(lab, create_job(lab, "jobs", plan("tiny"))) == "done"  # builds the tiny weights
    tiny = lab.settings.models_dir / "tiny_sd15"
    models = [_other_tiny_weights(tiny, tmp_path / name, seed) for name, seed in (("b", 1), ("c", 2))]
    for model in models:  # as if they were real weights: their outputs draw curves
        (model / MARKER).unlink()
        job = create_job(lab, "jobs", plan(str(model)))
        assert run_job(lab, job) == "done", job_errors(lab, job)
    with lab.sessions() as s:
        made = s.scalars(select(Restoration).where(Restoration.is_smoke_test.is_(False))
                         .order_by(Restoration.id)).all()
        settings = {curve_setting(r.method, r.params, r.model_identity) for r in made}
        assert len(made) == 2 and len(settings) == 2 and all("model=" in x for x in settings), settings
        first = made[0].model_identity
        study_id = s.scalar(select(StudyItem.study_id))
        plan = proposal_plan(s, study_id, restorer="sd15_img2img",
                             setting=curve_setting(made[0].method, made[0].params, first),
                             blur_kind="gaussian", level=3.0)
    assert plan.model is None and plan.model_identity == first
    lab.settings = dataclasses.replace(lab.settings, sd15_path=os.pathsep.join(map(str, models)))
    job = create_job(lab, "jobs", plan)
    assert run_job(lab, job) == "done", job_errors(lab, job)
    with lab.sessions() as s:
        new = s.scalars(select(Restoration).where(Restoration.id > made[-1].id)).all()
        assert new and {r.model_identity for r in new} == {first}
    gone = create_job(lab, "jobs", dataclasses.replace(plan, model_identity="sd15-" + "0" * 64))
    assert run_job(lab, gone) != "done"
    assert any("not among the configured ones" in e.error for e in job_errors(lab, gone))
