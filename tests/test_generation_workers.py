"""Several generation workers on one job: items claimed through the database (SQLite and
PostgreSQL), each done exactly once, a killed worker's item claimed again when its lease runs out."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, timedelta
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from sqlalchemy import delete, func, select

from db.models import GenerationJob, JobItemError, Restoration, StudyItem, utcnow
from db.models import GenerationWorkItem as WorkItem
from review.cli import cli
from review.config import SETTING_NAMES, load_settings, settings_env
from review.database import Lab, open_lab
from review.generation import workers as jobs
from review.generation.plan import GenerationPlan, create_job, work_groups
from review.generation.workers import BUSY_EXIT
from review.labeling.study import StudyConfig, ensure_study
from review.media import catalog

ROOT = Path(__file__).resolve().parent.parent
LEASE_S = 2

#: `python -m review generate --job ID --quiet --lease S` as a worker of another machine (so only
#: its lease, not this host's process table, can free its item) that announces its first claimed
#: item and then hangs in it until the test kills it.
HANG_IN_FIRST_ITEM = """
import sys

import review.generation.workers
from review.cli import main


def announce_then_hang(lab, study_id, plan, group):
    print("claimed", flush=True)
    sys.stdin.read()


review.generation.workers._worker_name = lambda: "otherhost:4242"
review.generation.workers._run_group = announce_then_hang
sys.argv = ["review", "generate", "--job", sys.argv[1], "--quiet", "--lease", sys.argv[2]]
main()
"""


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def shared_lab(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lab:
    """A lab whose database the worker processes share: a SQLite file, or a PostgreSQL database."""
    env = {"REVIEW_DATA_DIR": str(tmp_path / "data")}
    if request.param == "postgresql":
        env["REVIEW_DATABASE_URL"] = request.getfixturevalue("pg_url")
    for key in SETTING_NAMES:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("REVIEW_DATA_DIR", env["REVIEW_DATA_DIR"])
    return open_lab(load_settings(env), migrate=True)


def _job(lab: Lab, sources: int, restorers: list[dict]) -> int:
    rng = np.random.default_rng(0)
    ids = []
    with lab.sessions() as s, s.begin():
        ensure_study(s, StudyConfig(name="workers"), None)
        for n in range(sources):
            arr = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
            arr[16:32] = 250
            ids.append(catalog.add_source(s, lab.store, Image.fromarray(arr), title=f"src{n}").id)
    blurs = [{"kind": "defocus", "level": 2.0}, {"kind": "motion_line", "level": 5.0}]
    return create_job(lab, "workers", GenerationPlan(ids, blurs, restorers))


def _count(lab: Lab, model: type, *where) -> int:
    with lab.sessions() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def _worker(lab: Lab, job: int, script: str | None = None) -> subprocess.Popen:
    args = ["-c", script, str(job), str(LEASE_S)] if script else \
        ["-m", "review", "generate", "--job", str(job), "--quiet", "--lease", str(LEASE_S)]
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, text=True,
                            env=dict(os.environ, **settings_env(lab.settings)),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _aware(moment):
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@pytest.mark.slow
def test_three_workers_one_killed_every_item_done_exactly_once(shared_lab):
    lab = shared_lab
    job = _job(lab, 2, [{"method": "wiener", "params": {"balance": [0.01, 0.02, 0.05]}},
                        {"method": "richardson_lucy", "params": {"num_iter": [5, 10]}},
                        {"method": "blurred"}, {"method": "hidden_reference"}])
    units = 2 * 2 * 7
    assert _count(lab, WorkItem, WorkItem.job_id == job) == units  # one item per unit, from the start
    victim = _worker(lab, job, HANG_IN_FIRST_ITEM)
    try:
        assert victim.stdout.readline() == "claimed\n", victim.communicate()[0]
        others = [_worker(lab, job), _worker(lab, job)]
        deadline = time.monotonic() + 60
        while _count(lab, WorkItem, WorkItem.state == "done") < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        with lab.sessions() as s:  # still leased to the live victim: its renewals kept it
            held = s.scalar(select(WorkItem).where(WorkItem.lease_owner == "otherhost:4242"))
            assert held.state == "claimed" and _aware(held.lease_expires_at) > utcnow()
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.communicate()
    killed_at = utcnow()
    with lab.sessions() as s:  # its last renewal, now final
        expired_at = _aware(s.get(WorkItem, held.id).lease_expires_at)
    assert expired_at > killed_at
    said = [w.communicate(timeout=60)[0] for w in others]
    assert [w.returncode for w in others] == [0, 0], said
    assert all(f"Job {job}: done." in out for out in said), said

    with lab.sessions() as s:
        j = s.get(GenerationJob, job)
        assert (j.status, j.progress_done, j.progress_total, j.error) == ("done", units, units, None)
        items = s.scalars(select(WorkItem).where(WorkItem.job_id == job)).all()
    assert len(items) == units and sorted(i.position for i in items) == list(range(units))
    assert {i.state for i in items} == {"done"}
    # claimed once each, but the victim's: claimed again by a survivor once its lease ran out
    assert sorted(i.attempts for i in items) == [1] * (units - 1) + [2]
    redone = next(i for i in items if i.id == held.id)
    assert redone.attempts == 2 and _aware(redone.finished_at) > expired_at
    survivors = {str(w.pid) for w in others}
    assert {i.lease_owner.split(":")[1].split("@")[0] for i in items} <= survivors
    assert _count(lab, Restoration) == units and _count(lab, StudyItem) == units
    assert _count(lab, JobItemError) == 0


def test_a_busy_job_exits_75_saying_when_to_retry(lab):
    job = _job(lab, 1, [{"method": "blurred"}])
    with lab.sessions() as s, s.begin():
        s.get(GenerationJob, job).status = "running"
        for item in s.scalars(select(WorkItem).where(WorkItem.job_id == job)):
            item.state, item.lease_owner = "claimed", "elsewhere:1"
            item.lease_expires_at = utcnow() + timedelta(seconds=90)
    result = CliRunner().invoke(cli, ["generate", "--job", str(job), "--quiet"])
    assert result.exit_code == BUSY_EXIT, result.output
    assert "running in elsewhere:1 (another host)" in result.output
    assert "(in 90 s)" in result.output or "(in 89 s)" in result.output
    assert _count(lab, Restoration) == 0


@pytest.mark.slow
def test_workers_option_runs_the_job_in_several_processes(lab):
    job = _job(lab, 1, [{"method": "wiener", "params": {"balance": [0.01, 0.05]}}, {"method": "blurred"}])
    result = CliRunner().invoke(cli, ["generate", "--job", str(job), "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert "worker 1: " in result.output and "worker 2: " in result.output
    assert result.output.rstrip().endswith(f"Job {job}: done.")
    assert _count(lab, Restoration) == 6 and _count(lab, StudyItem) == 6
    assert _count(lab, WorkItem, WorkItem.state == "done") == 6


def test_a_worker_whose_lease_ran_out_mid_item_changes_nothing(shared_lab):
    lab = shared_lab
    job = _job(lab, 1, [{"method": "wiener"}])  # two items: one per blur
    plan, study_id, stalled = jobs._join(lab, job, "stalled:1", timedelta(0))  # its lease runs out at once
    assert jobs.run_job(lab, job) == "done"  # this worker does both items, the stalled one again
    with lab.sessions() as s:
        position = s.get(WorkItem, stalled).position
    group = work_groups(plan.units())[position]
    jobs._run_group(lab, study_id, plan, group)  # the stalled worker wakes and finishes its item
    assert jobs._finish_item(lab, job, stalled, "stalled:1", group, RuntimeError("late")) == 2
    with lab.sessions() as s:
        item = s.get(WorkItem, stalled)
        assert (item.state, item.attempts) == ("done", 2) and item.lease_owner != "stalled:1"
        assert s.get(GenerationJob, job).status == "done"
    assert _count(lab, Restoration) == 2 and _count(lab, StudyItem) == 2 and _count(lab, JobItemError) == 0


def test_a_job_from_before_work_items_gets_them_when_run(lab):
    job = _job(lab, 1, [{"method": "blurred"}])
    with lab.sessions() as s, s.begin():  # as migration 0008 leaves a job created before it
        s.execute(delete(WorkItem).where(WorkItem.job_id == job))
    assert jobs.run_job(lab, job) == "done"
    assert _count(lab, WorkItem, WorkItem.job_id == job, WorkItem.state == "done") == 2
    assert _count(lab, Restoration) == 2
