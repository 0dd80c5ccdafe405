"""Benchmark: Try your photo's blur estimate on photos unlike its calibration, before and after.

The study is the simulated demo's (review.demo): camera shake of trajectory seed 7 at 3-24 px on
128-px images of the astronaut and the coffee cup. The validation photos
(review.answer.blur_estimate.unlike_photos) show other things (faces, text, flat shapes, textures,
blobs, scikit-image samples outside the calibration bank), are blurred by other camera-shake
trajectories at 0-30 px of the study's pixels, with noise and JPEG, and arrive at other sizes.

Before: the estimator this replaced (scikit-image's blur_effect, an isotonic map fitted on the
study's 16 blurred images, interval +-1.96 residual sd clipped to 3-24 px). After: the calibrated
neighbours of review.answer.blur_estimate (bank of the study's photos and 15 bundled samples).
Coverage counts an interval that holds the truth ("sharp" and "too blurred to measure" included:
their intervals are shown too; "too blurred" holds a truth above its lower end); "not measurable
at all" (an interval over the whole calibrated range) holds any truth and is counted apart. Errors
are of the point estimate where one is given.

Run: .venv/bin/python bench/try_photo.py [--photos 60] [--seed 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from skimage.measure import blur_effect
from sklearn.isotonic import IsotonicRegression

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from machine import describe  # noqa: E402  (bench/machine.py, beside this script)

from review.answer.blur_estimate import (  # noqa: E402
    Estimate,
    at_study_size,
    bank_photos,
    fit_calibration,
    unlike_photos,
)
from review.demo import SIMULATED_LEVELS, SIMULATED_SIDE, SIMULATED_SOURCES, sample_image  # noqa: E402
from review.media.degrade import BlurSpec, degrade  # noqa: E402

RECIPE = {"angle": 0.0, "seed": 7, "noise_sigma": 0.0, "jpeg_quality": None}


def _old_measure(image, side: int) -> float:  # noqa: ANN001
    return float(blur_effect(np.asarray(at_study_size(image, side).convert("L"), dtype=float) / 255.0))


def old_estimator(sources: list, levels: tuple[float, ...], side: int):  # noqa: ANN001, ANN201
    """The replaced estimator, as it was (see the module docstring)."""
    lv = np.array([float(v) for _ in sources for v in levels])
    values = np.array([_old_measure(degrade(src, BlurSpec("camera_shake", v, seed=7)).image, side)
                       for src in sources for v in levels])
    fit = IsotonicRegression(increasing=True, out_of_bounds="clip").fit(values, lv)
    floor = float(np.diff(sorted(set(levels))).min()) / 2
    spread = max(float(np.std(lv - fit.predict(values), ddof=1)), floor)

    def estimate(photo) -> tuple[float, float, float]:  # noqa: ANN001
        level = float(fit.predict([_old_measure(photo, side)])[0])
        return level, max(min(levels), level - 1.96 * spread), min(max(levels), level + 1.96 * spread)
    return estimate


def holds(e: Estimate, truth: float) -> bool:
    if e.state == "unknown":  # "not measurable" over the whole calibrated range: true, and no answer
        return True
    if e.state == "too_blurred":
        return truth >= e.low
    return e.low - 1e-9 <= truth <= e.high + 1e-9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(describe())
    side, levels = SIMULATED_SIDE, SIMULATED_LEVELS
    sources = [sample_image(name, side) for name in SIMULATED_SOURCES]
    t0 = time.perf_counter()
    cal = fit_calibration("camera_shake", np.array(levels), side, RECIPE, sources + bank_photos())
    print(f"calibration: {len(cal.bank_levels)} images in {time.perf_counter() - t0:.1f} s")
    old = old_estimator(sources, levels, side)
    photos = unlike_photos(args.photos, side, max(levels), seed=args.seed)
    rows = []
    t0 = time.perf_counter()
    for p in photos:
        e = cal.estimate(p.photo)
        lo_level, o_lo, o_hi = old(p.photo)
        rows.append((p, e, (lo_level, o_lo, o_hi)))
    per = (time.perf_counter() - t0) / len(photos)
    print(f"{len(photos)} photos unlike the calibration, seed {args.seed}; "
          f"{per * 1000:.0f} ms per photo (both)")
    print(f"{'what':22s} {'truth':>6s} | {'before':>22s} | after")
    for p, e, (ol, olo, ohi) in rows:
        before = "ok  " if olo <= p.level <= ohi else "MISS"
        after = "ok" if holds(e, p.level) else "MISS"
        print(f"{p.what:22s} {p.level:6.1f} | {ol:5.1f} ({olo:4.1f}-{ohi:4.1f}) {before}"
              f" | {e.headline():16s} ({e.low:4.1f}-{e.high:4.1f}) {after}")
    old_cov = np.mean([olo <= p.level <= ohi for p, _e, (_l, olo, ohi) in rows])
    old_err = np.array([ol - p.level for p, _e, (ol, _a, _b) in rows])
    new_cov = np.mean([holds(e, p.level) for p, e, _o in rows])
    measured = [(e, p) for p, e, _o in rows if e.state == "measured"]
    new_err = np.array([e.level - p.level for e, p in measured])
    sharp = [(e, p) for p, e, _o in rows if p.level == 0]
    print(f"before: coverage {old_cov:.1%}, mean abs error {np.abs(old_err).mean():.1f} px, "
          f"bias {old_err.mean():+.1f} px; "
          f"sharp photos read {np.mean([old(p.photo)[0] for _e, p in sharp]):.1f} px on average")
    print(f"after:  coverage {new_cov:.1%}; {len(measured)} given a number: mean abs error "
          f"{np.abs(new_err).mean():.1f} px, bias {new_err.mean():+.1f} px; mean width "
          f"{np.mean([e.high - e.low for e, _p in measured]):.1f} px; "
          f"{sum(e.state == 'sharp' for _p, e, _o in rows)} read sharp "
          f"({sum(e.state == 'sharp' for e, _p in sharp)} of {len(sharp)} sharp ones); "
          f"{sum(e.state == 'too_blurred' for _p, e, _o in rows)} too blurred to measure, "
          f"{sum(e.state == 'unknown' for _p, e, _o in rows)} not measurable at all")


if __name__ == "__main__":
    main()
