"""Try your photo: how blurry is it in the study's own units, what do the restorers make of it,
and what did the study find at that blur level?

No-reference blur measure: scikit-image's blur_effect (Crete et al. 2007; 0 sharp .. 1 blurred)
of the photo scaled to the study's image size. It is calibrated on the study's own degraded
images: an isotonic regression (scikit-learn) of blur level on blur_effect per blur kind, so the
estimate is in the study's pixels; its spread is the residual sd of the calibration images' levels
around that fit (never below half the studied level step), and the interval is the estimate
+- 1.96 spreads, clipped to the studied range. Nothing here stores the photo unless an admin
asks (`add_to_catalog`).

SD1.5 img2img restorations run only when asked (`restore_photo_sd15`, slow on CPU), at the
study's own SD1.5 strengths and parameters, or at DEFAULT_SD15_STRENGTHS when it has none.

Who may use the page (`access_refusal`): admins and QA always; a reviewer only once no open study
that lists them still has work for them, because the page labels which restorer made which look,
which could sway their blind ratings.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from skimage.measure import blur_effect
from sklearn.isotonic import IsotonicRegression
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import DegradedImage, Restoration, SourceImage, Study, StudyItem, utcnow
from review.analysis.answer import KIND_WORDS, RESTORER_WORDS, Answer
from review.config import Settings
from review.labeling.assignment import current_lease, remaining_for
from review.labeling.study import closed_at, list_studies, listed
from review.media.catalog import PhotoError, add_photo
from review.media.degrade import BlurSpec, make_kernel
from review.media.restore.runner import resolve_params, run_grid, run_restorer
from review.media.store import ImageStore

#: Classical baselines shown for a photo (they need a kernel: the study's recipe at a level).
BASELINES = ("wiener",)
SD15 = "sd15_img2img"
#: Strengths shown when the study has no SD1.5 restorations (the Generate page's default grid).
DEFAULT_SD15_STRENGTHS = (0.3, 0.5, 0.7)
#: Roles that may add a tried photo to the catalog (as the Generate page's "Add photos" tab).
ADD_ROLES = ("admin",)


@dataclass
class Calibration:
    """blur_effect against blur level on one blur kind of a study's degraded images."""

    kind: str
    levels: np.ndarray
    values: np.ndarray  # blur_effect of each degraded image
    side: int  # the longer side the study's images have (photos are scaled to it)
    recipe: dict[str, Any]  # the study's blur recipe on this kind, without the level
    fit: IsotonicRegression
    spread: float  # px

    def estimate(self, value: float) -> tuple[float, float, float]:
        """The blur level of a photo with this blur_effect, and its 95 % interval (px)."""
        level = float(self.fit.predict([value])[0])
        lo, hi = float(self.levels.min()), float(self.levels.max())
        return level, max(lo, level - 1.96 * self.spread), min(hi, level + 1.96 * self.spread)


def measure(image: Image.Image, side: int) -> float:
    """blur_effect of the image scaled so its longer side is `side` (the study's image size)."""
    gray = image.convert("L")
    scale = side / max(gray.size)
    if scale != 1:
        gray = gray.resize((max(1, round(gray.width * scale)), max(1, round(gray.height * scale))),
                           Image.Resampling.LANCZOS)
    return float(blur_effect(np.asarray(gray, dtype=float) / 255.0))


def fit_calibration(kind: str, levels: np.ndarray, values: np.ndarray, side: int,
                    recipe: dict[str, Any]) -> Calibration:
    """The isotonic map blur_effect -> level and its spread (see the module docstring)."""
    levels, values = np.asarray(levels, dtype=float), np.asarray(values, dtype=float)
    fit = IsotonicRegression(increasing=True, out_of_bounds="clip").fit(values, levels)
    distinct = np.unique(levels)
    floor = float(np.diff(distinct).min()) / 2 if len(distinct) > 1 else 0.0
    resid = levels - fit.predict(values)
    spread = max(float(np.std(resid, ddof=1)) if len(resid) > 1 else 0.0, floor)
    return Calibration(kind, levels, values, side, recipe, fit, spread)


def calibrate(session: Session, study: Study,
              open_image: Callable[[str], Image.Image]) -> dict[str, Calibration]:
    """One calibration per blur kind of the study's degraded images with two or more levels."""
    rows = session.execute(
        select(DegradedImage.kind, DegradedImage.level, DegradedImage.params, DegradedImage.path).distinct()
        .join(Restoration, Restoration.degraded_id == DegradedImage.id)
        .join(StudyItem, StudyItem.restoration_id == Restoration.id)
        .where(StudyItem.study_id == study.id, DegradedImage.level.is_not(None))).all()
    images = {path: open_image(path) for _k, _l, _p, path in rows}
    if not images:
        return {}
    side = int(statistics.median(max(im.size) for im in images.values()))
    out = {}
    for kind in sorted({r[0] for r in rows}):
        mine = [r for r in rows if r[0] == kind]
        if len({r[1] for r in mine}) < 2:
            continue
        recipe = {k: v for k, v in dict(mine[0][2] or {}).items() if k not in ("kind", "level")}
        out[kind] = fit_calibration(kind, np.array([r[1] for r in mine]),
                                    np.array([measure(images[r[3]], side) for r in mine]), side, recipe)
    return out


def at_study_size(photo: Image.Image, side: int) -> Image.Image:
    """The photo in RGB with its longer side scaled to `side` (what every restorer here gets)."""
    scale = side / max(photo.size)
    return photo.convert("RGB").resize((max(1, round(photo.width * scale)),
                                        max(1, round(photo.height * scale))), Image.Resampling.LANCZOS)


def restore_photo(photo: Image.Image, calibration: Calibration,
                  levels: list[float]) -> list[tuple[str, Image.Image]]:
    """The photo (scaled to the study's size) restored by the classical baselines, assuming the
    study's blur recipe at each of `levels` (the photo's real blur shape is unknown)."""
    small = at_study_size(photo, calibration.side)
    out = [("Your photo (at the study's size)", small)]
    for level in levels:
        kernel = make_kernel(BlurSpec(calibration.kind, float(level), **calibration.recipe))
        for method in BASELINES:
            result = run_restorer(method, small, kernel=kernel, params=resolve_params(method))
            out.append((f"Classical baseline: {RESTORER_WORDS.get(method, method)}, assuming {level:.1f} px",
                        result.image))
    return out


def sd15_recipe(session: Session, study: Study) -> tuple[list[float], dict[str, Any]]:
    """The strengths and the other parameters (seed 0) SD1.5 img2img ran with in this study, so a
    photo is restored as the rated images were; DEFAULT_SD15_STRENGTHS and the restorer's defaults
    when the study has no SD1.5 restorations."""
    used = session.scalars(
        select(Restoration.params).join(StudyItem, StudyItem.restoration_id == Restoration.id)
        .where(StudyItem.study_id == study.id, Restoration.method == SD15).order_by(Restoration.id)).all()
    if not used:
        return list(DEFAULT_SD15_STRENGTHS), resolve_params(SD15, {"seed": 0})
    base = {k: v for k, v in used[0].items() if k != "strength"}
    return sorted({float(p["strength"]) for p in used}), resolve_params(SD15, {**base, "seed": 0})


def sd15_label(strength: float, smoke_test: bool) -> str:
    """How an SD1.5 panel is captioned (the tiny model's output is never called a restoration)."""
    return f"SD1.5 img2img, strength {strength:g}" + (
        " (tiny smoke-test model, not a restoration)" if smoke_test else "")


def restore_photo_sd15(photo: Image.Image, side: int, strengths: list[float], base: dict[str, Any],
                       settings: Settings) -> list[tuple[float, str, Image.Image]]:
    """The photo (scaled to the study's size) restored by SD1.5 img2img with the configured weights
    at each strength, sharing work as one grid: (strength, caption, image) each. Slow on CPU, so
    the page runs it only when asked; WeightsError (a ReviewError) says how to configure weights."""
    small = at_study_size(photo, side)
    params = [resolve_params(SD15, {**base, "strength": s}) for s in strengths]
    results = run_grid(small, params, settings=settings)
    return [(s, sd15_label(s, bool(r.provenance.get("smoke_test"))), r.image)
            for s, r in zip(strengths, results, strict=True)]


def add_to_catalog(session: Session, store: ImageStore, photo: Image.Image, *, role: str, title: str,
                   licence: str, content: str) -> tuple[SourceImage, bool]:
    """Store a tried photo as a blurred source with no reference (catalog.add_photo: consent note
    and content type required, the same pixels return the existing row and False), only when an
    admin asks; it joins no study until an admin puts it in a generation plan."""
    if role not in ADD_ROLES:
        raise PhotoError("Only admins add photos to the catalog: ask an admin to add this one "
                         "(Generate page, 'Add photos').")
    return add_photo(session, store, photo, title=title, licence=licence, content=content,
                     already_blurred=True)


def open_work(session: Session, reviewer_id: int) -> list[str]:
    """Names of the open studies that list this reviewer (or list nobody) and still hold work for
    them: items they could still receive, or a live lease."""
    now = utcnow()
    return [study.name for study in list_studies(session)
            if listed(study, reviewer_id) and closed_at(session, study.id) is None
            and (remaining_for(session, study, reviewer_id, now) > 0
                 or current_lease(session, study, reviewer_id, now) is not None)]


def access_refusal(session: Session, user_id: int, role: str) -> str | None:
    """Why this user may not use Try your photo now (one line), or None when they may: admins and
    QA always; a reviewer once `open_work` is empty, since labelled restorations could unblind
    their ratings."""
    if role in ("admin", "qa"):
        return None
    if role != "reviewer":
        return f"Try your photo is not available to the {role} role."
    busy = open_work(session, user_id)
    if busy:
        return (f"Try your photo opens once you have no rating work left (still open for you: "
                f"{', '.join(busy)}): it shows which restorer makes which look, which could sway "
                "your ratings.")
    return None


def findings_at(answer: Answer, kind: str, level: float) -> list[str]:
    """What the study found at this blur level, per restorer: the GP's faithful share there and
    the observed share at the nearest rated level."""
    words = KIND_WORDS.get(kind, kind)
    out = []
    for c in (c for c in answer.curves if c.blur_kind == kind):
        for si, strength in enumerate(c.strengths):
            name = RESTORER_WORDS.get(c.restorer, c.restorer) + (
                f" at strength {strength:g}" if strength is not None else "")
            j = int(np.argmin(np.abs(np.array(c.grid) - level)))
            model = min(max(c.gp_mean[si][j], 0.0), 1.0)
            near = min((s for s in c.stats if s.strength == strength or len(c.strengths) == 1),
                       key=lambda s: abs(s.level - level))
            where = ("" if c.levels[0] <= level <= c.levels[-1] else
                     f" (outside the studied {c.levels[0]:g}-{c.levels[-1]:g} px: the nearest studied level)")
            out.append(f"At about {c.grid[j]:.1f} px of {words}{where}, people rated {name} faithful "
                       f"{model * 100:.0f} % of the time (model); at {near.level:g} px, "
                       f"{near.faithful} of {near.ratings} ratings were faithful.")
    return out
