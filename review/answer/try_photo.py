"""Try your photo: how blurry is it in the study's own units, what do the restorers make of it,
and what did the study find at that blur level?

The blur estimate is review.answer.blur_estimate's (a no-reference measure calibrated on the
study's photos and 15 others at known blur levels); this module restores the photo at the
estimate and shows what the study found there. Nothing here stores the photo unless an admin asks
(`add_to_catalog`, which writes through review.media.catalog.add_tried_photo).

SD1.5 img2img restorations run only when asked (`restore_photo_sd15`, slow on CPU), at the
study's own SD1.5 strengths and parameters, or at DEFAULT_SD15_STRENGTHS when it has none.

Who may use the page (`access_refusal`): admins and QA always; a reviewer only once no open study
that lists them still has work for them, because the page labels which restorer made which look,
which could sway their blind ratings.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Restoration, SourceImage, Study, StudyItem, utcnow
from review.answer.blur_estimate import Calibration, Estimate, at_study_size
from review.answer.boundary import curve_groups
from review.answer.sentences import KIND_WORDS, Answer
from review.config import Settings
from review.labeling.assignment import current_lease, remaining_for
from review.labeling.study import closed_at, list_studies, listed
from review.media.catalog import PhotoError, add_tried_photo
from review.media.degrade import BlurSpec, make_kernel
from review.media.restore import names, title
from review.media.restore.runner import resolve_params, run_grid, run_restorer
from review.media.store import ImageStore
from review.policy import Action, may

#: Strengths shown when the study has no SD1.5 restorations (the Generate page's default grid).
DEFAULT_SD15_STRENGTHS = (0.3, 0.5, 0.7)


def restore_levels(estimate: Estimate) -> list[float]:
    """The blur levels the classical baselines assume for a photo: the estimate and its interval's
    ends, rounded to 0.1 px, leaving out 0 (no blur to undo)."""
    return sorted({round(v, 1) for v in (estimate.low, estimate.level, estimate.high) if round(v, 1) > 0})


def restore_photo(photo: Image.Image, calibration: Calibration,
                  levels: list[float]) -> list[tuple[str, Image.Image]]:
    """The photo (scaled to the study's size) restored by the classical baselines, assuming the
    study's blur recipe at each of `levels` (the photo's real blur shape is unknown)."""
    small = at_study_size(photo, calibration.side)
    out = [("Your photo (at the study's size)", small)]
    for level in levels:
        kernel = make_kernel(BlurSpec(calibration.kind, float(level), **calibration.recipe))
        for method in baselines():
            result = run_restorer(method, small, kernel=kernel, params=resolve_params(method))
            out.append((f"Classical baseline: {title(method)}, assuming {level:.1f} px",
                        result.image))
    return out


def baselines() -> tuple[str, ...]:
    """The classical baselines shown for a photo: the featured restorers that need a kernel (the
    study's recipe at a level) and have no strength."""
    return names(featured=True, needs_kernel=True, has_strength=False, is_restoration=True)


def strength_restorer() -> str:
    """The featured restorer with a strength (SD1.5 img2img) that restores a photo as it is."""
    return names(featured=True, has_strength=True, needs_kernel=False)[0]


def sd15_recipe(session: Session, study: Study) -> tuple[list[float], dict[str, Any]]:
    """The strengths and the other parameters (seed 0) SD1.5 img2img ran with in this study, so a
    photo is restored as the rated images were; DEFAULT_SD15_STRENGTHS and the restorer's defaults
    when the study has no SD1.5 restorations."""
    method = strength_restorer()
    used = session.scalars(
        select(Restoration.params).join(StudyItem, StudyItem.restoration_id == Restoration.id)
        .where(StudyItem.study_id == study.id, Restoration.method == method).order_by(Restoration.id)).all()
    if not used:
        return list(DEFAULT_SD15_STRENGTHS), resolve_params(method, {"seed": 0})
    base = {k: v for k, v in used[0].items() if k != "strength"}
    return sorted({float(p["strength"]) for p in used}), resolve_params(method, {**base, "seed": 0})


def sd15_label(strength: float, smoke_test: bool) -> str:
    """How an SD1.5 panel is captioned (the tiny model's output is never called a restoration)."""
    return f"{title(strength_restorer())}, strength {strength:g}" + (
        " (tiny smoke-test model, not a restoration)" if smoke_test else "")


def restore_photo_sd15(photo: Image.Image, side: int, strengths: list[float], base: dict[str, Any],
                       settings: Settings) -> list[tuple[float, str, Image.Image]]:
    """The photo (scaled to the study's size) restored by SD1.5 img2img with the configured weights
    at each strength, sharing work as one grid: (strength, caption, image) each. Slow on CPU, so
    the page runs it only when asked; WeightsError (a ReviewError) says how to configure weights."""
    small = at_study_size(photo, side)
    method = strength_restorer()
    params = [resolve_params(method, {**base, "strength": s}) for s in strengths]
    results = run_grid(method, small, params, settings=settings)
    return [(s, sd15_label(s, bool(r.provenance.get("smoke_test"))), r.image)
            for s, r in zip(strengths, results, strict=True)]


def add_to_catalog(session: Session, store: ImageStore, photo: Image.Image, *, role: str, title: str,
                   licence: str, content: str) -> tuple[SourceImage, bool]:
    """The page's "Add to the catalog": the access rule (review.policy, Action.TRY_PHOTO_ADD), then
    the catalog's write (review.media.catalog.add_tried_photo: (the row, whether it is new))."""
    if not may(role, Action.TRY_PHOTO_ADD):
        raise PhotoError("Only admins add photos to the catalog: ask an admin to add this one "
                         "(Generate page, 'Add photos').")
    return add_tried_photo(session, store, photo, title=title, licence=licence, content=content)


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
    if may(role, Action.TRY_PHOTO_ANYTIME):
        return None
    if not may(role, Action.TRY_PHOTO):
        return f"Try your photo is not available to the {role} role."
    busy = open_work(session, user_id)
    if busy:
        return (f"Try your photo opens once you have no rating work left (still open for you: "
                f"{', '.join(busy)}): it shows which restorer makes which look, which could sway "
                "your ratings.")
    return None


def _who(simulated: int, total: int) -> str:
    """Whose ratings these are, in words: people's, a simulated panel's, or both (with counts)."""
    if simulated == 0:
        return f"{total} rating{'s' * (total != 1)} by people"
    if simulated == total:
        return f"{total} simulated rating{'s' * (total != 1)}, from a simulated panel, not people"
    return f"{total} ratings, {simulated} of them simulated and {total - simulated} by people"


def findings_at(answer: Answer, kind: str, level: float, frame: pd.DataFrame) -> list[str]:
    """What the study found at this blur level, per restorer: the fitted faithful share of ratings
    there and the observed counts at the nearest rated level, each saying whose ratings they are
    (people's or a simulated panel's, from `frame`'s `simulated` column: the ratings
    review.analysis.export.ratings_frame gives and `answer` was fitted to). Only people's ratings
    are called "people rated"."""
    words = KIND_WORDS.get(kind, kind)
    groups = dict(curve_groups(frame, include_simulated=answer.include_simulated))
    out = []
    for c in (c for c in answer.curves if c.blur_kind == kind):
        rows = groups.get((c.restorer, c.setting, c.blur_kind), frame.iloc[:0])
        sim = (rows["simulated"].astype(bool) if "simulated" in rows
               else pd.Series(False, index=rows.index))
        total_sim = int(sim.sum())
        rated = ("people rated" if total_sim == 0 else "simulated raters rated" if total_sim == len(rows)
                 else "people and simulated raters rated")
        for si, strength in enumerate(c.strengths):
            name = title(c.restorer) + (
                f" at strength {strength:g}" if strength is not None else "")
            j = int(np.argmin(np.abs(np.array(c.grid) - level)))
            model = min(max(c.gp_mean[si][j], 0.0), 1.0)
            near = min((s for s in c.stats if s.strength == strength or len(c.strengths) == 1),
                       key=lambda s: abs(s.level - level))
            where = ("" if c.levels[0] <= level <= c.levels[-1] else
                     f" (outside the studied {c.levels[0]:g}-{c.levels[-1]:g} px: the nearest studied level)")
            at = rows["blur_level"].astype(float) == near.level
            if strength is not None and len(c.strengths) > 1:
                at &= rows["strength"].astype(float) == strength
            here, here_sim = rows[at], sim[at]
            faithful = here["score"] >= answer.options.faithful_min
            n_sim, k_sim = int(here_sim.sum()), int((faithful & here_sim).sum())
            n_people, k_people = len(here) - n_sim, int((faithful & ~here_sim).sum())
            left_out = "" if answer.include_simulated else " (simulated ratings left out)"
            split = ("" if n_sim == 0 or n_people == 0 else
                     f" ({k_sim} of {n_sim} simulated, {k_people} of {n_people} by people)")
            out.append(f"At about {c.grid[j]:.1f} px of {words}{where}, {rated} {name} faithful in "
                       f"{model * 100:.0f} % of ratings (the fitted curve over {_who(total_sim, len(rows))})"
                       f"{left_out}; at {near.level:g} px, {near.faithful} of {near.ratings} "
                       f"{'simulated ' if n_people == 0 and n_sim else ''}ratings were faithful{split}.")
    return out
