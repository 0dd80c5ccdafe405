"""How blurry a photo is, in a study's own units: a no-reference measure calibrated on images of
known blur (Try your photo's estimate, review.answer.try_photo; bench/try_photo.py).

The measure (`features`): how steep the photo's steepest edges are against their own contrast,
per edge direction, at the study's image size (`edge_sharpness`; a blur of w px makes a step edge
rise over about w px, while smooth content has no steep edge at all), and, weighted a tenth, how
far the autocorrelation of its gradients spreads (`gradient_spread`). It is calibrated per blur
kind on images of known blur (`fit_calibration`): the study's own sharp photos and 15 bundled
scikit-image samples of other content, blurred by the study's recipe at levels from 0 to 1.5 x
the largest studied level, three blur shapes each (other camera-shake trajectories, other motion
angles). A photo's estimate is the median blur of the 60 calibration images that measure most
like it, its 95 % interval their central 95 % (`Estimate`): "sharp" when the median is below the
smallest studied level, "too blurred to measure" when it is above the largest and the interval
reaches the most blur calibrated. `unlike_photos` makes validation photos unlike the
calibration's (drawn faces, text, flat shapes, textures, other samples; other trajectories, noise,
JPEG, sizes): bench/try_photo.py reports coverage and error on them, and tests/test_try_photo.py
asserts them. Nothing here stores a photo.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import DegradedImage, Restoration, SourceImage, Study, StudyItem
from review.media.degrade import MAX_LEVEL, BlurSpec, apply_kernel, degrade, make_kernel

#: The calibration works at this longer side at most (a larger study's levels are scaled to it):
#: the bank below is degraded and measured at every page load of a new study, in seconds.
WORK_SIDE = 128
#: Content the calibration adds to the study's own sharp photos, so the interval spans what photos
#: can show (scikit-image's bundled samples, no download): faces, objects, a scene, a microscope
#: slide, a retina, textures (brick, grass), text (page, text), stars, a silhouette, coins.
BANK_PHOTOS = ("astronaut", "coffee", "chelsea", "camera", "rocket", "horse", "moon", "coins",
               "immunohistochemistry", "retina", "brick", "grass", "page", "text", "hubble_deep_field")
BANK_SHAPES = 3  # blur shapes per level and photo: camera-shake trajectories, motion-line angles
BANK_STEPS = 12  # blur levels from half the smallest studied level to TOP_FACTOR x the largest
TOP_FACTOR = 1.5
NEIGHBOURS = 60  # calibration images whose measures are nearest the photo's
COVERAGE = 0.95
FITTED_KEPT = 8  # calibrations kept in memory (fit_calibration)
EDGE_RADII = (2, 4, 8, 16)  # px at WORK_SIDE: windows of the local range (edge_sharpness)
EDGE_CONTRAST = 0.08  # an edge: at least this much range (of 0..1) in its window
EDGE_FEATURES = 2 * len(EDGE_RADII)
RINGS = (1, 2, 3, 4, 6, 8, 11, 14, 18, 22, 27, 33)  # px at WORK_SIDE (gradient_spread)
RING_WEIGHT = 0.1


@dataclass(frozen=True)
class Estimate:
    """A photo's blur level in the study's pixels: `level` is the median of the calibration images
    that measure most like it, `low`-`high` their central 95 %. `state`: "measured"; "sharp" (the
    median below the smallest studied level); "too_blurred" (the median above the largest studied
    level and the interval up to the most blur calibrated, `top`: the measure cannot tell how much
    more, only `low` is meaningful); "unknown" (the interval runs from below the smallest studied
    level to `top`: the measure cannot tell this photo's blur at all)."""

    level: float
    low: float
    high: float
    state: str
    smallest: float  # the smallest and largest studied levels (px)
    largest: float
    top: float  # the most blur the calibration holds (px)

    def headline(self) -> str:
        if self.state == "sharp":
            return "sharp"
        if self.state in ("too_blurred", "unknown"):
            return "not measurable"
        return f"about {self.level:.1f} px"

    def sentence(self) -> str:
        """The estimate in words, with what the interval means."""
        if self.state == "sharp":
            return (f"Sharp for this study: below its smallest studied blur ({self.smallest:g} px); "
                    f"95 % interval {self.low:.1f}-{self.high:.1f} px.")
        if self.state == "too_blurred":
            return (f"Too blurred to measure: more than about {self.low:.0f} px. Calibration images "
                    f"blurred up to {self.top:.0f} px (the most calibrated) measure like this photo, so "
                    "the measure cannot tell how much blur there is.")
        if self.state == "unknown":
            return (f"Not measurable: calibration images from {self.low:.0f} px (below the smallest "
                    f"studied blur, {self.smallest:g} px) to {self.top:.0f} px (the most calibrated) "
                    "measure like this photo, so the measure cannot tell its blur.")
        return f"95 % interval {self.low:.1f}-{self.high:.1f} px."


def features(image: Image.Image, work_side: int) -> np.ndarray:
    """What a photo is measured by, from its grey levels at `work_side` px on the longer side (the
    study's pixels, or WORK_SIDE): `edge_sharpness` (8 values), then `gradient_spread` (24 values,
    weighted RING_WEIGHT each in the distance: they tell blur apart well on photos like the bank's
    but mislead on drawn or synthetic content, bench/try_photo.py)."""
    gray = image.convert("L")
    scale = work_side / max(gray.size)
    if scale != 1:
        gray = gray.resize((max(8, round(gray.width * scale)), max(8, round(gray.height * scale))),
                           Image.Resampling.LANCZOS)
    g = np.asarray(gray, dtype=float) / 255.0
    return np.concatenate([edge_sharpness(g), gradient_spread(g)])


def feature_weights(count: int) -> np.ndarray:
    """Each feature's weight in the distance between two photos' measures (see `features`)."""
    weights = np.ones(count)
    weights[EDGE_FEATURES:] = RING_WEIGHT
    return weights


def gradient_spread(g: np.ndarray) -> np.ndarray:
    """The autocorrelation of the image's gradients (1 at no shift), which a blur spreads over its
    own extent (it is the image's own, convolved with the kernel's autocorrelation): its largest
    and its mean value on rings of RINGS px around no shift."""
    gx, gy = np.diff(g, axis=1)[:-1, :], np.diff(g, axis=0)[:, :-1]
    h, w = gx.shape
    power = sum(np.abs(np.fft.rfft2(d - d.mean(), s=(2 * h, 2 * w))) ** 2 for d in (gx, gy))
    auto = np.fft.fftshift(np.fft.irfft2(power, s=(2 * h, 2 * w)))
    if auto[h, w] <= 0:  # a flat picture: no gradient at all
        return np.zeros(2 * len(RINGS))
    auto = auto / auto[h, w]
    yy, xx = np.mgrid[-h:h, -w:w]
    ring = np.rint(np.hypot(yy, xx)).astype(int)
    values = [auto[ring == r] for r in RINGS]
    return np.array([float(v.max()) if v.size else 0.0 for v in values]
                    + [float(v.mean()) if v.size else 0.0 for v in values])


def edge_sharpness(g: np.ndarray) -> np.ndarray:
    """How steep the steepest edges are against their own contrast, by edge direction: a step edge
    of contrast C blurred over w px rises at about C / w, so the steepest slope over the local range
    (max - min within EDGE_RADII px) reads 1 / w whatever C is; smooth content has no steep edge.
    Per direction (4 of them) the 99th percentile where the local range is at least EDGE_CONTRAST,
    then the smallest over directions (the blur's widest direction) and the largest."""
    gx = ndimage.sobel(g, axis=1) / 8
    gy = ndimage.sobel(g, axis=0) / 8
    steepest = np.hypot(gx, gy)
    slopes = [np.abs(np.cos(angle) * gx + np.sin(angle) * gy) for angle in np.arange(4) * np.pi / 4]
    facing = [slope >= 0.5 * steepest for slope in slopes]  # edges facing each direction
    out = []
    for radius in EDGE_RADII:
        size = 2 * radius + 1
        span = ndimage.maximum_filter(g, size) - ndimage.minimum_filter(g, size)
        keep = span >= EDGE_CONTRAST
        known = []
        for slope, face in zip(slopes, facing, strict=True):
            mask = keep & face
            if np.count_nonzero(mask) >= 20:
                known.append(float(np.percentile(slope[mask] / span[mask], 99)))
        out += [min(known), max(known)] if known else [0.0, 0.0]
    return np.array(out)


@dataclass
class Calibration:
    """The measure of calibration images against their blur level, on one blur kind of a study:
    the study's own sharp photos and BANK_PHOTOS, at the study's image size (or WORK_SIDE),
    blurred by the study's recipe at levels from 0 to TOP_FACTOR x the largest studied level, with
    BANK_SHAPES shapes each (other camera-shake trajectories, other motion angles)."""

    kind: str
    levels: np.ndarray  # the studied levels (px of the study's images)
    side: int  # the longer side the study's images have (photos are scaled to it)
    recipe: dict[str, Any]  # the study's blur recipe on this kind, without the level
    bank_levels: np.ndarray  # px of the study's images, one per calibration image
    bank_features: np.ndarray  # one row of `features` per calibration image
    work_side: int

    @property
    def top(self) -> float:
        return float(self.bank_levels.max())

    def estimate(self, photo: Image.Image) -> Estimate:
        """The photo's blur level: the median and central 95 % of the levels of the NEIGHBOURS
        calibration images that measure most like it (each measure in units of its spread)."""
        return self.estimate_features(features(photo, self.work_side))

    def estimate_features(self, feats: np.ndarray) -> Estimate:
        spread = self.bank_features.std(axis=0)
        spread[spread == 0] = 1.0
        weights = feature_weights(self.bank_features.shape[1])
        distance = np.sqrt(((((self.bank_features - feats) / spread) ** 2) * weights).sum(axis=1))
        near = self.bank_levels[np.argsort(distance, kind="stable")[:NEIGHBOURS]]
        tail = (1 - COVERAGE) / 2
        level, low, high = (float(v) for v in np.quantile(near, [0.5, tail, 1 - tail]))
        smallest, largest = float(self.levels.min()), float(self.levels.max())
        state = ("sharp" if level < smallest else
                 "unknown" if low < smallest and high >= self.top else
                 "too_blurred" if level > largest and high >= self.top else "measured")
        return Estimate(level, low, high, state, smallest, largest, self.top)


_FITTED: dict[str, Calibration] = {}


def bank_specs(kind: str, recipe: dict[str, Any], levels: np.ndarray,
               scale: float) -> list[tuple[float, BlurSpec]]:
    """(level in the study's px, the spec at the working size) of every calibration blur."""
    smallest, largest = float(np.min(levels)), float(np.max(levels))
    grid = [0.0] + [float(v) for v in np.linspace(smallest / 2, TOP_FACTOR * largest, BANK_STEPS)]
    out = []
    for level in grid:
        for shape in range(BANK_SHAPES):
            fields = dict(recipe)
            if kind == "camera_shake" and shape:
                fields["seed"] = 1000 + shape
            if kind == "motion_line":
                fields["angle"] = float(fields.get("angle", 0.0)) + 180.0 * shape / BANK_SHAPES
            out.append((level, BlurSpec(kind, min(level * scale, MAX_LEVEL), **fields)))
    return out


def bank_photos() -> list[Image.Image]:
    """BANK_PHOTOS in RGB (scikit-image's bundled samples)."""
    from skimage import data

    return [Image.fromarray(np.asarray(getattr(data, name)())).convert("RGB") for name in BANK_PHOTOS]


def fit_calibration(kind: str, levels: np.ndarray, side: int, recipe: dict[str, Any],
                    photos: list[Image.Image]) -> Calibration:
    """Blur each of `photos` (sharp) by the recipe at every calibration level and shape, at the
    working size, and measure it (see Calibration). The last FITTED_KEPT calibrations are kept in
    memory by their inputs (the photos by content), so a study calibrates once per process."""
    levels = np.asarray(levels, dtype=float)
    digest = hashlib.sha256(json.dumps([kind, levels.tolist(), side, recipe, WORK_SIDE], sort_keys=True,
                                       default=str).encode())
    for photo in photos:
        digest.update(f"{photo.mode}{photo.size}".encode())
        digest.update(photo.tobytes())
    key = digest.hexdigest()
    if key in _FITTED:
        return _FITTED[key]
    work_side = min(side, WORK_SIDE)
    scale = work_side / side
    specs = bank_specs(kind, recipe, levels, scale)
    kernels: dict[str, np.ndarray] = {}
    rows, at_levels = [], []
    for photo in photos:
        small = at_study_size(photo, work_side)
        for level, spec in specs:
            if spec.key() not in kernels:  # a camera-shake trajectory takes ~20 ms to draw
                kernels[spec.key()] = make_kernel(spec)
            rows.append(features(degrade_with(small, spec, kernels[spec.key()]), work_side))
            at_levels.append(level)
    fitted = Calibration(kind, levels, side, recipe, np.array(at_levels), np.array(rows), work_side)
    _FITTED[key] = fitted
    while len(_FITTED) > FITTED_KEPT:
        _FITTED.pop(next(iter(_FITTED)))
    return fitted


def degrade_with(image: Image.Image, spec: BlurSpec, kernel: np.ndarray) -> Image.Image:
    """review.media.degrade.degrade with the spec's kernel made once (a camera-shake trajectory
    takes ~20 ms to draw, and the bank reuses each one on every photo)."""
    if spec.noise_sigma or spec.jpeg_quality is not None or kernel.shape == (1, 1):
        return degrade(image, spec).image
    arr = apply_kernel(np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0, kernel)
    return Image.fromarray(np.round(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8), "RGB")


def _calibration_rows(session: Session, study: Study) -> list[Any]:
    """(kind, level, params, degraded path, source path, source is a reference) of every blurred
    image the study rates at a known level."""
    return list(session.execute(
        select(DegradedImage.kind, DegradedImage.level, DegradedImage.params, DegradedImage.path,
               SourceImage.path, SourceImage.is_reference).distinct()
        .join(SourceImage, SourceImage.id == DegradedImage.source_id)
        .join(Restoration, Restoration.degraded_id == DegradedImage.id)
        .join(StudyItem, StudyItem.restoration_id == Restoration.id)
        .where(StudyItem.study_id == study.id, DegradedImage.level.is_not(None))).all())


def calibration_key(session: Session, study: Study) -> str:
    """What `calibrate` depends on, as a short hash: it changes when the study gains a blur level,
    recipe or photo (the page caches calibrations by it)."""
    rows = sorted(json.dumps([r[0], r[1], r[2], r[3], r[4], bool(r[5])], sort_keys=True, default=str)
                  for r in _calibration_rows(session, study))
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]


def calibrate(session: Session, study: Study,
              open_image: Callable[[str], Image.Image]) -> dict[str, Calibration]:
    """One calibration per blur kind of the study's degraded images with two or more levels, on
    the study's own sharp photos (up to 4) and BANK_PHOTOS, at the study's image size."""
    rows = _calibration_rows(session, study)
    if not rows:
        return {}
    side = int(statistics.median(max(open_image(r[3]).size) for r in rows))
    own = [open_image(path) for path in sorted({r[4] for r in rows if r[5]})[:4]]
    bank = own + bank_photos()
    out = {}
    for kind in sorted({r[0] for r in rows}):
        mine = [r for r in rows if r[0] == kind]
        if len({r[1] for r in mine}) < 2:
            continue
        recipe = {k: v for k, v in dict(mine[0][2] or {}).items() if k not in ("kind", "level")}
        out[kind] = fit_calibration(kind, np.array(sorted({float(r[1]) for r in mine})), side, recipe, bank)
    return out


def at_study_size(photo: Image.Image, side: int) -> Image.Image:
    """The photo in RGB with its longer side scaled to `side` (what every restorer here gets)."""
    scale = side / max(photo.size)
    return photo.convert("RGB").resize((max(1, round(photo.width * scale)),
                                        max(1, round(photo.height * scale))), Image.Resampling.LANCZOS)


@dataclass(frozen=True)
class Unlike:
    """A validation photo unlike the calibration's: what it shows, and its blur in the study's px."""

    what: str
    photo: Image.Image
    level: float


def _unlike_content(rng: np.random.Generator, index: int) -> tuple[str, Image.Image]:
    """One sharp picture that is not in BANK_PHOTOS: scikit-image samples the bank leaves out,
    drawn faces, rendered text, flat shapes, filtered-noise textures, smooth gradients."""
    from PIL import ImageDraw, ImageFilter
    from skimage import data

    size = int(rng.integers(160, 420))
    kind = index % 8
    if kind == 0:
        name = ("cell", "shepp_logan_phantom", "logo", "colorwheel", "microaneurysms", "checkerboard")[
            index // 8 % 6]
        arr = np.asarray(getattr(data, name)(), dtype=float)
        arr = arr / arr.max() * 255 if arr.max() > 0 else arr
        return name, Image.fromarray(arr.astype(np.uint8)).convert("RGB")
    if kind == 1:  # a drawn face: skin, hair, eyes, brows, nose and mouth
        img = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(40, 220, 3)))
        draw = ImageDraw.Draw(img)
        c, r = size // 2, size * int(rng.integers(28, 40)) // 100
        draw.ellipse((c - r, c - int(1.3 * r), c + r, c + int(1.3 * r)), fill=(224, 172, 140))
        draw.chord((c - r, c - int(1.35 * r), c + r, c + int(0.2 * r)), 180, 360, fill=(60, 40, 20))
        for side_x in (-1, 1):
            ex = c + side_x * r // 2
            draw.ellipse((ex - r // 6, c - r // 8, ex + r // 6, c + r // 8), fill=(250, 250, 250))
            draw.ellipse((ex - r // 14, c - r // 14, ex + r // 14, c + r // 14), fill=(40, 30, 20))
            draw.line((ex - r // 5, c - r // 4, ex + r // 5, c - r // 3), fill=(50, 30, 10), width=3)
        draw.line((c, c, c - r // 10, c + r // 3), fill=(150, 100, 80), width=2)
        draw.arc((c - r // 3, c + r // 4, c + r // 3, c + 2 * r // 3), 20, 160, fill=(150, 40, 40), width=3)
        return "drawn face", img
    if kind == 2:
        img = Image.new("RGB", (size, size * 3 // 4), tuple(int(v) for v in rng.integers(180, 256, 3)))
        draw = ImageDraw.Draw(img)
        words = "the quick brown fox jumps over a lazy dog 0123456789 FIDELITY review lab".split()
        for row in range(0, img.height - 12, 14 + int(rng.integers(0, 8))):
            line = " ".join(rng.choice(words, 6))
            draw.text((4, row), line, fill=tuple(int(v) for v in rng.integers(0, 80, 3)))
        return "text", img
    if kind == 3:
        img = Image.new("RGB", (size, size * 2 // 3), tuple(int(v) for v in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(3, 8))):
            x0, y0 = (int(v) for v in rng.integers(0, img.width - 20, 2) % (img.width - 20, img.height - 20))
            box = (x0, y0, x0 + int(rng.integers(15, size // 2)), y0 + int(rng.integers(15, size // 2)))
            fill = tuple(int(v) for v in rng.integers(0, 256, 3))
            (draw.ellipse if rng.uniform() < 0.5 else draw.rectangle)(box, fill=fill)
        return "flat shapes", img
    if kind == 4:
        noise = rng.standard_normal((size, size))
        img = Image.fromarray(np.clip(128 + 60 * noise, 0, 255).astype(np.uint8)).filter(
            ImageFilter.GaussianBlur(float(rng.uniform(0.6, 2.5))))
        arr = np.asarray(img, dtype=float)
        arr = (arr - arr.mean()) / (arr.std() + 1e-9) * 50 + 128
        return "texture", Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).convert("RGB")
    if kind == 5:
        y, x = np.mgrid[0:size * 3 // 4, 0:size] / size
        arr = np.stack([128 + 100 * np.sin(6 * x + 3 * y), 128 + 90 * np.cos(5 * y), 200 * x], axis=-1)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(img)
        for _ in range(4):
            pts = [tuple(int(v) for v in p) for p in rng.integers(0, min(img.size), (2, 2))]
            draw.line(pts, fill=(0, 0, 0), width=int(rng.integers(1, 4)))
        return "gradients and lines", img
    if kind == 6:
        blobs = data.binary_blobs(length=256, blob_size_fraction=float(rng.uniform(0.04, 0.15)),
                                  rng=int(rng.integers(0, 10_000)))
        return "blobs", Image.fromarray((blobs * 200 + 30).astype(np.uint8)).convert("RGB")
    y, x = np.mgrid[0:size * 3 // 4, 0:size]
    arr = np.stack([(x * (3 + index % 5)) % 256, (y * 4) % 256, ((x + y) * 2) % 256], axis=-1)
    return "stripes and squares", Image.fromarray(arr.astype(np.uint8))


def unlike_photos(count: int, side: int, largest: float, seed: int = 0) -> list[Unlike]:
    """`count` blurred validation photos unlike the calibration's content, each blurred by camera
    shake whose trajectory the calibration never uses, at a level drawn from 0 to 1.25 x
    `largest` px of a `side`-px image (a quarter of them sharp), then given noise (0-4) and JPEG
    (quality 60-95, or none) at a random size."""
    rng = np.random.default_rng(seed)
    out = []
    for index in range(count):
        what, sharp = _unlike_content(rng, index)
        level = 0.0 if rng.uniform() < 0.25 else float(rng.uniform(0.3, 1.25) * largest)
        at_side = at_study_size(sharp, side)
        spec = BlurSpec("camera_shake", level, seed=int(rng.integers(1, 900)),
                        noise_sigma=float(rng.choice([0.0, 1.0, 4.0])),
                        jpeg_quality=None if rng.uniform() < 0.5 else int(rng.integers(60, 96)))
        blurred = degrade(at_side, spec).image
        final = int(rng.integers(side, 3 * side))  # uploaded larger than the study's size
        out.append(Unlike(what, blurred.resize((final, max(1, round(final * blurred.height / blurred.width))),
                                               Image.Resampling.BICUBIC), level))
    return out
