"""How far can it go: the usable-blur boundary of each restorer, with a calibrated 95 % interval.

The question is the one of "Few-shot Algorithm Assurance" (Nguyen & Gupta, arXiv 2412.20275):
up to which blur level does a restorer stay usable? Here "usable" means that at least a share h
(0.8 by default) of the RATINGS call its restorations faithful (score >= 4 by default), for
restorations of photos like the study's and raters like the study's. The boundary is the level
where that share of ratings falls below h.

The estimate, step by step (every step is there because a simpler one failed on
bench/assurance.py; issue 21):
1. The unit of independence is the item (one restoration of one photo): its ratings share the
   photo and move together, so each item contributes the share of its own ratings, and a level's
   share is the mean over its items. (Treating ratings as independent binomial draws made the
   interval too narrow.)
2. The share cannot rise with more blur: a non-increasing curve is fitted over the studied levels
   (weighted isotonic regression, weights = items per level), linear between levels. No prior
   mean, no hyperparameters: nothing pulls the curve towards "not usable" (the former GP's prior
   mean of 0.5, below h, made the boundary early).
3. Uncertainty: a parametric bootstrap of each level's share, refitted monotone, and the crossing
   of each replicate; the 95 % interval is the 2.5 and 97.5 percentiles of the replicate
   crossings. A level's share varies as if its ratings were independent (p(1-p)/ratings, p from
   the monotone fit, shrunk as (k+1)/(n+2) so that a level rated all faithful still varies) times
   ONE design effect D for the whole curve: the variance of the item shares within each level
   over that binomial variance, pooled over the levels (weights: items - 1, times a Gaussian in
   the distance of the level's fitted share from h, sd DESIGN_NEAR = 0.15). Pooling matters with
   few items: a level's own 3 items (a fixed panel of 8 rating 24 ratings a level) or a run of 1.0
   shares near the top gave a level no spread, and resampling items per level under-covered. The
   weighting towards h matters because photos differ most in mid-curve (shares near 0.5), so an
   even pool overstated D where the curve crosses h (logistic curves covered 98-99.5 %).
   With no level holding two items, D = 1. Two calibrations of that noise: it is multiplied by
   NOISE_SCALE = 0.9 (resampling around the raw means, already noisy, then refitting monotone
   spreads the replicates too wide where the fit pools levels: at 1 the interval covered 96 % on
   average over bench/assurance.py's 25 cells, up to 97.7 %), and by t(0.975, nu) / 1.96, nu the
   design effect's effective degrees of freedom (a D read off 3 items a level is uncertain
   itself: with NOISE_SCALE but without this, fixed panels of 8 covered 91-92 %).
4. Between two studied levels the curve is unknown. The point estimate reads the crossing off a
   straight line on the logit scale between the curve's own top and floor (a sigmoid is straight
   there, a slow decline nearly so); where the whole drop happens within one step (a cliff), the
   ratings cannot tell where inside the step it lies, so it moves to the middle of the step in
   proportion to how much steeper this step is than its neighbours. The replicates' crossings
   are spread over the bracketing step: at least SPREAD (3/4) of the way uniformly, more on a
   cliff, since a monotone curve may fall anywhere between two levels (the logit line alone
   under-covered cliffs and plateaus that end in a cliff).
The rules in 3 and 4 (pooled D, DESIGN_NEAR, the t widening, NOISE_SCALE, SPREAD) were chosen on
bench/assurance.py's tuning seeds (0 and 2); its figures are reported on seeds 1, 3 and 4.
Each studied level is classified as in the LSE classifier (Gotovos et al. 2013): usable when
mean - beta*sd >= h, not usable when mean + beta*sd < h, uncertain otherwise (mean and sd of the
bootstrap curves), and the Straddle acquisition a(x) = 1.96*sd(x) - |mean(x) - h| proposes where
the next ratings settle the most.

A definitive sentence is never the model's guess: with fewer than three studied levels, with too
few ratings at the level a sentence rests on, or with an interval wider than half the studied
range, the status is "not enough ratings" (review.answer.sentences says what to rate next).
bench/assurance.py measures the interval's coverage and the bias per truth shape and panel kind.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from review.analysis.agreement import wilson_ci
from review.media.restore import names, restorer_class, with_strength

FAITHFUL_MIN = 4
THRESHOLD = 0.8
BETA = 1.96
GRID_POINTS = 201
BOOTSTRAP = 400  # bootstrap replicates
#: A definitive sentence at an end of the range needs this many ratings on this many items there.
MIN_RATINGS = 10
MIN_ITEMS = 2
MIN_LEVELS = 3
CLASSES = ("usable", "uncertain", "not usable")
STATUSES = ("crosses", "usable throughout", "not usable even at the smallest level", "not enough ratings")


@dataclass(frozen=True)
class Options:
    """What counts as faithful and usable; every number the answer depends on."""

    faithful_min: int = FAITHFUL_MIN  # a score at or above this is "faithful"
    threshold: float = THRESHOLD  # h: a level is usable when at least this share of ratings is faithful
    beta: float = BETA  # classification width: mean +- beta * sd against h
    proposals: int = 3  # how many next levels the Straddle acquisition proposes per curve
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must lie strictly between 0 and 1 (got {self.threshold}).")
        if self.beta <= 0:
            raise ValueError(f"beta must be positive (got {self.beta}).")


@dataclass(frozen=True)
class LevelStat:
    """The observed ratings at one blur level (and strength) of one curve."""

    level: float
    strength: float | None
    ratings: int
    items: int
    faithful: int
    share: float
    share_ci: tuple[float, float] | None  # Wilson 95 % over ratings (as if independent)
    mos: float
    mos_ci: tuple[float, float] | None  # mean +- 1.96 sd / sqrt(n)


def decreasing_fit(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted least-squares non-increasing fit of each row of `values` (B, L) (isotonic
    regression by the min-max formula: fit_i = min over j <= i of max over k >= i of the weighted
    mean of values j..k), vectorised over rows."""
    v = np.atleast_2d(np.asarray(values, dtype=float))
    w = np.asarray(weights, dtype=float)
    n = v.shape[1]
    cw = np.concatenate([[0.0], np.cumsum(w)])
    cv = np.concatenate([np.zeros((v.shape[0], 1)), np.cumsum(v * w, axis=1)], axis=1)
    j, k = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    valid = k >= j
    denom = np.where(valid, cw[k + 1] - cw[j], 1.0)
    avg = (cv[:, k + 1] - cv[:, j]) / denom  # (B, j, k): weighted mean of j..k
    avg = np.where(valid, avg, -np.inf)
    # best[b, j, i] = max over k >= i of avg[b, j, k]: a reversed running maximum along k.
    best = np.maximum.accumulate(avg[:, :, ::-1], axis=2)[:, :, ::-1]
    best = np.where(valid, best, np.inf)  # only j <= i count
    return best.min(axis=1)


@dataclass
class Fit:
    """A non-increasing curve of the faithful share over the studied levels, with the curves of
    its bootstrap replicates; linear between levels."""

    levels: np.ndarray  # (L,) studied levels, ascending
    items: np.ndarray  # (L,) items per level
    ratings: np.ndarray  # (L,) ratings per level
    faithful: np.ndarray  # (L,) faithful ratings per level
    curve: np.ndarray  # (L,) the monotone fit to all ratings
    boot: np.ndarray  # (B, L) the monotone fits of the bootstrap replicates
    seed: int = 0

    @property
    def lo(self) -> np.ndarray:
        return np.array([self.levels[0]])

    @property
    def span(self) -> np.ndarray:
        return np.array([max(float(self.levels[-1] - self.levels[0]), 1e-9)])

    def scale(self, x: np.ndarray) -> np.ndarray:
        return (np.atleast_2d(np.asarray(x, dtype=float)).reshape(-1, 1) - self.lo) / self.span

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean (the fit to all ratings) and bootstrap sd of the share at levels `x` ((n,) or (n, 1))."""
        xs = np.asarray(x, dtype=float).reshape(-1)
        mean = np.interp(xs, self.levels, self.curve)
        sd = self.sample_curves(xs).std(axis=1)
        return mean, sd

    def sample_curves(self, x: np.ndarray) -> np.ndarray:
        """The bootstrap curves at levels `x`: shape (len(x), B)."""
        xs = np.asarray(x, dtype=float).reshape(-1)
        idx = np.clip(np.searchsorted(self.levels, xs, side="right") - 1, 0, max(len(self.levels) - 2, 0))
        if len(self.levels) == 1:
            return np.repeat(self.boot[:, :1].T, len(xs), axis=0)
        x0, x1 = self.levels[idx], self.levels[idx + 1]
        t = np.clip((xs - x0) / (x1 - x0), 0.0, 1.0)
        return (self.boot[:, idx] * (1 - t) + self.boot[:, idx + 1] * t).T


#: The bootstrap crossings are spread uniformly over at least this share of their bracketing step
#: (module docstring, step 4). Chosen on bench/assurance.py seeds 0 and 2 among 0, 1/4, 1/2, 3/4, 1.
SPREAD = 0.75


#: The design effect is pooled over levels with weights exp(-((share - h) / DESIGN_NEAR)^2 / 2)
#: (module docstring, step 3). Chosen on bench/assurance.py seeds 0 and 2 among 0.1, 0.15, 0.3 and
#: no weighting (all levels alike): 42 of 50 cells in 93-97 % with 1 under 93 %, vs 39 with 2.
DESIGN_NEAR = 0.15


#: The bootstrap's noise is this share of the modelled sd (module docstring, step 3): resampling
#: around the raw level means, which are noisy already, and refitting a monotone curve spreads the
#: replicates too wide where the fit pools levels (the plain bootstrap is not consistent for
#: monotone fits: Sen, Banerjee & Woodroofe 2010). Chosen on bench/assurance.py seeds 0 and 2
#: among 0.85, 0.88, 0.9, 0.92, 0.95 and 1, with the t widening; checked on its held-out panels.
NOISE_SCALE = 0.9


def _small_sample_widening(weights: np.ndarray, dof: np.ndarray) -> float:
    """t(0.975, nu) / z(0.975) for the pooled design effect, nu its effective degrees of freedom
    (Welch-Satterthwaite: nu = (sum w)^2 / sum(w^2 / dof) over the pooled levels): a design effect
    read off 3 items a level (a fixed panel of 8) is itself uncertain, and treating it as known
    left such panels at 91-92 % coverage. 1 where nothing was pooled."""
    used = dof > 0
    if not used.any() or weights[used].sum() <= 0:
        return 1.0
    nu = weights[used].sum() ** 2 / (weights[used] ** 2 / dof[used]).sum()
    return float(student_t.ppf(0.975, max(nu, 1.0)) / student_t.ppf(0.975, np.inf))


def fit_share(level: np.ndarray, faithful: np.ndarray, item: np.ndarray | None = None, *,
              samples: int = BOOTSTRAP, seed: int = 0, threshold: float = THRESHOLD) -> Fit:
    """Fit the monotone share curve to ratings: one row per rating with its blur `level`, whether
    it is `faithful`, and its `item` (None: every rating its own item); `threshold` (h) is where
    the design effect is measured."""
    level = np.asarray(level, dtype=float).reshape(-1)
    faithful = np.asarray(faithful, dtype=float).reshape(-1)
    if len(level) == 0 or len(level) != len(faithful):
        raise ValueError("fit_share needs one level and one faithful flag per rating")
    if item is None:
        item_codes = np.arange(len(level))
    else:
        item_arr = np.asarray(item).reshape(-1)
        item_codes = item_arr if item_arr.dtype.kind in "iu" else pd.factorize(item_arr.astype(str))[0]
    levels, level_idx = np.unique(level, return_inverse=True)
    # One row per (level, item): the share of that item's ratings that are faithful.
    pairs, pair_idx = np.unique(np.column_stack([level_idx, item_codes]), axis=0, return_inverse=True)
    pair_idx = pair_idx.reshape(-1)
    size = np.bincount(pair_idx, minlength=len(pairs))
    hits_per_item = np.bincount(pair_idx, weights=faithful, minlength=len(pairs))
    share = hits_per_item / size
    rng = np.random.default_rng(seed)
    n_lev = len(levels)
    items = np.bincount(pairs[:, 0], minlength=n_lev)
    ratings = np.bincount(level_idx, minlength=n_lev)
    faithful_sum = np.bincount(level_idx, weights=faithful, minlength=n_lev)
    hits = faithful_sum.round().astype(int)
    means = np.bincount(pairs[:, 0], weights=share, minlength=n_lev) / items
    spread = np.bincount(pairs[:, 0], weights=(share - means[pairs[:, 0]]) ** 2, minlength=n_lev)
    curve = decreasing_fit(means[None, :], items)[0]
    p = (curve * ratings + 1) / (ratings + 2)
    independent = p * (1 - p) / ratings  # the variance of a level's share if ratings were independent
    dof = items - 1
    # The design effect: within-level variance of the level mean (sample variance of the item
    # shares / items) over the independent-ratings variance, pooled over levels (weights items - 1,
    # times a Gaussian in the level's distance from h: the design effect where the curve crosses h,
    # not the one of mid-curve levels whose photos differ most; module docstring, step 3).
    near = -0.5 * ((curve - threshold) / DESIGN_NEAR) ** 2
    near = np.exp(near - near.max())
    weights = near * dof * independent
    design = (float((near * spread / np.maximum(items, 1)).sum() / max(weights.sum(), 1e-12))
              if (near * dof).sum() > 0 else 1.0)
    sd = NOISE_SCALE * np.sqrt(max(design, 1e-3) * independent) * _small_sample_widening(weights, dof)
    boot = means + rng.standard_normal((samples, n_lev)) * sd
    return Fit(levels, items, ratings, hits, curve, decreasing_fit(boot, items), seed)


def classify(mean: np.ndarray, sd: np.ndarray, threshold: float, beta: float = BETA) -> list[str]:
    """The LSE classification of each point: usable, not usable or uncertain."""
    return ["usable" if m - beta * s >= threshold else "not usable" if m + beta * s < threshold
            else "uncertain" for m, s in zip(mean, sd, strict=True)]


def straddle(mean: np.ndarray, sd: np.ndarray, threshold: float) -> np.ndarray:
    """Straddle acquisition (Bryan et al. 2005): large where the curve may cross the threshold."""
    return 1.96 * np.asarray(sd) - np.abs(np.asarray(mean) - threshold)


def first_crossing(levels: np.ndarray, curves: np.ndarray, threshold: float) -> np.ndarray:
    """Per curve (columns of `curves`, rows along `levels`): the first level where the curve falls
    below the threshold, linearly interpolated; -inf where it starts below, +inf where it never
    falls below within the levels."""
    curves = np.asarray(curves, dtype=float)
    curves = curves[:, None] if curves.ndim == 1 else curves
    below = curves < threshold
    out = np.full(curves.shape[1], np.inf)
    any_below = below.any(axis=0)
    first = np.argmax(below, axis=0)
    out[any_below & (first == 0)] = -np.inf
    for j in np.flatnonzero(any_below & (first > 0)):
        i = first[j]
        y0, y1 = curves[i - 1, j], curves[i, j]
        t = (y0 - threshold) / (y0 - y1) if y0 != y1 else 0.0
        out[j] = levels[i - 1] + t * (levels[i] - levels[i - 1])
    return out


def crossings(levels: np.ndarray, curves: np.ndarray, threshold: float,
              u: np.ndarray | float, spread: float = 0.0) -> np.ndarray:
    """Where each non-increasing curve (rows of `curves` (B, L), at the studied `levels`) falls
    below `threshold`: -inf where it starts below, +inf where it never does. Inside the step
    [l_i, l_i+1] that brackets the crossing, the position is (1 - lam) * t + lam * u of the step:
    t from a straight line between the two levels on the logit scale (`_sigmoid_scale`), u (in
    [0, 1], uniform random per replicate, or 0.5 for the point estimate) where the drop is a
    cliff, and lam = 1 - (steepest neighbouring slope / this step's slope) on that scale, clipped
    to [0, 1] (1 when the step has no neighbours), and at least `spread`."""
    f = np.atleast_2d(np.asarray(curves, dtype=float))
    levels = np.asarray(levels, dtype=float)
    n_rep, n_lev = f.shape
    out = np.full(n_rep, np.inf)
    below = f < threshold
    any_below = below.any(axis=1)
    first = np.argmax(below, axis=1)
    out[any_below & (first == 0)] = -np.inf
    rows = np.flatnonzero(any_below & (first > 0))
    if len(rows) == 0:
        return out
    i = first[rows] - 1  # bracket: levels i, i + 1
    step = np.diff(levels)
    g, gh = _sigmoid_scale(f, threshold)
    slopes = np.diff(-g, axis=1) / step  # (B, L - 1), >= 0
    y0, y1 = g[rows, i], g[rows, i + 1]
    t = (y0 - gh[rows]) / np.maximum(y0 - y1, 1e-12)
    here = slopes[rows, i]
    left = np.where(i > 0, slopes[rows, np.maximum(i - 1, 0)], -np.inf)
    right = np.where(i + 1 < n_lev - 1, slopes[rows, np.minimum(i + 1, n_lev - 2)], -np.inf)
    neighbour = np.maximum(left, right)
    lam = np.where(np.isfinite(neighbour), np.clip(1 - neighbour / np.maximum(here, 1e-12), 0.0, 1.0), 1.0)
    lam = np.maximum(lam, spread)
    uu = np.broadcast_to(np.asarray(u, dtype=float), (n_rep,))[rows]
    out[rows] = levels[i] + step[i] * ((1 - lam) * t + lam * uu)
    return out


EDGE = 0.02  # keeps the logit of the curve's own top and floor finite


def _sigmoid_scale(f: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Each curve (rows) and the threshold on the scale where a sigmoid between the curve's own
    top and floor is a straight line: logit((f - floor + e) / (top - floor + 2e))."""
    top, floor = f.max(axis=1, keepdims=True), f.min(axis=1, keepdims=True)

    def to(v: np.ndarray) -> np.ndarray:
        z = np.clip((v - floor + EDGE) / (top - floor + 2 * EDGE), 1e-9, 1 - 1e-9)
        return np.log(z / (1 - z))

    return to(f), to(np.full((f.shape[0], 1), threshold))[:, 0]


@dataclass
class Boundary:
    """Where one curve (fixed strength) stops being usable, with its 95 % interval.

    `level` is None unless the curve crosses h inside the studied range with enough ratings to
    say so; `status` says which case holds: "crosses", "usable throughout", "not usable even at the
    smallest level", or "not enough ratings" (then `reason` says why). An interval end at the edge
    of the studied range is open (`open_low` / `open_high`)."""

    level: float | None
    interval: tuple[float, float]
    open_low: bool
    open_high: bool
    status: str
    reason: str = ""
    estimate: float = math.nan  # the crossing of the fit whatever the status (range edge if none)


def boundary_of(fit: Fit, threshold: float, *, seed: int = 0) -> Boundary:
    """The usable boundary of the fitted curve and its 95 % interval (bootstrap, see the
    module docstring), or "not enough ratings" where the ratings cannot settle a sentence."""
    lv = fit.levels
    rng = np.random.default_rng([seed, 21])
    reps = crossings(lv, fit.boot, threshold, rng.random(len(fit.boot)), SPREAD)
    b = float(crossings(lv, fit.curve[None, :], threshold, 0.5)[0])
    clipped = np.clip(reps, lv[0], lv[-1])
    lo, hi = (float(v) for v in np.percentile(clipped, [2.5, 97.5])) if len(lv) > 1 else (lv[0], lv[0])
    open_low = bool(lo <= lv[0]) and bool((reps == -np.inf).any())
    open_high = bool(hi >= lv[-1]) and bool((reps == np.inf).any())
    width = float(lv[-1] - lv[0])

    def enough(i: int) -> bool:
        return fit.ratings[i] >= MIN_RATINGS and fit.items[i] >= MIN_ITEMS

    status, reason = "crosses", ""
    if len(lv) < MIN_LEVELS:
        status, reason = "not enough ratings", f"only {len(lv)} blur level{'s' * (len(lv) != 1)} rated"
    elif math.isinf(b) and b > 0:
        wl = wilson_ci(int(fit.faithful[-1]), int(fit.ratings[-1]))
        settled = float(np.percentile(fit.boot[:, -1], 2.5)) >= threshold
        if enough(-1) and wl is not None and wl[0] >= threshold and settled:
            status = "usable throughout"
        else:
            status, reason = "not enough ratings", "too few ratings at the largest level to tell"
    elif math.isinf(b):
        wl = wilson_ci(int(fit.faithful[0]), int(fit.ratings[0]))
        settled = float(np.percentile(fit.boot[:, 0], 97.5)) < threshold
        if enough(0) and wl is not None and wl[1] < threshold and settled:
            status = "not usable even at the smallest level"
        else:
            status, reason = "not enough ratings", "too few ratings at the smallest level to tell"
    elif hi - lo > width / 2:
        status, reason = "not enough ratings", "the 95 % interval spans more than half the studied range"
    elif not (enough(int(np.searchsorted(lv, b, side="right")) - 1)
              and enough(min(int(np.searchsorted(lv, b, side="right")), len(lv) - 1))):
        status, reason = "not enough ratings", "too few ratings at the levels around the boundary"
    return Boundary(level=b if status == "crosses" else None, interval=(lo, hi), open_low=open_low,
                    open_high=open_high, status=status, reason=reason,
                    estimate=float(np.clip(b, lv[0], lv[-1])))


def propose(fit: Fit, candidates: np.ndarray, threshold: float, k: int,
            min_gap: float = 0.0) -> list[tuple[np.ndarray, float]]:
    """The `k` candidate levels (rows of `candidates`, raw units) with the highest Straddle score,
    at least `min_gap` apart in scaled units, best first, each with its score."""
    candidates = np.asarray(candidates, dtype=float).reshape(-1, 1)
    if len(candidates) == 0:
        return []
    mean, sd = fit.predict(candidates[:, 0])
    score = straddle(mean, sd, threshold)
    chosen: list[int] = []
    scaled = fit.scale(candidates[:, 0])
    for i in np.argsort(-score, kind="stable"):
        if len(chosen) == k:
            break
        if all(np.abs(scaled[i] - scaled[j]).max() > min_gap for j in chosen):
            chosen.append(int(i))
    return [(candidates[i], float(score[i])) for i in chosen]


# --------------------------------------------------------------------------------------------
# From a study's ratings to one curve (or surface) per restorer, setting and blur kind
# --------------------------------------------------------------------------------------------


@dataclass
class Curve:
    """One restorer at one setting on one blur kind: observations, the monotone curve, the boundary.

    For a strength-varying restorer (SD1.5 img2img) one Curve holds every strength: `strengths`
    lists them, `boundaries` has one entry per strength, and `gp_*` rows are per strength on
    `grid`. `gp_mean` / `gp_sd` (names kept for the exports) are the monotone curve's mean and
    bootstrap sd."""

    restorer: str
    setting: str  # params other than seed and strength, e.g. "balance=0.1", or "" for defaults
    blur_kind: str
    stats: list[LevelStat]
    grid: list[float]
    strengths: list[float | None]
    gp_mean: list[list[float]]  # [strength index][grid index]
    gp_sd: list[list[float]]
    boundaries: list[Boundary]
    level_classes: list[list[str]]  # [strength index][observed level index in `levels`]
    levels: list[float]  # the distinct observed levels
    proposals: list[dict[str, float]] = field(default_factory=list)  # {"level", "strength"?, "score"}
    ratings: int = 0
    items: int = 0
    simulated_ratings: int = 0


def setting_label(method: str, params: dict[str, Any]) -> str:
    """The parameters that define a setting: those that differ from the restorer's defaults,
    other than the seed and the strength ("" for a restorer run with its defaults)."""
    try:
        defaults = restorer_class(method).Params.from_dict({}).to_dict()
    except ValueError:  # a restorer this lab does not know (imported ratings): show everything
        defaults = {}
    rest = {k: v for k, v in sorted(params.items())
            if k not in ("seed", "strength") and (k not in defaults or defaults[k] != v)}
    return ", ".join(f"{k}={v}" for k, v in rest.items())


def curve_setting(method: str, params: dict[str, Any], model_identity: str | None = "") -> str:
    """The setting a curve is drawn for: `setting_label` plus the model (by content identity,
    shortened) for restorers with weights, so two models' restorations never share a curve."""
    model = str(model_identity or "")
    if model and model != "nan":
        prefix, _, digest = model.partition("-")
        short = f"{prefix}-{digest[:10]}" if digest else model
        return ", ".join(p for p in (setting_label(method, params), f"model={short}") if p)
    return setting_label(method, params)


def level_stats(df: pd.DataFrame, faithful_min: int = FAITHFUL_MIN) -> list[LevelStat]:
    """Faithful share (Wilson 95 %) and MOS (normal 95 %) per blur level and strength of `df`
    (one curve's ratings: columns blur_level, strength, score, item)."""
    out = []
    keys = ["blur_level", "strength"]
    frame = df.assign(strength=df["strength"].astype(float))
    level: Any  # a group's key parts: pandas types them only as Hashable
    strength: Any
    for (level, strength), g in frame.groupby(keys, dropna=False, sort=True):
        scores = g["score"].to_numpy(dtype=float)
        n = len(scores)
        k = int((scores >= faithful_min).sum())
        mos = float(scores.mean())
        half = 1.96 * float(scores.std(ddof=1)) / math.sqrt(n) if n > 1 else None
        out.append(LevelStat(
            level=float(level), strength=None if pd.isna(strength) else float(strength),
            ratings=n, items=int(g["item"].nunique()), faithful=k, share=k / n,
            share_ci=wilson_ci(k, n), mos=mos,
            mos_ci=(mos - half, mos + half) if half is not None else None))
    return out


def analyse_curve(df: pd.DataFrame, restorer: str, setting: str, blur_kind: str,
                  options: Options = Options()) -> Curve:
    """The monotone curve, boundary, level classes and proposals of one curve's ratings (one
    curve per strength for a strength-varying restorer rated at several strengths)."""
    stats = level_stats(df, options.faithful_min)
    levels = sorted({s.level for s in stats})
    rated_strengths = sorted({s.strength for s in stats if s.strength is not None})
    strengths: list[float | None] = list(rated_strengths) if rated_strengths else [None]
    two_d = restorer in with_strength() and len(strengths) > 1  # one curve per strength
    if not two_d:  # one curve: strength (if any) is a constant of the setting
        strengths = [strengths[0]] if len(strengths) == 1 else [None]
        stats = _pool_strengths(stats, strengths[0]) if len({s.strength for s in stats}) > 1 else stats
    frame = df.assign(strength=pd.to_numeric(df["strength"], errors="coerce").astype(float),
                      faithful=(df["score"].astype(float) >= options.faithful_min))
    lo, hi = levels[0], levels[-1]
    grid = np.linspace(lo, hi, GRID_POINTS) if hi > lo else np.array([lo])
    step = min(np.diff(levels)) if len(levels) > 1 else 1.0
    # Candidates every half step (every quarter of the range where few levels were rated).
    cand = min(step / 2, (hi - lo) / 4) if hi > lo else 1.0
    cand_levels = np.arange(lo, hi + cand / 2, cand)
    means, sds, bounds, classes, scored = [], [], [], [], []
    for strength in strengths:
        curve_strength = strength if two_d else None  # one curve per rated strength, or one for all
        part = frame[np.isclose(frame["strength"], curve_strength)] if curve_strength is not None else frame
        fit = fit_share(part["blur_level"].to_numpy(float), part["faithful"].to_numpy(),
                        part["item"].to_numpy(), seed=options.seed, threshold=options.threshold)
        m, s = fit.predict(grid)
        means.append([float(v) for v in m])
        sds.append([float(v) for v in s])
        bounds.append(boundary_of(fit, options.threshold, seed=options.seed))
        lm, ls = fit.predict(np.array(levels))
        classes.append(classify(lm, ls, options.threshold, options.beta))
        # A studied level with enough ratings whose class is settled needs no more ratings.
        settled = {float(v) for v, c, n, k in zip(fit.levels, classify(*fit.predict(fit.levels),
                                                                      options.threshold, options.beta),
                                                   fit.ratings, fit.items, strict=True)
                   if c != "uncertain" and n >= MIN_RATINGS and k >= MIN_ITEMS}
        open_levels = np.array([v for v in cand_levels if float(v) not in settled])
        for c, sc in propose(fit, open_levels[:, None], options.threshold, options.proposals,
                             min_gap=0.5 * cand / max(hi - lo, 1e-9)):
            scored.append({"level": float(c[0]),
                           **({"strength": float(curve_strength)} if curve_strength is not None else {}),
                           "score": sc})
    proposals = sorted(scored, key=lambda p: -p["score"])[:options.proposals]
    sim = int(df["simulated"].astype(bool).sum()) if "simulated" in df else 0
    return Curve(restorer=restorer, setting=setting, blur_kind=blur_kind, stats=stats,
                 grid=[float(v) for v in grid], strengths=strengths, gp_mean=means, gp_sd=sds,
                 boundaries=bounds, level_classes=classes, levels=[float(v) for v in levels],
                 proposals=proposals, ratings=len(df), items=int(df["item"].nunique()),
                 simulated_ratings=sim)


def _pool_strengths(stats: list[LevelStat], strength: float | None) -> list[LevelStat]:
    """One point per level when a non-strength restorer's rows disagree on strength (never for
    the classical ones, whose strength is always empty)."""
    pooled = []
    for level in sorted({s.level for s in stats}):
        group = [s for s in stats if s.level == level]
        n = sum(s.ratings for s in group)
        k = sum(s.faithful for s in group)
        mos = sum(s.mos * s.ratings for s in group) / n
        pooled.append(LevelStat(level, strength, n, sum(s.items for s in group), k, k / n,
                                wilson_ci(k, n), mos, None))
    return pooled


def curve_groups(df: pd.DataFrame, *, include_simulated: bool = True
                 ) -> list[tuple[tuple[str, str, str], pd.DataFrame]]:
    """The ratings of each (restorer, setting with its model, blur kind) of a study's ratings
    (review.analysis.export.ratings_frame's columns), whatever their number of blur levels; the
    hidden reference, smoke-test outputs and photos without a blur level are left out."""
    if df.empty:
        return []
    frame = df[df["blur_level"].notna() & ~df["restorer"].isin(names(is_restoration=False))]
    if "is_smoke_test" in frame:
        frame = frame[~frame["is_smoke_test"].astype(bool)]
    if not include_simulated and "simulated" in frame:
        frame = frame[~frame["simulated"].astype(bool)]
    if frame.empty:
        return []
    frame = frame.assign(
        setting=[curve_setting(m, json.loads(p) if isinstance(p, str) else (p or {}), model)
                 for m, p, model in zip(frame["restorer"], frame["restorer_params"],
                                        frame.get("model_identity", pd.Series([""] * len(frame),
                                                                              index=frame.index)),
                                        strict=True)],
        strength=pd.to_numeric(frame["strength"], errors="coerce"),
        blur_level=frame["blur_level"].astype(float))
    return [((str(r), str(st), str(k)), g)
            for (r, st, k), g in frame.groupby(["restorer", "setting", "blur_kind"], sort=True)]


def curves_of(df: pd.DataFrame, options: Options = Options(), *,
              include_simulated: bool = True) -> list[Curve]:
    """Every curve of a study's ratings (`curve_groups`) with at least two rated blur levels
    (review.answer.sentences names the others)."""
    return [analyse_curve(g, restorer, setting, kind, options)
            for (restorer, setting, kind), g in curve_groups(df, include_simulated=include_simulated)
            if g["blur_level"].nunique() >= 2]
