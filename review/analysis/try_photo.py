"""Try your photo: how blurry is it in the study's own units, what do the restorers make of it,
and what did the study find at that blur level?

No-reference blur measure: scikit-image's blur_effect (Crete et al. 2007; 0 sharp .. 1 blurred)
of the photo scaled to the study's image size. It is calibrated on the study's own degraded
images: an isotonic regression (scikit-learn) of blur level on blur_effect per blur kind, so the
estimate is in the study's pixels; its spread is the residual sd of the calibration images' levels
around that fit (never below half the studied level step), and the interval is the estimate
+- 1.96 spreads, clipped to the studied range. Nothing here stores the photo.
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

from db.models import DegradedImage, Restoration, Study, StudyItem
from review.analysis.answer import KIND_WORDS, RESTORER_WORDS, Answer
from review.media.degrade import BlurSpec, make_kernel
from review.media.restore.runner import resolve_params, run_restorer

#: Classical baselines shown for a photo (they need a kernel: the study's recipe at a level).
BASELINES = ("wiener",)


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


def restore_photo(photo: Image.Image, calibration: Calibration,
                  levels: list[float]) -> list[tuple[str, Image.Image]]:
    """The photo (scaled to the study's size) restored by the classical baselines, assuming the
    study's blur recipe at each of `levels` (the photo's real blur shape is unknown)."""
    scale = calibration.side / max(photo.size)
    small = photo.convert("RGB").resize((max(1, round(photo.width * scale)),
                                         max(1, round(photo.height * scale))), Image.Resampling.LANCZOS)
    out = [("Your photo (at the study's size)", small)]
    for level in levels:
        kernel = make_kernel(BlurSpec(calibration.kind, float(level), **calibration.recipe))
        for method in BASELINES:
            result = run_restorer(method, small, kernel=kernel, params=resolve_params(method))
            out.append((f"{RESTORER_WORDS.get(method, method)}, assuming {level:.1f} px", result.image))
    return out


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
