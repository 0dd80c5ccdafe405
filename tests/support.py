"""Test support shared by the test modules and bench/: studies built straight in the database, a
study of real stored images, free ports and polling. Test modules import from here, never from
each other."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, ImageFilter
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session, sessionmaker

from db.models import (
    DegradedImage,
    GuidelineVersion,
    Rating,
    Restoration,
    SourceImage,
    Study,
    StudyReviewer,
    User,
)
from review.accounts.users import add_user
from review.database import Lab
from review.labeling.guidelines.files import sync_all
from review.labeling.study import StudyConfig, add_item, ensure_study

T = TypeVar("T")
PASSWORD = "secret-pass"
#: The methods build_study cycles through for its non-gold items.
METHODS = ("wiener", "richardson_lucy", "unsupervised_wiener", "sd15_img2img")


@dataclass
class SmallStudy:
    """What make_study built: the study and its reviewers (not yet enrolled)."""

    study: Study
    reviewers: list[User]


def make_study(session: Session, n_items: int, *, raters_per_item: int = 2, gold_every: int = 0,
               n_reviewers: int = 3, gold_rate: float = 0.0, name: str = "s") -> SmallStudy:
    """A study built straight in the database (no image files) for assignment and rating tests."""
    gv = GuidelineVersion(slug=f"g-{name}", version=1, title="t", body_md="b", content_sha256="0" * 64)
    src = SourceImage(sha256=f"{name:a>64}"[:64], path="aa/a.png", width=8, height=8)
    session.add_all([gv, src])
    session.flush()
    deg = DegradedImage(source_id=src.id, recipe_key="k", kind="defocus", level=3.0,
                        sha256="b" * 64, path="bb/b.png")
    session.add(deg)
    session.flush()
    study = ensure_study(session, StudyConfig(name=name, raters_per_item=raters_per_item,
                                              gold_rate=gold_rate), gv)
    for i in range(n_items):
        gold = bool(gold_every) and i % gold_every == 0
        method = "hidden_reference" if gold else "wiener"
        res = Restoration(degraded_id=deg.id, method=method, params_key=f"p{i}",
                          sha256="c" * 64, path="cc/c.png")
        session.add(res)
        session.flush()
        add_item(session, study, res, is_gold=gold, expected=(4, 5) if gold else None)
    users = [User(username=f"{name}-r{i}", role="reviewer", password_hash="x")
             for i in range(n_reviewers)]
    session.add_all(users)
    session.flush()
    return SmallStudy(study=study, reviewers=users)


def picture(seed: int, size: tuple[int, int] = (96, 72)) -> Image.Image:
    """A small deterministic picture with edges (so blur is visible)."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    arr = np.stack([(x * (3 + seed % 5)) % 256, (y * 4) % 256, ((x + y) * 2) % 256], axis=-1)
    for _ in range(6):
        x0, y0 = rng.integers(0, w - 10), rng.integers(0, h - 10)
        arr[y0:y0 + 10, x0:x0 + 10] = rng.integers(0, 256, 3)
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def sample_pictures(max_side: int = 384) -> list[Image.Image]:
    """scikit-image's bundled photos (no download), shrunk: realistic pages for screenshots."""
    from skimage import data

    out = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "camera", "text"):
        img = Image.fromarray(np.asarray(getattr(data, name)())).convert("RGB")
        scale = max_side / max(img.size)
        out.append(img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS))
    return out


def build_study(lab: Lab, n_items: int = 6, *, name: str = "Portraits", raters_per_item: int = 2,
                gold_every: int = 0, gold_rate: float = 0.0, reviewers: tuple[str, ...] = ("alice", "bob"),
                admins: tuple[str, ...] = ("admin",), guideline: GuidelineVersion | None = None,
                no_reference_every: int = 0, image_size: tuple[int, int] = (96, 72),
                password: str = PASSWORD, pictures: list[Image.Image] | None = None) -> int:
    """A study of `n_items` real stored images (source -> blurred -> restoration) under the
    shipped fidelity v3 guideline (or `guideline`); returns the study id. Gold items are
    hidden-reference controls expecting 4-5. `pictures` (cycled) replace the generated ones."""
    with lab.write() as s:
        if guideline is None:
            versions = sync_all(s)
            guideline = next(v for v in versions if (v.slug, v.version) == ("fidelity", 3))
        else:
            s.add(guideline)
            s.flush()
        study = ensure_study(s, StudyConfig(name=name, raters_per_item=raters_per_item,
                                            gold_rate=gold_rate), guideline)
        for i in range(n_items):
            seed = 1000 + i + 97 * study.id
            sharp = pictures[i % len(pictures)] if pictures else picture(seed, image_size)
            is_ref = not (no_reference_every and i % no_reference_every == 0)
            stored = lab.store.put_image(sharp)
            src = s.scalar(select(SourceImage).where(SourceImage.sha256 == stored.sha256))
            if src is None:
                src = SourceImage(sha256=stored.sha256, path=stored.relpath, width=sharp.width,
                                  height=sharp.height, title=f"sample {i}", is_reference=is_ref)
                s.add(src)
                s.flush()
            blurred = sharp.filter(ImageFilter.GaussianBlur(2 + i % 3))
            bstored = lab.store.put_image(blurred)
            deg = DegradedImage(source_id=src.id, recipe_key=f"k{i}", kind="defocus", level=3.0,
                                sha256=bstored.sha256, path=bstored.relpath)
            s.add(deg)
            s.flush()
            gold = bool(gold_every) and i % gold_every == 0
            method = "hidden_reference" if gold else METHODS[i % len(METHODS)]
            out = sharp if gold else blurred.filter(ImageFilter.UnsharpMask(3, 150))
            rstored = lab.store.put_image(out)
            res = Restoration(degraded_id=deg.id, method=method, params_key=f"p{i}",
                              sha256=rstored.sha256, path=rstored.relpath)
            s.add(res)
            s.flush()
            add_item(s, study, res, is_gold=gold, expected=(4, 5) if gold else None)
        have = set(s.scalars(select(User.username)))
        for username in reviewers:
            if username not in have:
                add_user(s, username, password, "reviewer", username.title())
        for username in admins:
            if username not in have:
                add_user(s, username, password, "admin", f"{username.title()} Admin")
        return study.id


def free_port() -> int:
    """A TCP port on the loopback address that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(probe: Callable[[], T], *, timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll `probe` until it returns something truthy and return that; fail after `timeout` s.
    For state another process changes: the wait ends as soon as the state is there."""
    deadline = time.monotonic() + timeout
    while not (result := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
    return result


def _pg_bin(name: str) -> str:
    for candidate in (shutil.which(name), f"/usr/lib/postgresql/15/bin/{name}"):
        if candidate and os.path.exists(candidate):
            return candidate
    raise RuntimeError(
        f"PostgreSQL server binary {name!r} not found: install it with "
        "'apt-get install -y postgresql-15' (the PostgreSQL tests need a real server)."
    )


@contextmanager
def throwaway_postgres(*settings: str) -> Iterator[str]:
    """A PostgreSQL cluster (initdb, pg_ctl) on a free loopback port for the duration; yields its
    base URL. `settings` are extra `-c name=value` server settings (bench/load.py raises
    max_connections). fsync is off: the data is thrown away anyway."""
    # Not under pytest's tmp folder: that is private to root, and initdb refuses to run as root.
    base = Path(tempfile.mkdtemp(prefix="review-pg-"))
    datadir = base / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(base, "postgres")
    port = free_port()
    options = " ".join(f"-c {s}" for s in ("listen_addresses=127.0.0.1", "fsync=off", *settings))
    subprocess.run(
        [*as_user, _pg_bin("initdb"), "-D", str(datadir), "-U", "lab", "--auth=trust", "-E", "UTF8"],
        check=True, capture_output=True,
    )
    subprocess.run(
        [*as_user, _pg_bin("pg_ctl"), "-D", str(datadir), "-l", str(base / "log"), "-w", "-o",
         f"-p {port} -k {base} {options}", "start"],
        check=True, capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://lab@127.0.0.1:{port}"
    finally:
        subprocess.run([*as_user, _pg_bin("pg_ctl"), "-D", str(datadir), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """The SQL statements the engine sends while the block runs (BEGIN excluded: how a transaction
    starts is the engine's business, db/engine.py). Each is one round trip to a server."""
    sent: list[str] = []

    def log(_conn, _cursor, statement: str, *_args) -> None:  # noqa: ANN001 - DB-API objects
        if not statement.lstrip().upper().startswith("BEGIN"):
            sent.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", log)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", log)


def in_threads(target: Callable[[int], object], ids: Iterable[int]) -> None:
    """Run ``target(id)`` in one thread per id, all at once; fail with whatever any of them raised."""
    errors: list[BaseException] = []

    def run(one: int) -> None:
        try:
            target(one)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(one,)) for one in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


@contextmanager
def orm_path_only() -> Iterator[None]:
    """PostgreSQL claims and submits through the ORM code, as before review/labeling/hotpath.py
    (tests compare the two; bench/load.py (b) times it as the hot path's baseline)."""
    from review.labeling import hotpath

    applies = hotpath.applies
    hotpath.applies = lambda _session: False
    try:
        yield
    finally:
        hotpath.applies = applies


def rate_next(sessions: sessionmaker[Session], study_id: int, reviewer_id: int, score: int = 3) -> int | None:
    """One rating as the Rate page (review/ui/rate.py) makes it: claim the next item and read its
    images in one transaction, submit in another. The rated item's id, or None when none is left."""
    from review.labeling.assignment import claim_next
    from review.labeling.ratings import Submission, submit
    from review.labeling.views import item_view

    with sessions() as s, s.begin():
        lease = claim_next(s, study_id, reviewer_id)
        if lease is None:
            return None
        lease.view or item_view(s, lease.item_id)  # the images the page shows
    with sessions() as s, s.begin():
        submit(s, lease.assignment_id, reviewer_id, Submission(score=score, client_token=uuid.uuid4().hex))
    return lease.item_id


def plant_user_text(lab: Lab, plant: str, study_name: str) -> int:
    """A study named `study_name` whose reviewer alice (display name 'Alice <plant>') rated every
    item, the first rejected by QA with the reason 'Wrong: <plant>', feedback shown: user text in
    every place a page shows it. Returns the study id."""
    from review.labeling import qa
    from review.labeling.assignment import next_assignment
    from review.labeling.ratings import Submission, submit
    from review.labeling.study import study_by_id

    sid = build_study(lab, 2, name=study_name, raters_per_item=1)
    with lab.sessions() as s, s.begin():
        alice = s.scalar(select(User).where(User.username == "alice"))
        alice.display_name = f"Alice {plant}"
        boss = s.scalar(select(User.id).where(User.username == "admin"))
        study = study_by_id(s, sid)
        while (lease := next_assignment(s, study, alice.id)) is not None:
            submit(s, lease.assignment_id, alice.id, Submission(2))
        s.scalar(select(StudyReviewer).where(StudyReviewer.reviewer_id == alice.id)).qa_enabled = True
        first = s.scalar(select(Rating.id).where(Rating.reviewer_id == alice.id).order_by(Rating.id))
        qa.reject(s, first, boss, f"Wrong: {plant}")
        qa.set_qa_options(s, study, show_feedback=True)
    return sid
