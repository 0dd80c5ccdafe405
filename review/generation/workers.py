"""Generation workers: a study's plan (review.generation.plan) runs outside the Streamlit script
run, in its own process, and records progress, per-item errors and a heartbeat in the database
so any page or CLI can watch or cancel it.

- Several workers: the plan is stored as work items (one per unit, or per grid below), and any
  number of worker processes, on this machine or others sharing the database, claim them one at
  a time (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite's write transactions are `BEGIN
  IMMEDIATE`, so a claim is serialised). A claim is a lease that the worker renews while it
  works; when it runs out (the worker was killed), another worker claims the item again. A lease
  whose worker process has ended on this host is taken over at once. A worker that finds every
  unfinished item leased by a live worker is refused (`JobBusy`), saying when it can take over.
- Resumable: every unit is identified by content (source image, blur recipe, method,
  parameters, and the model's content identity for restorers with weights) and stored
  content-addressed, so an item done twice (a lease that ran out under a
  slow worker, a rerun after a crash) stores nothing twice.
- Cancellable: `cancel()` sets a flag the workers check between items.
- Inside one process the restore module holds a per-pipeline lock.
- Stable Diffusion units that share an input and differ only in strength and seed run as one grid
  (input and prompt encoded once, UNet batched), which is how a study's usual grid is cheap.
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from db.engine import rows_changed
from db.models import GenerationJob, JobItemError, SourceImage, Study, utcnow
from db.models import GenerationWorkItem as WorkItem
from review.config import settings_env
from review.database import Lab
from review.enums import JobStatus, WorkItemState
from review.generation.plan import (
    GenerationPlan,
    JobBusy,
    JobError,
    Unit,
    add_work_items,
    with_curve_model,
    work_groups,
)
from review.labeling.study import add_item
from review.media import catalog
from review.media.restore.registry import restorer_class

LEASE = timedelta(minutes=2)  # how long a claim outlives its worker's last renewal
IDLE_POLL_S = 1.0  # how often a worker with nothing to claim looks again while others work
BUSY_EXIT = 75  # EX_TEMPFAIL: `generate --job` found nothing to claim now; try again later
ROOT = Path(__file__).resolve().parent.parent


def cancel(lab: Lab, job_id: int) -> None:
    with lab.write() as s:
        job = s.get(GenerationJob, job_id)
        if job is None:
            raise JobError(f"No job {job_id}.")
        if job.status in (JobStatus.QUEUED,):
            job.status, job.finished_at = JobStatus.CANCELLED, utcnow()
        job.cancel_requested = True


def requeue(lab: Lab, job_id: int) -> None:
    """Put a failed or cancelled job back in the queue, to be resumed by a new worker."""
    with lab.write() as s:
        job = s.get(GenerationJob, job_id)
        if job is None:
            raise JobError(f"No job {job_id}.")
        job.status = JobStatus.QUEUED


def job_errors(lab: Lab, job_id: int) -> list[JobItemError]:
    with lab.read() as s:
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


def _aware(moment: datetime) -> datetime:
    """SQLite hands timestamps back without their (UTC) zone."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _join(lab: Lab, job_id: int, me: str, lease: timedelta) -> tuple[GenerationPlan, int, int | None]:
    """Start the job (queued, or failed and run again: its failed items are retried) or join it
    while it runs, and claim a first item; returns the plan, the study id and that item's id
    (None when every item is finished). Refused with `JobBusy` when every unfinished item is
    leased by a live worker, saying when it can be taken over."""
    now = utcnow()
    with lab.write() as s:
        job = s.scalar(select(GenerationJob).where(GenerationJob.id == job_id).with_for_update())
        if job is None:
            raise JobError(f"No job {job_id}.")
        if job.status in (JobStatus.DONE, JobStatus.CANCELLED):
            raise JobError(f"Job {job_id} is {job.status}; nothing to do.")
        if job.study_id is None:  # its study was deleted (the foreign key sets it to NULL)
            raise JobError(f"Job {job_id}'s study was deleted; nothing to do.")
        plan = GenerationPlan.from_json(job.plan)
        if s.scalar(select(func.count()).where(WorkItem.job_id == job_id)) == 0:
            add_work_items(s, job_id, plan.units())  # a job created before work items existed
        if job.status != JobStatus.RUNNING:
            s.execute(update(WorkItem)
                      .where(WorkItem.job_id == job_id, WorkItem.state == WorkItemState.FAILED)
                      .values(state=WorkItemState.PENDING, finished_at=None))
            job.status, job.started_at, job.finished_at = JobStatus.RUNNING, now, None
            job.error, job.cancel_requested = None, False
            job.progress_done = _processed(s, job)
        job.worker, job.heartbeat_at = me, now
        if job.cancel_requested:  # its workers stop between items; this one just records it
            return plan, job.study_id, None
        item = _claim_item(s, job_id, me, lease, now)
        if item is not None:
            return plan, job.study_id, item.id
        leases = s.execute(select(WorkItem.lease_owner, func.min(WorkItem.lease_expires_at))
                           .where(WorkItem.job_id == job_id, WorkItem.state == WorkItemState.CLAIMED)
                           .group_by(WorkItem.lease_owner)).all()
        if leases:
            raise JobBusy(_running_elsewhere(job_id, [(o, _aware(t)) for o, t in leases  # a claim has both
                                                      if o is not None and t is not None], now))
        return plan, job.study_id, None


def _claim_item(session: Session, job_id: int, me: str, lease: timedelta,
                now: datetime) -> WorkItem | None:
    """Lease the job's first claimable item to `me`, in the caller's transaction: a pending one,
    or one whose lease ran out, or whose worker process has ended on this host (or is this very
    process, from an earlier run that stopped). Rows another transaction is claiming are skipped."""
    live = session.scalars(select(WorkItem.lease_owner).distinct().where(
        WorkItem.job_id == job_id, WorkItem.state == WorkItemState.CLAIMED))
    gone = [owner for owner in live if owner == me or _worker_gone(owner)]
    item = session.scalar(
        select(WorkItem)
        .where(WorkItem.job_id == job_id,
               or_(WorkItem.state == WorkItemState.PENDING,
                   (WorkItem.state == WorkItemState.CLAIMED)
                   & or_(WorkItem.lease_expires_at < now,
                         WorkItem.lease_owner.in_(gone))))
        .order_by(WorkItem.position).limit(1).with_for_update(skip_locked=True))
    if item is not None:
        item.state, item.lease_owner, item.lease_expires_at = WorkItemState.CLAIMED, me, now + lease
        item.attempts = WorkItem.attempts + 1  # in SQL: two claims of one item would both count
    return item


def _claim_next(lab: Lab, job_id: int, me: str, lease: timedelta) -> tuple[int | None, float | None]:
    """The id of a newly claimed item; else how long to wait before looking again (until the
    soonest lease of another worker may run out, or its item be finished), or None when every
    item is finished. A worker waits rather than leaves, so that a killed worker's item is
    always picked up."""
    with lab.write() as s:
        now = utcnow()
        item = _claim_item(s, job_id, me, lease, now)
        if item is not None:
            return item.id, None
        soonest = s.scalar(select(func.min(WorkItem.lease_expires_at)).where(
            WorkItem.job_id == job_id, WorkItem.state == WorkItemState.CLAIMED))
    if soonest is None:
        return None, None
    until = (_aware(soonest) - now).total_seconds() + 0.05
    return None, min(max(until, 0.05), lease.total_seconds() / 4, IDLE_POLL_S)


def _running_elsewhere(job_id: int, leases: list[tuple[str, datetime]], now: datetime) -> str:
    """Why a worker cannot join a job now, and when it can take over."""
    owner, deadline = min(leases, key=lambda lease: lease[1])
    wait = max(0, math.ceil((deadline - now).total_seconds()))
    on_this_host = owner.rpartition(":")[0] == socket.gethostname()
    where = "a live process on this host" if on_this_host else "another host"
    at_once = "; or at once, once that process has ended" if on_this_host else ""
    return (f"Job {job_id} is running in {', '.join(sorted(o for o, _ in leases))} ({where}), which "
            f"holds every unfinished item; nothing to do now. If that worker has stopped, its items "
            f"can be taken over from {deadline.astimezone():%Y-%m-%d %H:%M:%S %Z} (in {wait} s), "
            f"when its lease runs out{at_once}: run this again then.")


@contextmanager
def _renewing(lab: Lab, job_id: int, me: str, lease: timedelta) -> Iterator[None]:
    """While the body runs, renew this worker's leases (and the job's heartbeat) every quarter
    lease, so a slow item is not taken over while its worker is alive."""
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(lease.total_seconds() / 4):
            try:
                with lab.write() as s:
                    now = utcnow()
                    s.execute(update(WorkItem)
                              .where(WorkItem.job_id == job_id, WorkItem.lease_owner == me,
                                     WorkItem.state == WorkItemState.CLAIMED)
                              .values(lease_expires_at=now + lease))
                    s.execute(update(GenerationJob).where(GenerationJob.id == job_id)
                              .values(heartbeat_at=now))
            except SQLAlchemyError as exc:  # a missed renewal at worst lets another worker redo an item
                print(f"job {job_id}: could not renew the lease ({exc}); retrying", file=sys.stderr)

    thread = threading.Thread(target=renew, name=f"lease-job-{job_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def run_job(lab: Lab, job_id: int, progress: Callable[[int, int], None] | None = None, *,
            lease: timedelta = LEASE) -> str:
    """Work on a job in this process, with any other workers on it, until every item is finished
    or the job is cancelled; returns the job's status. `progress(done, total)` counts the items
    of every worker."""
    me = _worker_name()
    plan, study_id, item_id = _join(lab, job_id, me, lease)
    groups = work_groups(plan.units())
    total = sum(len(g) for g in groups)
    cancelled = False
    with _renewing(lab, job_id, me, lease):
        while True:
            if item_id is None:
                if _cancel_requested(lab, job_id):
                    cancelled = True
                    break
                item_id, wait = _claim_next(lab, job_id, me, lease)
                if item_id is None:
                    if wait is None:
                        break
                    time.sleep(wait)
                    continue
            with lab.read() as s:
                group = groups[s.get_one(WorkItem, item_id).position]
            error = None
            try:
                _run_group(lab, study_id, plan, group)
            except Exception as exc:  # noqa: BLE001 - recorded per item, the job goes on
                error = exc
            processed = _finish_item(lab, job_id, item_id, me, group, error)
            item_id = None
            if progress:
                progress(processed, total)
    return _finish_job(lab, job_id, cancelled)


def _processed(session: Session, job: GenerationJob) -> int:
    """Units of the job's finished items: the progress every page and worker shows."""
    units = session.execute(select(func.coalesce(func.sum(WorkItem.units), 0)).where(
        WorkItem.job_id == job.id, WorkItem.state.in_((WorkItemState.DONE, WorkItemState.FAILED)))
    ).scalar_one()
    return min(units, job.progress_total)


def _finish_item(lab: Lab, job_id: int, item_id: int, me: str, group: list[Unit],
                 error: BaseException | None) -> int:
    """Mark the item done (or failed, with an error per unit) if this worker still holds it; a
    worker whose lease ran out meanwhile changes nothing (the new holder finishes the item).
    Returns the job's progress."""
    with lab.write() as s:
        owned = rows_changed(s.execute(
            update(WorkItem)
            .where(WorkItem.id == item_id, WorkItem.state == WorkItemState.CLAIMED,
                   WorkItem.lease_owner == me)
            .values(state=WorkItemState.DONE if error is None else WorkItemState.FAILED, finished_at=utcnow(),
                    lease_expires_at=None))) == 1
        if owned and error is not None:
            _record_error(s, job_id, group, error)
        job = s.execute(select(GenerationJob).where(GenerationJob.id == job_id)
                        .with_for_update()).scalar_one()
        job.progress_done = _processed(s, job)
        return job.progress_done


def _finish_job(lab: Lab, job_id: int, cancelled: bool) -> str:
    """Record the outcome once no item is left (or on cancel): the first worker to get here sets
    it, the others return it."""
    with lab.write() as s:
        job = s.execute(select(GenerationJob).where(GenerationJob.id == job_id)
                        .with_for_update()).scalar_one()
        if job.status != JobStatus.RUNNING:
            return job.status
        units = dict(s.execute(select(WorkItem.state, func.sum(WorkItem.units))
                               .where(WorkItem.job_id == job_id)
                               .group_by(WorkItem.state)).all())
        done, failed = units.get(WorkItemState.DONE, 0), units.get(WorkItemState.FAILED, 0)
        job.status = (JobStatus.CANCELLED if cancelled else JobStatus.FAILED if failed and not done
                      else JobStatus.DONE)
        job.finished_at, job.progress_done = utcnow(), _processed(s, job)
        if failed:
            job.error = f"{failed} of {job.progress_total} items failed; see the item errors."
        return job.status


def _cancel_requested(lab: Lab, job_id: int) -> bool:
    with lab.read() as s:
        return bool(s.scalar(select(GenerationJob.cancel_requested)
                             .where(GenerationJob.id == job_id)))


def _record_error(session: Session, job_id: int, group: list[Unit], exc: BaseException) -> None:
    """Store the failure in plain words with the fix (`plain_error`); the library's own text and
    traceback go to the worker's log (data/logs/job-<id>.log) for whoever debugs it."""
    from review.media.restore.runner import plain_error

    print("".join(traceback.format_exception(exc)), file=sys.stderr, flush=True)
    for unit in group:
        session.add(JobItemError(job_id=job_id, item_key=unit.key()[:200], error=plain_error(exc)))


def _run_group(lab: Lab, study_id: int, plan: GenerationPlan, group: list[Unit]) -> None:
    """Produce every missing restoration of the group and put all of them in the study. A unit is
    done when a restoration of its input, method and parameters by the plan's model (by content
    identity, `model_identity_for`) exists: another model's restoration is not this one."""
    from review.media.restore.runner import model_identity_for, run_grid, run_restorer

    first = group[0]
    plan = with_curve_model(plan, first.method, lab.settings)
    model = model_identity_for(first.method, plan.model, lab.settings)
    made: dict[int, int] = {}  # unit index -> restoration id
    with lab.write() as s:
        source = s.get_one(SourceImage, first.source_id)
        degraded = catalog.add_degraded(s, lab.store, source, first.blur)
        for i, u in enumerate(group):
            found = catalog.find_restoration(s, degraded.id, u.method, u.params, model)
            if found is not None:
                made[i] = found.id
        pending = [u for i, u in enumerate(group) if i not in made]
        degraded_id, degraded_path = degraded.id, degraded.path
        kernel = catalog.load_kernel(lab.store, degraded)
        reference = lab.store.open_image(source.path) if source.is_reference else None
    if pending:
        blurred = lab.store.open_image(degraded_path)
        if restorer_class(first.method).grid_keys and len(pending) > 1:
            results = run_grid(first.method, blurred, [u.params for u in pending], reference=reference,
                               model=plan.model, settings=lab.settings)
        else:
            results = [run_restorer(u.method, blurred, kernel=kernel, reference=reference,
                                    params=u.params, model=plan.model, settings=lab.settings)
                       for u in pending]
        with lab.write() as s:
            degraded = s.get_one(catalog.DegradedImage, degraded_id)
            todo = [i for i in range(len(group)) if i not in made]
            for i, out in zip(todo, results, strict=True):
                unit = group[i]
                # stored under the identity its provenance records: the weights that really ran
                made[i] = catalog.add_restoration(s, lab.store, degraded, unit.method, unit.params,
                                                  out.image, out.provenance, out.metrics).id
    with lab.write() as s:
        study = s.get_one(Study, study_id)
        for i in range(len(group)):
            add_item(s, study, s.get_one(catalog.Restoration, made[i]))


def start_background(lab: Lab, job_id: int) -> subprocess.Popen:
    """Run the job in a separate process that outlives the page that started it."""
    logs = lab.settings.data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = open(logs / f"job-{job_id}.log", "ab")  # noqa: SIM115 - handed to the child
    env = dict(os.environ, **settings_env(lab.settings))
    return subprocess.Popen(
        [sys.executable, "-m", "review", "generate", "--job", str(job_id), "--quiet"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        cwd=str(ROOT),
    )


def run_workers(lab: Lab, job_id: int, count: int, lease: timedelta = LEASE,
                echo: Callable[[str], None] = print) -> str:
    """Run the job in `count` worker processes of this machine at once (as `generate --job` on
    several machines would), echo what each said, and return the job's final status."""
    command = [sys.executable, "-m", "review", "generate", "--job", str(job_id), "--quiet",
               "--lease", f"{lease.total_seconds():g}"]
    env = dict(os.environ, **settings_env(lab.settings))
    workers = [subprocess.Popen(command, env=env, cwd=str(ROOT), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True) for _ in range(count)]
    for number, worker in enumerate(workers, 1):
        said = worker.communicate()[0].strip()
        if worker.returncode == BUSY_EXIT:
            said = "found nothing left to claim."
        echo(f"worker {number}: {said}" if said else f"worker {number}: exit status {worker.returncode}")
    with lab.read() as s:
        return s.get_one(GenerationJob, job_id).status


def unfinished_job(lab: Lab, study_name: str) -> int | None:
    """The study's most recent job that did not finish (to resume), if any."""
    with lab.read() as s:
        return s.scalar(
            select(GenerationJob.id).join(Study, Study.id == GenerationJob.study_id)
            .where(Study.name == study_name, GenerationJob.status.in_((JobStatus.QUEUED, JobStatus.RUNNING,
                                                                       JobStatus.FAILED)))
            .order_by(GenerationJob.id.desc()).limit(1))


def jobs_of(lab: Lab, study_id: int | None = None) -> list[GenerationJob]:
    with lab.read() as s:
        q = select(GenerationJob).order_by(GenerationJob.id.desc())
        if study_id is not None:
            q = q.where(GenerationJob.study_id == study_id)
        return list(s.scalars(q.limit(50)))


def count_running(lab: Lab) -> int:
    with lab.read() as s:
        return s.scalar(select(func.count()).select_from(GenerationJob)
                        .where(GenerationJob.status == JobStatus.RUNNING)) or 0


