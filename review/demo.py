"""The demo study: scikit-image's bundled sample photos (no download), blurred at several kinds
and levels, restored by the classical baselines, with hidden-reference and blurred-input controls,
so a fresh install has ratable items without any Stable Diffusion weights. Idempotent: every row
is found by content or recipe before it is created.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
from PIL import Image
from sqlalchemy import select

from db.models import DegradedImage, GuidelineVersion, Restoration, Study, StudyReviewer, User
from review.accounts.users import add_user
from review.analysis.crowd_cleansing import current_decisions, run_cleansing
from review.database import Lab
from review.enums import CleansingOutcome, PoolKind, Role
from review.labeling.cohorts import joined_counts
from review.labeling.guidelines.files import GUIDELINES_DIR, authored_dir, sync_all
from review.labeling.pools import PoolSettings, PoolSpec, add_pool, pools_of
from review.labeling.settings import StudySettings, update_settings
from review.labeling.simulated_crowd import simulate_pool
from review.labeling.simulated_panel import simulate_study
from review.labeling.study import StudyConfig, add_item, count_items, ensure_study
from review.media import catalog
from review.media.degrade import BlurSpec
from review.media.restore.classical import RichardsonLucy, Wiener
from review.media.restore.controls import Blurred, HiddenReference
from review.media.restore.runner import resolve_params, run_restorer
from review.performance import threads_per_core

DEMO_STUDY = "Demo: how far can restoration go?"
DEMO_MAX_SIDE = 384
DEMO_GUIDELINE = ("fidelity", 1)
DEMO_USERS = [
    ("admin", Role.ADMIN, "Ada Admin"),
    ("alice", Role.REVIEWER, "Alice Reviewer"),
    ("bob", Role.REVIEWER, "Bob Reviewer"),
    ("carol", Role.REVIEWER, "Carol Reviewer"),
    ("quinn", Role.QA, "Quinn QA"),
]
#: The demo shows classical deblurring and a control (the registry's classes, named by their class).
DEMO_METHODS = (Wiener.name, RichardsonLucy.name, Blurred.name)
DEMO_QA_SHARE = 0.5


@dataclass(frozen=True)
class DemoSource:
    name: str
    title: str
    content: str
    licence: str
    blurs: tuple[BlurSpec, ...]


_STANDARD_BLURS = (
    BlurSpec("defocus", 3.0),
    BlurSpec("motion_line", 15.0, angle=30.0),
    BlurSpec("camera_shake", 25.0, seed=7),
)

DEMO_SOURCES = (
    DemoSource("astronaut", "Astronaut portrait (Eileen Collins)", "face",
               "NASA, no known copyright restrictions", _STANDARD_BLURS + (BlurSpec("gaussian", 2.0),)),
    DemoSource("chelsea", "Chelsea the cat", "face", "CC0, Stefan van der Walt", _STANDARD_BLURS),
    DemoSource("coffee", "Coffee cup", "object", "CC0, Rachel Michetti", _STANDARD_BLURS),
    DemoSource("rocket", "Falcon 9 launch", "object", "SpaceX, public domain", _STANDARD_BLURS),
    DemoSource("text", "Street-sign text", "text", "Public domain (Wikipedia)",
               (BlurSpec("defocus", 2.0), BlurSpec("motion_line", 9.0, angle=0.0))),
    DemoSource("page", "Printed page", "text", "scikit-image sample data",
               (BlurSpec("defocus", 2.0), BlurSpec("motion_line", 9.0, angle=90.0))),
)


def sample_image(name: str, max_side: int = DEMO_MAX_SIDE) -> Image.Image:
    """A scikit-image sample as RGB, shrunk so the demo builds in seconds on a laptop CPU."""
    from skimage import data

    arr = np.asarray(getattr(data, name)())
    img = Image.fromarray(arr).convert("RGB")
    scale = max_side / max(img.size)
    if scale < 1:
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
    return img


def real_blurred_sample() -> Image.Image:
    """clock_motion.png: a real motion-blurred photo that ships inside scikit-image."""
    from skimage import data

    return Image.open(Path(data.data_dir) / "clock_motion.png").convert("RGB")


def seed_demo(lab: Lab, *, password: str = "demo-pass",
              echo: Callable[[str], None] = lambda _m: None) -> str:
    """Create (or complete) the demo users, guideline, images, restorations and study."""
    with lab.write() as s:
        sync_all(s, GUIDELINES_DIR, authored_dir(lab.settings.data_dir))
        for username, role, name in DEMO_USERS:
            if s.scalar(select(User).where(User.username == username)) is None:
                add_user(s, username, password, role, name)
        slug, version = DEMO_GUIDELINE
        guideline = s.scalar(select(GuidelineVersion).where(
            GuidelineVersion.slug == slug, GuidelineVersion.version == version))
        study = ensure_study(s, StudyConfig(
            name=DEMO_STUDY,
            description="Classical deblurring and controls on scikit-image sample photos.",
            raters_per_item=2, gold_rate=0.15,
        ), guideline)
        if StudySettings.of(study).qa_share == 0.0 and not joined_counts(s).get(study.id):
            # Half the reviewers go through QA, so "Sample now" has work and quinn gets a queue.
            update_settings(study, qa_share=DEMO_QA_SHARE)
        study_id = study.id

    photos = []
    for src in DEMO_SOURCES:
        echo(f"  {src.name}: {len(src.blurs)} blur levels x {len(DEMO_METHODS)} restorers")
        fields = _SourceFields(title=src.title, content=src.content, origin=f"skimage.data.{src.name}",
                               licence=src.licence)
        photos.append(_Photo(sample_image(src.name), fields, src.blurs, DEMO_METHODS))
    _fill_study(lab, study_id, photos)

    with lab.write() as s:
        real = real_blurred_sample()
        catalog.add_blurred_photo(s, lab.store, real, title="Clock (real motion blur)", content="object",
                                  origin="skimage clock_motion.png", licence="scikit-image sample data")
        n_items = count_items(s, s.get_one(Study, study_id))
    simulated = seed_simulated_demo(lab, echo=echo)
    crowd = seed_crowd_demo(lab, echo=echo)
    return (f"Demo study {DEMO_STUDY!r}: {n_items} items. Demo logins (password {password!r}): "
            + ", ".join(f"{u} ({r})" for u, r, _ in DEMO_USERS) + f"\n{simulated}\n{crowd}")


class _SourceFields(TypedDict):
    """A demo photo's catalog fields (catalog.add_source's keywords)."""

    title: str
    content: str
    origin: str
    licence: str


@dataclass(frozen=True)
class _Photo:
    """A demo photo, its catalog fields, the blurs it gets and the restorers run on each."""

    image: Image.Image
    fields: _SourceFields
    blurs: tuple[BlurSpec, ...]
    methods: tuple[str, ...]


@dataclass
class _Unit:
    """One restoration a demo study needs: stored already (`restoration_id`), or to be computed
    from `blurred` (and `kernel`) into `out`."""

    degraded_id: int
    method: str
    params: dict[str, Any]
    restoration_id: int | None
    blurred: Image.Image | None = None
    kernel: np.ndarray | None = None
    out: Any = None  # the restorer's result


def _fill_study(lab: Lab, study_id: int, photos: list[_Photo]) -> None:
    """Put each photo, its blurred versions and their restorations (plus a hidden reference at the
    first blur) in the study. The restorers, most of the demo's time, run on every core outside any
    transaction (a write lock held meanwhile would stall the app): the catalog rows are written
    first, then each photo's restorations in one short transaction, so a re-run finds them."""
    per_photo: list[list[_Unit]] = []
    with lab.write() as s:
        for photo in photos:
            source = catalog.add_source(s, lab.store, photo.image, **photo.fields)
            units = []
            for i, spec in enumerate(photo.blurs):
                degraded = catalog.add_degraded(s, lab.store, source, spec)
                for method in photo.methods + ((HiddenReference.name,) if i == 0 else ()):
                    params = resolve_params(method)
                    found = catalog.find_restoration(s, degraded.id, method, params)
                    unit = _Unit(degraded.id, method, params, found.id if found is not None else None)
                    if found is None:
                        unit.blurred = lab.store.open_image(degraded.path)
                        unit.kernel = catalog.load_kernel(lab.store, degraded)
                    units.append(unit)
            per_photo.append(units)

    def restore(photo: _Photo, unit: _Unit) -> None:
        assert unit.blurred is not None  # opened for every unit without a stored restoration
        unit.out = run_restorer(unit.method, unit.blurred, kernel=unit.kernel, reference=photo.image,
                                params=unit.params)

    with threads_per_core() as pool:
        running = [[pool.submit(restore, photo, u) for u in units if u.restoration_id is None]
                   for photo, units in zip(photos, per_photo, strict=True)]
        for units, futures in zip(per_photo, running, strict=True):
            for future in futures:
                future.result()
            with lab.write() as s:
                study = s.get_one(Study, study_id)
                for u in units:
                    if u.restoration_id is None:
                        restoration = catalog.add_restoration(
                            s, lab.store, s.get_one(DegradedImage, u.degraded_id), u.method, u.params,
                            u.out.image, u.out.provenance, u.out.metrics)
                    else:
                        restoration = s.get_one(Restoration, u.restoration_id)
                    add_item(s, study, restoration)

SIMULATED_STUDY = "Demo (SIMULATED ratings): how far can Wiener go on camera shake?"
SIMULATED_SOURCES = ("astronaut", "coffee")
SIMULATED_SIDE = 128  # small: the point is the ratings, and the demo must stay fast
SIMULATED_LEVELS = (3.0, 6.0, 9.0, 12.0, 15.0, 18.0, 21.0, 24.0)
SIMULATED_METHODS = (Wiener.name, Blurred.name)
SIMULATED_RATERS = 12
#: Guideline arms: v1 (minimal text) against v3 (with example pictures), QA on for half the raters.
SIMULATED_GUIDELINES = (("fidelity", 1), ("fidelity", 3))


def _simulated_photos() -> list[_Photo]:
    """The small photos, camera-shake levels and restorers of the simulated demo studies."""
    photos = []
    for name in SIMULATED_SOURCES:
        src = next(d for d in DEMO_SOURCES if d.name == name)
        photos.append(_Photo(sample_image(name, SIMULATED_SIDE),
                             _SourceFields(title=f"{src.title} (small)", content=src.content,
                                           origin=f"skimage.data.{name}", licence=src.licence),
                             tuple(BlurSpec("camera_shake", level, seed=7) for level in SIMULATED_LEVELS),
                             SIMULATED_METHODS))
    return photos


def seed_simulated_demo(lab: Lab, *, echo: Callable[[str], None] = lambda _m: None) -> str:
    """A second demo study that already holds a simulated panel's ratings (review.labeling.
    simulated_panel), so Analysis and the answer are populated on a fresh install: Wiener and the
    blurred input over camera-shake levels, raters randomised over two guideline versions and QA on
    or off. Its raters are marked simulated; real reviewers can still rate it (4 free slots per item)."""
    echo(f"  simulated panel: {len(SIMULATED_SOURCES)} photos x {len(SIMULATED_LEVELS)} camera-shake "
         f"levels x {len(SIMULATED_METHODS)} restorers, {SIMULATED_RATERS} simulated raters")
    with lab.write() as s:
        versions = [s.execute(select(GuidelineVersion).where(GuidelineVersion.slug == slug,
                                                             GuidelineVersion.version == v)).scalar_one()
                    for slug, v in SIMULATED_GUIDELINES]
        study = ensure_study(s, StudyConfig(
            name=SIMULATED_STUDY,
            description="SIMULATED ratings from a simulated panel (P.910 raters over a known ground "
                        "truth), for exploring Analysis and the answer. Remove them with `python -m review "
                        f"simulate --remove --study \"{SIMULATED_STUDY}\"`.",
            raters_per_item=SIMULATED_RATERS + 4, gold_rate=0.0), versions[0])
        if not joined_counts(s).get(study.id):
            update_settings(study, guideline_version_ids=[v.id for v in versions], qa_share=0.5)
        study_id = study.id
    _fill_study(lab, study_id, _simulated_photos())
    with lab.write() as s:
        study = s.get_one(Study, study_id)
        if s.scalar(select(User.id).join(StudyReviewer, StudyReviewer.reviewer_id == User.id).where(
                StudyReviewer.study_id == study_id, User.simulated.is_(True)).limit(1)) is not None:
            return f"Simulated demo study {SIMULATED_STUDY!r}: already holds its simulated panel."
        return simulate_study(s, study, raters=SIMULATED_RATERS, seed=15).line()


CROWD_STUDY = "Demo (SIMULATED crowd): in-house team vs a crowd pool"
CROWD_POOL = "Crowd (SIMULATED)"
CROWD_INHOUSE = 4  # simulated in-house raters who rate every item
CROWD_PARTICIPANTS = 30
CROWD_SESSION = 12  # items per participant's session


def seed_crowd_demo(lab: Lab, *, echo: Callable[[str], None] = lambda _m: None) -> str:
    """A third demo study with a SIMULATED in-house team and a SIMULATED crowd pool (careful, noisy,
    spamming, straight-lining and speeding participants; review.labeling.simulated_crowd) whose
    sessions data cleansing has already judged, so the Crowd page's cleansing report and the
    pools comparison show on a fresh install. Nobody in it is a person; it says so everywhere."""
    echo(f"  simulated crowd: {CROWD_INHOUSE} in-house raters and {CROWD_PARTICIPANTS} crowd participants")
    with lab.write() as s:
        version = s.scalar(select(GuidelineVersion).where(GuidelineVersion.slug == "fidelity",
                                                          GuidelineVersion.version == 3))
        study = ensure_study(s, StudyConfig(
            name=CROWD_STUDY,
            description="SIMULATED ratings: a simulated in-house team and a simulated crowd pool, for "
                        "exploring data cleansing and the pools comparison. No person rated this study.",
            raters_per_item=CROWD_INHOUSE + CROWD_SESSION, gold_rate=0.0), version)
        study_id = study.id
        if pools_of(s, study_id):
            return f"Simulated crowd study {CROWD_STUDY!r}: already seeded."
    _fill_study(lab, study_id, _simulated_photos())
    with lab.write() as s:
        study = s.get_one(Study, study_id)
        simulate_study(s, study, raters=CROWD_INHOUSE, seed=23)
        update_settings(study, consent_text="SIMULATED study: no consent was given by anyone.")
        pool = add_pool(s, study_id, PoolSpec(
            name=CROWD_POOL, kind=PoolKind.CROWD, platform="prolific", pay_per_item=0.05, pay_per_session=0.5,
            currency="GBP", completion_code="SIMULATED-DONE", screened_out_code="SIMULATED-OUT",
            flow=PoolSettings(items_per_session=CROWD_SESSION)))
        crowd = simulate_pool(s, study, pool, participants=CROWD_PARTICIPANTS, seed=29)
        run_cleansing(s, study_id)
        counts = {o: 0 for o in CleansingOutcome}
        for d in current_decisions(s, study_id).values():
            counts[CleansingOutcome(d.outcome)] += 1
    return (f"Simulated crowd study {CROWD_STUDY!r}: {crowd.participants} SIMULATED participants, "
            f"{crowd.ratings} ratings; cleansing: {counts[CleansingOutcome.ACCEPT_USE]} used, "
            f"{counts[CleansingOutcome.ACCEPT_NO_USE]} paid but not used, "
            f"{counts[CleansingOutcome.REJECT]} rejected.")
