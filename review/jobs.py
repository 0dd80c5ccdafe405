"""Generation jobs: a study's plan (images x blur specs x restorers x parameter grid x seeds)
runs outside the Streamlit script run, in its own process, and records progress, per-item errors
and a heartbeat in the database so any page or CLI can watch or cancel it.

- Resumable: every unit is identified by content (source image, blur recipe, method,
  parameters); a rerun after a crash or kill skips what is already stored. A running job whose
  worker process has ended on this host is taken over at once; one whose worker is on another
  host (or alive) when its heartbeat is `HEARTBEAT_STALE` old, and the refusal says when.
- Cancellable: `cancel()` sets a flag the worker checks between units.
- One generation per machine at a time: a file lock in the data folder serialises worker
  processes, and the restore module holds a per-pipeline lock inside a process.
- Stable Diffusion units that share an input and differ only in strength and seed run as one grid
  (input and prompt encoded once, UNet batched), which is how a study's usual grid is cheap.
"""

from __future__ import annotations

import fcntl
import itertools
import math
import os
import socket
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from db.models import GenerationJob, JobItemError, SourceImage, Study, utcnow
from review.config import settings_env
from review.database import Lab
from review.errors import ReviewError
from review.labeling.study import add_item
from review.media import catalog
from review.media.degrade import BlurSpec

HEARTBEAT_STALE = timedelta(minutes=2)
GRID_KEYS = ("strength", "seed")


class JobError(ReviewError):
    """A job cannot be created, started or resumed; the message says why."""


@dataclass(frozen=True)
class Unit:
    """One restoration to produce: a source image, a blur recipe, a method and its parameters."""

    source_id: int
    blur: BlurSpec
    method: str
    params: dict[str, Any]

    def key(self) -> str:
        return f"source {self.source_id} / {self.blur.kind} {self.blur.level} / {self.method} " + \
            catalog.params_key(self.params)[:8]


@dataclass
class GenerationPlan:
    """What to generate for a study. Parameter values given as lists are expanded as a grid."""

    source_ids: list[int]
    blurs: list[dict[str, Any]]
    restorers: list[dict[str, Any]]
    seeds: list[int] = field(default_factory=lambda: [0])
    model: str | None = None  # a model name of REVIEW_SD15_PATH, "tiny", a path, or None

    def to_json(self) -> dict[str, Any]:
        return {"source_ids": self.source_ids, "blurs": self.blurs, "restorers": self.restorers,
                "seeds": self.seeds, "model": self.model}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GenerationPlan:
        try:
            return cls(source_ids=[int(i) for i in data["source_ids"]],
                       blurs=list(data["blurs"]), restorers=list(data["restorers"]),
                       seeds=[int(s) for s in data.get("seeds", [0])], model=data.get("model"))
        except (KeyError, TypeError, ValueError) as exc:
            raise JobError(f"The generation plan is malformed: {exc!r}. Expected keys "
                           "source_ids, blurs, restorers, seeds, model.") from exc

    def units(self) -> list[Unit]:
        from review.media.restore.runner import resolve_params

        if not self.source_ids or not self.blurs or not self.restorers:
            raise JobError("A plan needs at least one source image, one blur and one restorer.")
        try:  # a bad blur or restorer parameter refuses the plan, with the checker's message
            blur_specs = [BlurSpec(**b) for b in self.blurs]
            out: list[Unit] = []
            for source_id, spec, restorer in itertools.product(self.source_ids, blur_specs,
                                                               self.restorers):
                method = restorer["method"]
                grid = {k: v if isinstance(v, list) else [v]
                        for k, v in (restorer.get("params") or {}).items()}
                stochastic = method.startswith("sd15")
                if stochastic:
                    grid.setdefault("seed", list(self.seeds))
                for values in itertools.product(*grid.values()) if grid else [()]:
                    raw = dict(zip(grid.keys(), values, strict=True))
                    out.append(Unit(source_id, spec, method, resolve_params(method, raw)))
        except ValueError as exc:
            raise JobError(str(exc)) from exc
        return out


def create_job(lab: Lab, study_name: str, plan: GenerationPlan) -> int:
    """Validate the plan, store it on a new queued job of the named study, and return the job id."""
    with lab.sessions() as s, s.begin():
        study_id = s.scalar(select(Study.id).where(Study.name == study_name))
        if study_id is None:
            raise JobError(f"No study named {study_name!r}.")
        return add_job(s, study_id, plan)


def add_job(session: Session, study_id: int, plan: GenerationPlan) -> int:
    """Validate the plan, store it on a new queued job of the study (in the caller's
    transaction), and return the job id."""
    units = plan.units()
    missing = set(plan.source_ids) - set(session.scalars(
        select(SourceImage.id).where(SourceImage.id.in_(plan.source_ids))))
    if missing:
        raise JobError(f"Unknown source image ids: {sorted(missing)}.")
    job = GenerationJob(study_id=study_id, plan=plan.to_json(), status="queued",
                        progress_total=len(units))
    session.add(job)
    session.flush()
    return job.id


def cancel(lab: Lab, job_id: int) -> None:
    with lab.sessions() as s, s.begin():
        job = s.get(GenerationJob, job_id)
        if job is None:
            raise JobError(f"No job {job_id}.")
        if job.status in ("queued",):
            job.status, job.finished_at = "cancelled", utcnow()
        job.cancel_requested = True


def requeue(lab: Lab, job_id: int) -> None:
    """Put a failed or cancelled job back in the queue, to be resumed by a new worker."""
    with lab.sessions() as s, s.begin():
        job = s.get(GenerationJob, job_id)
        if job is None:
            raise JobError(f"No job {job_id}.")
        job.status = "queued"


def job_errors(lab: Lab, job_id: int) -> list[JobItemError]:
    with lab.sessions() as s:
        return list(s.scalars(select(JobItemError).where(JobItemError.job_id == job_id)
                              .order_by(JobItemError.id)))


def _worker_name() -> str:
    """host:pid, plus the process's start time where /proc has it (host:pid@start), so that a
    later process that got the same pid is not mistaken for this one."""
    stat = _proc_stat(os.getpid())
    return f"{socket.gethostname()}:{os.getpid()}" + (f"@{stat[19]}" if stat else "")


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first, start time at 19),
    or None where there is no such process or no /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def _worker_gone(worker: str | None) -> bool:
    """Whether `worker` names a process on this host that has ended: no such pid, a zombie (its
    parent has not reaped it yet), or the pid now belongs to a process started later."""
    host, _, rest = (worker or "").rpartition(":")
    pid_text, _, start = rest.partition("@")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # another user's process: it exists
    stat = _proc_stat(pid)
    if stat is None:
        return False
    return stat[0] in ("Z", "X") or bool(start) and stat[19] != start


def _claim(lab: Lab, job_id: int) -> None:
    """Mark the job running for this process. A running job is taken over when its worker is a
    process of this host that has ended, or when its heartbeat is stale; otherwise refused,
    saying when it can be taken over."""
    now = utcnow()
    claimed = {"status": "running", "worker": _worker_name(), "heartbeat_at": now,
               "started_at": now, "error": None, "finished_at": None, "cancel_requested": False}
    with lab.sessions() as s, s.begin():
        result = s.execute(
            update(GenerationJob)
            .where(GenerationJob.id == job_id,
                   or_(GenerationJob.status.in_(("queued", "failed")),
                       (GenerationJob.status == "running")
                       & or_(GenerationJob.heartbeat_at.is_(None),
                             GenerationJob.heartbeat_at < now - HEARTBEAT_STALE)))
            .values(**claimed)
        )
        if result.rowcount == 1:
            return
        job = s.get(GenerationJob, job_id)
        if job is None:
            raise JobError(f"No job {job_id}.")
        if job.status != "running":
            raise JobError(f"Job {job_id} is {job.status}; nothing to do.")
        if _worker_gone(job.worker) and s.execute(  # only if no one else took it over meanwhile
                update(GenerationJob)
                .where(GenerationJob.id == job_id, GenerationJob.status == "running",
                       GenerationJob.worker == job.worker)
                .values(**claimed)).rowcount == 1:
            return
        raise JobError(_running_elsewhere(job, now))


def _running_elsewhere(job: GenerationJob, now: datetime) -> str:
    """Why a running job cannot be taken over now, and when it can."""
    beat = job.heartbeat_at if job.heartbeat_at.tzinfo else job.heartbeat_at.replace(tzinfo=UTC)
    deadline = beat + HEARTBEAT_STALE
    wait = max(0, math.ceil((deadline - now).total_seconds()))
    on_this_host = (job.worker or "").rpartition(":")[0] == socket.gethostname()
    where = "a live process on this host" if on_this_host else "another host"
    at_once = "; or at once, once that process has ended" if on_this_host else ""
    return (f"Job {job.id} is running in {job.worker} ({where}, last heartbeat "
            f"{max(0, round((now - beat).total_seconds()))} s ago); nothing to do now. "
            f"If that worker has stopped, the job can be taken over from "
            f"{deadline.astimezone():%Y-%m-%d %H:%M:%S %Z} (in {wait} s), when its heartbeat is "
            f"{HEARTBEAT_STALE.total_seconds():g} s old{at_once}: run this again then.")


@contextmanager
def machine_lock(lab: Lab) -> Iterator[None]:
    """One generation process per data folder (and so per GPU) at a time."""
    lab.settings.models_dir.mkdir(parents=True, exist_ok=True)
    with open(lab.settings.models_dir / "generation.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _groups(units: list[Unit]) -> list[list[Unit]]:
    """Units that can share one Stable Diffusion grid run; every other unit stands alone."""
    groups: dict[tuple, list[Unit]] = {}
    order: list[tuple] = []
    for i, u in enumerate(units):
        if u.method == "sd15_img2img":
            rest = {k: v for k, v in u.params.items() if k not in GRID_KEYS}
            key = (u.source_id, u.blur.key(), catalog.params_key(rest))
        else:
            key = ("single", i)
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(u)
    return [groups[k] for k in order]


def run_job(lab: Lab, job_id: int, progress: Callable[[int, int], None] | None = None) -> str:
    """Run (or resume) a job in this process; returns the final status."""
    _claim(lab, job_id)
    with lab.sessions() as s:
        job = s.get(GenerationJob, job_id)
        plan, study_id = GenerationPlan.from_json(job.plan), job.study_id
    units = plan.units()
    done = failed = 0
    status = "done"
    with machine_lock(lab):
        for group in _groups(units):
            if _cancel_requested(lab, job_id):
                status = "cancelled"
                break
            try:
                _run_group(lab, study_id, plan, group)
                done += len(group)
            except Exception as exc:  # noqa: BLE001 - recorded per item, the job goes on
                failed += len(group)
                _record_error(lab, job_id, group, exc)
            _heartbeat(lab, job_id, done + failed)
            if progress:
                progress(done + failed, len(units))
    if status == "done" and failed and not done:
        status = "failed"
    with lab.sessions() as s, s.begin():
        job = s.get(GenerationJob, job_id)
        job.status, job.finished_at = status, utcnow()
        job.progress_done = min(done + failed, job.progress_total)
        if failed:
            job.error = f"{failed} of {len(units)} items failed; see the item errors."
    return status


def _cancel_requested(lab: Lab, job_id: int) -> bool:
    with lab.sessions() as s:
        return bool(s.scalar(select(GenerationJob.cancel_requested)
                             .where(GenerationJob.id == job_id)))


def _heartbeat(lab: Lab, job_id: int, processed: int) -> None:
    with lab.sessions() as s, s.begin():
        job = s.get(GenerationJob, job_id)
        job.progress_done = min(processed, job.progress_total)
        job.heartbeat_at = utcnow()


def _record_error(lab: Lab, job_id: int, group: list[Unit], exc: BaseException) -> None:
    message = f"{type(exc).__name__}: {exc}"
    detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    with lab.sessions() as s, s.begin():
        for unit in group:
            s.add(JobItemError(job_id=job_id, item_key=unit.key()[:200],
                               error=message if len(detail) < 20 else detail))


def _run_group(lab: Lab, study_id: int, plan: GenerationPlan, group: list[Unit]) -> None:
    """Produce every missing restoration of the group and put all of them in the study."""
    from review.media.restore.runner import run_grid, run_restorer

    first = group[0]
    with lab.sessions() as s, s.begin():
        source = s.get(SourceImage, first.source_id)
        degraded = catalog.add_degraded(s, lab.store, source, first.blur)
        pending = [u for u in group
                   if catalog.find_restoration(s, degraded.id, u.method, u.params) is None]
        degraded_id, degraded_path = degraded.id, degraded.path
        kernel = catalog.load_kernel(lab.store, degraded)
        reference = lab.store.open_image(source.path) if source.is_reference else None
    if pending:
        blurred = lab.store.open_image(degraded_path)
        if first.method == "sd15_img2img" and len(pending) > 1:
            results = run_grid(blurred, [u.params for u in pending], reference=reference,
                               model=plan.model, settings=lab.settings)
        else:
            results = [run_restorer(u.method, blurred, kernel=kernel, reference=reference,
                                    params=u.params, model=plan.model, settings=lab.settings)
                       for u in pending]
        with lab.sessions() as s, s.begin():
            degraded = s.get(catalog.DegradedImage, degraded_id)
            for unit, out in zip(pending, results, strict=True):
                catalog.add_restoration(s, lab.store, degraded, unit.method, unit.params,
                                        out.image, out.provenance, out.metrics)
    with lab.sessions() as s, s.begin():
        study = s.get(Study, study_id)
        for unit in group:
            restoration = catalog.find_restoration(s, degraded_id, unit.method, unit.params)
            add_item(s, study, restoration)


def start_background(lab: Lab, job_id: int) -> subprocess.Popen:
    """Run the job in a separate process that outlives the page that started it."""
    logs = lab.settings.data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = open(logs / f"job-{job_id}.log", "ab")  # noqa: SIM115 - handed to the child
    env = dict(os.environ, **settings_env(lab.settings))
    return subprocess.Popen(
        [sys.executable, "-m", "review", "generate", "--job", str(job_id), "--quiet"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        cwd=str(Path(__file__).resolve().parent.parent),
    )


def unfinished_job(lab: Lab, study_name: str) -> int | None:
    """The study's most recent job that did not finish (to resume), if any."""
    with lab.sessions() as s:
        return s.scalar(
            select(GenerationJob.id).join(Study, Study.id == GenerationJob.study_id)
            .where(Study.name == study_name, GenerationJob.status.in_(("queued", "running",
                                                                       "failed")))
            .order_by(GenerationJob.id.desc()).limit(1))


def jobs_of(lab: Lab, study_id: int | None = None) -> list[GenerationJob]:
    with lab.sessions() as s:
        q = select(GenerationJob).order_by(GenerationJob.id.desc())
        if study_id is not None:
            q = q.where(GenerationJob.study_id == study_id)
        return list(s.scalars(q.limit(50)))


def count_running(lab: Lab) -> int:
    with lab.sessions() as s:
        return s.scalar(select(func.count()).select_from(GenerationJob)
                        .where(GenerationJob.status == "running")) or 0
