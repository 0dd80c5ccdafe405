"""Benchmark: load and scale (issue 11, "Figures to reach"). One function per figure:

(a) `writers`: 20 writer processes on one SQLite file and on PostgreSQL, each a reviewer claiming
    and submitting (as the Rate page does: claim + show in one transaction, submit in another)
    for N seconds. Printed: errors shown (a ReviewError's plain message, or a traceback), ratings
    lost (acknowledged to the writer but not in the database), items over-filled, p50/p99 latency,
    fairness (fewest/most ratings per writer). Goal: 0 errors, 0 lost, 0 over-filled.
    Baseline, same run: the same writers on the same database one at a time (no contention).
(b) `one_writer`: one reviewer, claim + submit p50 on PostgreSQL and SQLite, with the statements
    one rating sends. Goal: PostgreSQL p50 <= 4 ms (issue 11 measured 11.9 ms, SQLite 5.3 ms).
    Baseline, same run: one transaction holding one `SELECT 1` (a round trip plus BEGIN/COMMIT).
(c) `stats_cli`: `python -m review stats --input FILE --format json -o OUT` end to end on
    1,000,000 ratings (bench/agreement.py's synthetic study), and on one item rated by 20,000
    raters; wall time and the process's peak RSS. Goals: <= 5 s; <= 10 s and <= 1 GB.
    Baseline, same run: pandas reading the same CSV and writing it as JSON records (the floor
    for "read, then write JSON").

Every figure prints `load()`: on a shared box the timings scale with the load average.
(d) `sessions_in_one_process`: 50 reviewer sessions as threads of one process (as Streamlit
    serves them) on SQLite, think time between ratings (default ~2 s, far quicker than people
    judging fidelity), while a `python -m review generate` worker process writes. Printed: errors
    shown, lost, over-filled, p50/p99 claim+submit, per-session spread, restorations the worker
    stored. Goal: 0 errors, 0 lost, p99 <= 100 ms. Baseline, same run: the pre-issue-11 write
    path (BEGIN IMMEDIATE on every transaction, reads too; no in-process queue).

Run: .venv/bin/python bench/load.py [--quick] [--seconds 20] [--writers 20] [--only a,b,c,d]
     [--sessions 50] [--think-ms 2000]
     [--ratings 1000000] [--raters 20000] [--skip-postgres]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from machine import describe, load  # noqa: E402  (bench/machine.py, beside this script)
from sqlalchemy import Engine, create_engine, func, insert, select, text  # noqa: E402

from db.engine import make_engine, make_session_factory  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.models import (  # noqa: E402
    Assignment,
    DegradedImage,
    GuidelineVersion,
    Rating,
    Restoration,
    SourceImage,
    StudyItem,
    User,
)
from review.config import load_settings  # noqa: E402
from review.database import DatabaseBusy, Lab, open_lab  # noqa: E402
from review.labeling.study import StudyConfig, ensure_study, order_key  # noqa: E402

RATERS_PER_ITEM = 3
CHUNK = 20_000


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else float("nan")


# ----------------------------------------------------------------------------- databases


def build_study(engine: Engine, n_items: int, n_reviewers: int, name: str = "load") -> tuple[int, list[int]]:
    """A study of n_items (no image files: claims and ratings never open them) and n_reviewers
    accounts, bulk-inserted; returns (study id, reviewer ids)."""
    sessions = make_session_factory(engine)
    now = datetime.now(UTC)
    with sessions() as s, s.begin():
        gv = GuidelineVersion(slug=f"g-{name}", version=1, title="t", body_md="b", content_sha256="0" * 64)
        src = SourceImage(sha256=f"{name:s>64}"[:64], path="aa/a.png", width=8, height=8)
        s.add_all([gv, src])
        s.flush()
        deg = DegradedImage(source_id=src.id, recipe_key="k", kind="defocus", level=3.0,
                            sha256="b" * 64, path="bb/b.png")
        s.add(deg)
        s.flush()
        study = ensure_study(s, StudyConfig(name=name, raters_per_item=RATERS_PER_ITEM, gold_rate=0.0), gv)
        study_id, deg_id = study.id, deg.id
    with engine.begin() as conn:
        for start in range(0, n_items, CHUNK):
            conn.execute(insert(Restoration), [
                {"degraded_id": deg_id, "method": "wiener", "params": {}, "params_key": f"{name}-{i}",
                 "sha256": "c" * 64, "path": "cc/c.png", "provenance": {}, "metrics": {},
                 "is_smoke_test": False, "created_at": now}
                for i in range(start, min(n_items, start + CHUNK))])
        rids = list(conn.scalars(select(Restoration.id).where(Restoration.params_key.like(f"{name}-%"))))
        for start in range(0, len(rids), CHUNK):
            conn.execute(insert(StudyItem), [
                {"study_id": study_id, "restoration_id": rid, "order_key": order_key(study_id, rid),
                 "is_gold": False, "created_at": now} for rid in rids[start:start + CHUNK]])
        conn.execute(insert(User), [
            {"username": f"{name}-w{i:02d}", "display_name": "", "role": "reviewer", "password_hash": "x",
             "active": True, "created_at": now} for i in range(n_reviewers)])
        users = list(conn.scalars(select(User.id).where(User.username.like(f"{name}-w%"))
                                  .order_by(User.username)))
    with engine.connect() as conn:  # planner statistics, as a lab in steady state has them
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
    return study_id, users


def fresh_database(kind: str, workdir: Path, pg_base: str | None, name: str) -> str:
    """The URL of a new, empty database migrated to head."""
    if kind == "sqlite":
        url = f"sqlite:///{workdir / f'{name}.db'}"
    else:
        admin = create_engine(f"{pg_base}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        admin.dispose()
        url = f"{pg_base}/{name}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


# ----------------------------------------------------------------------------- one rating


def lab_for(url: str) -> Lab:
    """The app's Lab on `url` (its write path: one queued write connection per process on SQLite,
    retried BEGIN IMMEDIATE, DatabaseBusy as a plain message); images in a scratch folder."""
    data = Path(tempfile.gettempdir()) / "bench-load-data"
    return open_lab(load_settings({"REVIEW_DATABASE_URL": url, "REVIEW_DATA_DIR": str(data)}))


def rate_once(lab: Lab, study_id: int, reviewer_id: int, score: int) -> tuple[str, int] | None:
    """One rating as the Rate page makes it; (client token, item id) once the submit committed
    (the reviewer saw it go through), None when the study has nothing left for them."""
    from review.labeling.assignment import claim_next
    from review.labeling.ratings import Submission, submit
    from review.labeling.views import item_view

    with lab.write() as s:
        lease = claim_next(s, study_id, reviewer_id)
        if lease is None:
            return None
        lease.view or item_view(s, lease.item_id)  # the images the page shows
    token = uuid.uuid4().hex
    with lab.write() as s:
        submit(s, lease.assignment_id, reviewer_id, Submission(score=score, client_token=token))
    return token, lease.item_id


def _writer(url: str, study_id: int, reviewer_id: int, ready: mp.Queue, go: mp.Event, seconds: float,
            out: mp.Queue) -> None:
    """A writer process: waits for the common start, then rates until `seconds` have passed."""
    from review.errors import ReviewError

    lab = lab_for(url)
    # One untimed rating first (enrols the reviewer, fills SQLAlchemy's statement caches): the
    # figure is the steady state, not 20 cold processes compiling at once.
    acked: list[str] = [rate_once(lab, study_id, reviewer_id, 3)[0]]
    ready.put(reviewer_id)
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    go.wait()
    end = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        try:
            done = rate_once(lab, study_id, reviewer_id, 1 + i % 5)
        except ReviewError as exc:  # the page shows this as a plain message
            errors[f"message: {type(exc).__name__}: {exc}"] += 1
            continue
        except Exception as exc:  # noqa: BLE001 - the page would show a traceback
            errors[f"traceback: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"] += 1
            continue
        if done is None:
            break
        latencies.append((time.perf_counter() - t0) * 1000)
        acked.append(done[0])
        i += 1
    lab.engine.dispose()
    out.put({"reviewer": reviewer_id, "acked": acked, "latencies": latencies, "errors": dict(errors)})


def _audit(url: str, study_id: int, acked: list[str]) -> dict:
    """What the database holds after a run: lost acknowledged ratings, over-filled items."""
    engine = make_engine(url)
    with engine.connect() as conn:
        stored = set(conn.scalars(select(Rating.client_token).join(StudyItem, StudyItem.id == Rating.item_id)
                                  .where(StudyItem.study_id == study_id)))
        over_ratings = conn.scalar(select(func.count()).select_from(
            select(Rating.item_id).where(Rating.active.is_(True)).group_by(Rating.item_id)
            .having(func.count() > RATERS_PER_ITEM).subquery()))
        over_slots = conn.scalar(select(func.count()).select_from(
            select(Assignment.item_id).where(Assignment.status.in_(("leased", "done")))
            .group_by(Assignment.item_id).having(func.count() > RATERS_PER_ITEM).subquery()))
    engine.dispose()
    return {"lost": sum(1 for t in acked if t not in stored), "stored": len(stored),
            "over_filled": int(over_ratings) + int(over_slots)}


def writers(url: str, n_writers: int, seconds: float) -> dict:
    """Figure (a): n_writers processes rating at once for `seconds` on one database."""
    engine = make_engine(url)
    study_id, reviewers = build_study(engine, n_items=max(2000, int(n_writers * seconds * 40)),
                                      n_reviewers=n_writers, name="writers")
    engine.dispose()
    ctx = mp.get_context("spawn")
    ready, go, out = ctx.Queue(), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(url, study_id, rid, ready, go, seconds, out))
             for rid in reviewers]
    for p in procs:
        p.start()
    for _ in procs:  # every process has imported and connected: start them together
        ready.get(timeout=300)
    go.set()
    results = [out.get(timeout=seconds + 300) for _ in procs]
    for p in procs:
        p.join()
    acked = [t for r in results for t in r["acked"]]
    latencies = [x for r in results for x in r["latencies"]]
    errors: Counter[str] = Counter()
    for r in results:
        errors.update(r["errors"])
    per_writer = [len(r["latencies"]) for r in results]  # timed ratings (the warm-up one aside)
    return {"ratings": len(latencies), "per_s": len(latencies) / seconds, "errors": errors,
            "p50": pct(latencies, 50), "p99": pct(latencies, 99), "fair": (min(per_writer), max(per_writer)),
            **_audit(url, study_id, acked)}


def serial_baseline(url: str, n: int) -> dict:
    """The same ratings one at a time in this process: the latency without contention."""
    engine = make_engine(url)
    study_id, (reviewer,) = build_study(engine, n_items=n + 10, n_reviewers=1, name="serial")
    engine.dispose()
    lab = lab_for(url)
    latencies = []
    for i in range(n):
        t0 = time.perf_counter()
        rate_once(lab, study_id, reviewer, 1 + i % 5)
        latencies.append((time.perf_counter() - t0) * 1000)
    lab.engine.dispose()
    return {"p50": pct(latencies[5:], 50), "p99": pct(latencies[5:], 99)}


def one_writer(url: str, n: int) -> dict:
    """Figure (b): one reviewer's claim + submit latency, its statements, and a round trip."""
    from tests.support import statements

    engine = make_engine(url)
    study_id, (reviewer,) = build_study(engine, n_items=n + 200, n_reviewers=1, name="one")
    engine.dispose()
    lab = lab_for(url)
    engine, sessions = lab.engine, lab.sessions
    latencies = []
    for i in range(n + 5):
        t0 = time.perf_counter()
        rate_once(lab, study_id, reviewer, 1 + i % 5)
        if i >= 5:  # the first ratings enrol the reviewer and warm the caches
            latencies.append((time.perf_counter() - t0) * 1000)
    with statements(engine) as sent:
        rate_once(lab, study_id, reviewer, 3)
    trips = []
    for _ in range(n):
        t0 = time.perf_counter()
        with sessions() as s, s.begin():
            s.execute(text("SELECT 1"))
        trips.append((time.perf_counter() - t0) * 1000)
    engine.dispose()
    return {"p50": pct(latencies, 50), "p99": pct(latencies, 99), "statements": len(sent),
            "trip_p50": pct(trips, 50)}


# ----------------------------------------------------------------------------- sessions in one app process


def _baseline_lab(lab: Lab) -> Lab:
    """The write path before issue 11, for the same run: every transaction (reads too) starts with
    BEGIN IMMEDIATE on an ordinary connection pool, a 15 s busy timeout, no in-process queue."""
    from dataclasses import replace

    from sqlalchemy import event

    eng = create_engine(lab.settings.database_url, pool_pre_ping=True)

    @event.listens_for(eng, "connect")
    def _connect(dbapi_conn, _rec) -> None:  # noqa: ANN001
        dbapi_conn.isolation_level = None
        for pragma in ("busy_timeout = 15000", "journal_mode = WAL", "foreign_keys = ON",
                       "synchronous = NORMAL"):
            dbapi_conn.execute(f"PRAGMA {pragma}")

    @event.listens_for(eng, "begin")
    def _begin(conn) -> None:  # noqa: ANN001
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    factory = make_session_factory(eng)
    return replace(lab, engine=eng, sessions=factory, read_engine=eng, read_sessions=factory)


def _generation_job(lab: Lab, study_id: int) -> int:
    """A job for the study (Wiener over 40 blur levels x 3 balances on two photos) that a
    `python -m review generate` worker process runs while the sessions rate."""
    from PIL import Image
    from skimage import data as skdata

    from review.generation.plan import GenerationPlan, add_job
    from review.media.catalog import add_source

    with lab.write() as s:
        sources = [add_source(s, lab.store, Image.fromarray(np.asarray(img)).convert("RGB").resize((96, 96)),
                              title=name).id
                   for name, img in (("coffee", skdata.coffee()), ("chelsea", skdata.chelsea()))]
        plan = GenerationPlan(sources, [{"kind": "defocus", "level": float(lv)} for lv in range(1, 41)],
                              [{"method": "wiener", "params": {"balance": [0.01, 0.02, 0.05]}}])
        return add_job(s, study_id, plan)


def sessions_in_one_process(workdir: Path, n_sessions: int, seconds: float, think_ms: float,
                            variant: str) -> dict:
    """Figure (d): n_sessions reviewers as threads of one process (as Streamlit serves every
    browser session), each claiming and submitting through the app's write path with an
    exponential think time between ratings, while a generation worker process writes
    restorations into the same SQLite file. `variant` "app" or "baseline" (see _baseline_lab)."""
    import random
    import shutil
    import threading

    from review.labeling.assignment import next_assignment
    from review.labeling.ratings import Submission, submit
    from review.labeling.study import study_by_id

    data = workdir / f"sessions-{variant}"
    env = {"REVIEW_DATA_DIR": str(data)}
    lab = open_lab(load_settings(env), migrate=True)
    study_id, reviewers = build_study(lab.engine, n_items=max(2000, int(n_sessions * seconds * 3)),
                                      n_reviewers=n_sessions, name="sessions")
    job = _generation_job(lab, study_id)
    if variant == "baseline":
        lab = _baseline_lab(lab)
    worker = subprocess.Popen([sys.executable, "-m", "review", "generate", "--job", str(job), "--quiet"],
                              env={**os.environ, **env}, cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    time.sleep(3)  # the worker has imported and started writing
    stop = time.monotonic() + seconds
    latencies: list[float] = []
    acked: list[str] = []
    errors: Counter[str] = Counter()
    per_session: Counter[int] = Counter()
    lock = threading.Lock()

    def session(uid: int) -> None:
        rng = random.Random(uid)
        while time.monotonic() < stop:
            time.sleep(rng.expovariate(1000 / think_ms))
            t0 = time.perf_counter()
            token = uuid.uuid4().hex
            try:
                with lab.write() as s:
                    lease = next_assignment(s, study_by_id(s, study_id), uid)
                if lease is None:
                    return
                with lab.write() as s:
                    submit(s, lease.assignment_id, uid,
                           Submission(score=rng.randint(1, 5), client_token=token))
            except DatabaseBusy as exc:  # the page shows this as a plain message
                with lock:
                    errors[f"message: {exc}"[:120]] += 1
                continue
            except Exception as exc:  # noqa: BLE001 - the page would show a traceback
                with lock:
                    errors[f"traceback: {type(exc).__name__}: {str(exc).splitlines()[0][:100]}"] += 1
                continue
            with lock:
                latencies.append((time.perf_counter() - t0) * 1000)
                acked.append(token)
                per_session[uid] += 1

    threads = [threading.Thread(target=session, args=(uid,)) for uid in reviewers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    worker.terminate()
    worker.wait(30)
    with lab.engine.connect() as conn:
        made = conn.scalar(select(func.count()).select_from(Restoration)
                           .where(Restoration.params_key.not_like("sessions-%")))
    lab.engine.dispose()
    audit = _audit(str(lab.settings.database_url.render_as_string(hide_password=False)), study_id, acked)
    shutil.rmtree(data, ignore_errors=True)
    counts = [per_session[u] for u in reviewers]
    return {"ratings": len(latencies), "p50": pct(latencies, 50), "p99": pct(latencies, 99),
            "max": max(latencies, default=float("nan")), "errors": errors, "fair": (min(counts), max(counts)),
            "generated": made, **audit}


# ----------------------------------------------------------------------------- statistics CLI


def _timed(cmd: list[str]) -> tuple[float, float, str]:
    """Run a command; (wall seconds, peak RSS in MB of that process, its stderr tail)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace")[-400:]
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed ({proc.returncode}): {err}")
    return wall, usage.ru_maxrss / 1024, err


FLOOR = ("import sys, pandas as pd; df = pd.read_csv(sys.argv[1]); "
         "open(sys.argv[2], 'w').write(df.to_json(orient='records'))")


def stats_cli(csv: Path, out: Path) -> dict:
    """Figure (c): the statistics CLI end to end on one file, against the read+write floor."""
    wall, rss, _err = _timed([sys.executable, "-m", "review", "stats", "--input", str(csv), "--format",
                              "json", "-o", str(out)])
    size = out.stat().st_size / 1e6
    floor, floor_rss, _ = _timed([sys.executable, "-c", FLOOR, str(csv), str(out) + ".floor"])
    return {"s": wall, "rss_mb": rss, "json_mb": size, "floor_s": floor, "floor_rss_mb": floor_rss}


def write_ratings(workdir: Path, n_ratings: int, n_raters: int) -> tuple[Path, Path]:
    """The two inputs: ~n_ratings of bench/agreement.py's study (10 raters per item, 10 %
    missing) and one item rated by n_raters raters."""
    from agreement import make_study  # bench/agreement.py

    big = workdir / "ratings.csv"
    make_study(max(1, round(n_ratings / 9)), 10, 0.1).to_csv(big, index=False)
    rng = np.random.default_rng(0)
    one = workdir / "one_item.csv"
    with one.open("w", encoding="utf-8") as fh:
        fh.write("item,rater,score\n")
        fh.writelines(f"only,r{i:06d},{s}\n" for i, s in enumerate(rng.integers(1, 6, n_raters)))
    return big, one


# ----------------------------------------------------------------------------- report


def _errors_line(errors: Counter[str]) -> str:
    if not errors:
        return "0"
    shown = "; ".join(f"{n}x {e}" for e, n in errors.most_common(3))
    return f"{sum(errors.values())} ({shown})"


def print_writers(kind: str, got: dict, base: dict, n: int, seconds: float) -> None:
    ok = not got["errors"] and got["lost"] == 0 and got["over_filled"] == 0
    print(f"  {kind:<10} {n} writers x {seconds:g} s: {got['ratings']} ratings ({got['per_s']:.0f}/s), "
          f"errors shown {_errors_line(got['errors'])}, lost {got['lost']}, "
          f"over-filled {got['over_filled']}")
    print(f"  {'':<10} p50 {got['p50']:.1f} ms, p99 {got['p99']:.1f} ms (one writer alone: p50 "
          f"{base['p50']:.1f}, p99 {base['p99']:.1f}; ratio p99 {got['p99'] / base['p99']:.1f}x); "
          f"fairness {got['fair'][0]}..{got['fair'][1]} ratings per writer; "
          f"goal 0/0/0: {'met' if ok else 'NOT met'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="a short run: 5 s of writers, 100k ratings, 2,000 raters")
    ap.add_argument("--seconds", type=float, default=20.0, help="how long the writers rate")
    ap.add_argument("--writers", type=int, default=20)
    ap.add_argument("--one-n", type=int, default=300, help="ratings timed for figure (b)")
    ap.add_argument("--ratings", type=int, default=1_000_000)
    ap.add_argument("--raters", type=int, default=20_000)
    ap.add_argument("--only", default="a,b,c,d", help="comma-separated figures to run")
    ap.add_argument("--sessions", type=int, default=50, help="reviewer sessions for figure (d)")
    ap.add_argument("--think-ms", type=float, default=2000,
                    help="mean think time between a session's ratings in figure (d)")
    ap.add_argument("--skip-postgres", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.one_n, args.ratings, args.raters = 5.0, 100, 100_000, 2_000
    figures = set(args.only.split(","))
    sys.stdout.reconfigure(line_buffering=True)
    print(describe())

    from tests.support import orm_path_only, throwaway_postgres

    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp, ExitStack() as cluster:
        workdir = Path(tmp)
        pg_base = None
        if not args.skip_postgres and figures & {"a", "b"}:
            pg_base = cluster.enter_context(throwaway_postgres("max_connections=200"))
        kinds = ["sqlite"] + (["postgresql"] if pg_base else [])
        if "a" in figures:
            print(f"\n(a) {args.writers} writer processes, claim + submit in a loop; {load()}")
            for kind in kinds:
                got = writers(fresh_database(kind, workdir, pg_base, "wa"), args.writers, args.seconds)
                base = serial_baseline(fresh_database(kind, workdir, pg_base, "wb"), args.one_n)
                print_writers(kind, got, base, args.writers, args.seconds)
            print(f"    {load()}")
        if "b" in figures:
            print(f"\n(b) one writer, claim + submit (as the Rate page), {args.one_n} ratings; {load()}")
            for kind in kinds:
                got = one_writer(fresh_database(kind, workdir, pg_base, "ob"), args.one_n)
                goal = f"; goal p50 <= 4 ms: {'met' if got['p50'] <= 4 else 'NOT met'}" \
                    if kind == "postgresql" else ""
                print(f"  {kind:<10} p50 {got['p50']:.2f} ms, p99 {got['p99']:.2f} ms, "
                      f"{got['statements']} statements per rating; baseline one SELECT 1 transaction "
                      f"p50 {got['trip_p50']:.2f} ms (ratio {got['p50'] / got['trip_p50']:.1f}x){goal}")
            if pg_base:  # the same writer through the ORM path: what the hot path replaced
                with orm_path_only():
                    got = one_writer(fresh_database("postgresql", workdir, pg_base, "oc"), args.one_n)
                print(f"  postgresql, ORM path (baseline) p50 {got['p50']:.2f} ms, p99 {got['p99']:.2f} ms, "
                      f"{got['statements']} statements per rating")
            print(f"    {load()}")
        if "d" in figures:
            print(f"\n(d) {args.sessions} reviewer sessions as threads of one process on SQLite, think time "
                  f"~{args.think_ms:.0f} ms, a generation worker writing; {load()}")
            for variant in ("app", "baseline"):
                got = sessions_in_one_process(workdir, args.sessions, args.seconds, args.think_ms, variant)
                name = "app write path" if variant == "app" else "baseline (pre-issue-11)"
                met = got["p99"] <= 100 and not got["errors"] and not got["lost"]
                goal = f"; goal p99 <= 100 ms, 0 errors, 0 lost: {'met' if met else 'NOT met'}" \
                    if variant == "app" else ""
                print(f"  {name:<24} {got['ratings']} ratings, p50 {got['p50']:.1f} ms, "
                      f"p99 {got['p99']:.1f} ms, "
                      f"max {got['max']:.0f} ms, {_errors_line(got['errors'])}, lost {got['lost']}, "
                      f"over-filled {got['over_filled']}, per session {got['fair'][0]}..{got['fair'][1]}, "
                      f"worker stored {got['generated']} restorations{goal}")
            print(f"    {load()}")
        cluster.close()  # the PostgreSQL server is done: figure (c) gets the CPUs to itself
        if "c" in figures:
            big, one = write_ratings(workdir, args.ratings, args.raters)
            print(f"\n(c) `python -m review stats --input FILE --format json -o OUT`; {load()}")
            got = stats_cli(big, workdir / "big.json")
            n_rows = sum(1 for _ in big.open(encoding="utf-8")) - 1
            ok = got["s"] <= 5
            print(f"  {n_rows} ratings: {got['s']:.2f} s, peak RSS {got['rss_mb']:.0f} MB, JSON "
                  f"{got['json_mb']:.0f} MB; floor (pandas read_csv + to_json) {got['floor_s']:.2f} s "
                  f"(ratio {got['s'] / got['floor_s']:.1f}x); goal <= 5 s: {'met' if ok else 'NOT met'}")
            got = stats_cli(one, workdir / "one.json")
            ok = got["s"] <= 10 and got["rss_mb"] <= 1024
            print(f"  one item, {args.raters} raters: {got['s']:.2f} s, peak RSS {got['rss_mb']:.0f} MB, "
                  f"JSON {got['json_mb']:.1f} MB; floor {got['floor_s']:.2f} s "
                  f"(ratio {got['s'] / got['floor_s']:.1f}x); goal <= 10 s and <= 1 GB: "
                  f"{'met' if ok else 'NOT met'}")
            print(f"    {load()}")


if __name__ == "__main__":
    main()
