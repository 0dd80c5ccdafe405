"""How far can it go: the usable-blur boundary of each restorer, estimated by level-set estimation.

The question is the one of "Few-shot Algorithm Assurance" (Nguyen & Gupta, arXiv 2412.20275),
with "accuracy" replaced by the share of restorations people rate faithful (score >= 4 by
default) at a blur level. A Gaussian process (scikit-learn's GaussianProcessRegressor) models
that share over blur level (and over level x strength for a restorer rated at several strengths);
the usable boundary is where its mean falls below the threshold h (0.8 by default). Each level is
classified as in the paper's LSE classifier (after Gotovos et al. 2013, "Active learning for level
set estimation"): usable when mean - beta*sd >= h, not usable when mean + beta*sd < h, uncertain
otherwise. The Straddle acquisition a(x) = 1.96*sd(x) - |mean(x) - h| proposes where the next
ratings settle the most. The boundary's 95 % interval comes from posterior samples of the GP:
the 2.5 and 97.5 percentiles of where each sampled curve first falls below h.

The GP is fitted to the observed share at each level with the binomial variance of that share as
per-point noise (`alpha`), around a constant prior mean of 0.5 (far from any rating the model
says "undecided", never "faithful"). Levels are scaled to [0, 1] over the studied range. The
kernel is constant x Matern 3/2: a share curve stays flat, bends at a shoulder and falls, and an
RBF kernel (infinitely smooth) rounded that shoulder off, so its crossing came early and its
interval, tightening as ratings grew, missed the true boundary more often (bench/assurance.py:
coverage 90 % with RBF, falling to 70-82 % for a uniform grid of 180-360 ratings).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern

from review.analysis.agreement import wilson_ci
from review.media.restore import restorer_class

FAITHFUL_MIN = 4
THRESHOLD = 0.8
BETA = 1.96
PRIOR_MEAN = 0.5
GRID_POINTS = 201
POSTERIOR_SAMPLES = 400
CLASSES = ("usable", "uncertain", "not usable")
#: Restorers whose settings vary in strength: their curves become level x strength surfaces.
STRENGTH_METHODS = ("sd15_img2img",)
#: Rows that are no restoration of a blurred input (the sharp original shown as a control).
NOT_A_RESTORER = ("hidden_reference",)


@dataclass(frozen=True)
class Options:
    """What counts as faithful and usable; every number the answer depends on."""

    faithful_min: int = FAITHFUL_MIN  # a score at or above this is "faithful"
    threshold: float = THRESHOLD  # h: a level is usable when at least this share is faithful
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
    share_ci: tuple[float, float] | None  # Wilson 95 %
    mos: float
    mos_ci: tuple[float, float] | None  # mean +- 1.96 sd / sqrt(n)


@dataclass
class Fit:
    """A GP fitted to the faithful share over scaled inputs: levels (and strengths) in [0, 1]."""

    gp: GaussianProcessRegressor
    lo: np.ndarray  # per input dimension: the smallest studied value
    span: np.ndarray  # per input dimension: max - min (1 where all values are equal)

    def scale(self, x: np.ndarray) -> np.ndarray:
        return (np.atleast_2d(x) - self.lo) / self.span

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and sd of the faithful share at the raw inputs `x` (n, d)."""
        mean, sd = self.gp.predict(self.scale(x), return_std=True)
        return mean + PRIOR_MEAN, sd

    def sample(self, x: np.ndarray, n: int, seed: int) -> np.ndarray:
        """Posterior sample curves at `x`: shape (len(x), n)."""
        return self.gp.sample_y(self.scale(x), n_samples=n, random_state=seed) + PRIOR_MEAN


def fit_share(x: np.ndarray, faithful: np.ndarray, ratings: np.ndarray, *, seed: int = 0) -> Fit:
    """Fit the GP to the faithful share observed at inputs `x` ((n,) levels or (n, d))."""
    x = np.asarray(x, dtype=float)
    x = x[:, None] if x.ndim == 1 else x
    faithful = np.asarray(faithful, dtype=float)
    ratings = np.asarray(ratings, dtype=float)
    if len(x) == 0 or (ratings <= 0).any():
        raise ValueError("every fitted point needs at least one rating")
    share = faithful / ratings
    # Binomial variance of the observed share; the +1/+2 (Agresti-Coull style) keeps it above zero
    # where every rating agreed, so one unanimous level cannot pin the curve.
    p = (faithful + 1) / (ratings + 2)
    alpha = p * (1 - p) / ratings
    lo = x.min(axis=0)
    span = np.where(np.ptp(x, axis=0) > 0, np.ptp(x, axis=0), 1.0)
    # Matern 3/2, not RBF: it can bend at the shoulder (see the module docstring).
    kernel = ConstantKernel(0.1, (1e-3, 1.0)) * Matern(length_scale=np.full(x.shape[1], 0.5),
                                                        length_scale_bounds=(0.1, 10.0), nu=1.5)
    gp = GaussianProcessRegressor(kernel=kernel, alpha=alpha, normalize_y=False,
                                  n_restarts_optimizer=2, random_state=seed)
    with warnings.catch_warnings():
        # A length scale at its bound is a legitimate answer here (a curve flat over the range, or
        # a drop sharper than the level spacing), not a failure worth a console warning.
        warnings.simplefilter("ignore", ConvergenceWarning)
        gp.fit((x - lo) / span, share - PRIOR_MEAN)
    return Fit(gp, lo, span)


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


@dataclass
class Boundary:
    """Where one curve (fixed strength) stops being usable, with its 95 % interval.

    `level` is None when the curve never crosses h inside the studied range; then `status` says
    which side it stays on ("usable throughout" or "not usable even at the smallest level").
    An interval end at the edge of the studied range is open (`open_low` / `open_high`)."""

    level: float | None
    interval: tuple[float, float]
    open_low: bool
    open_high: bool
    status: str  # "crosses", "usable throughout", "not usable even at the smallest level"


def boundary_of(fit: Fit, grid: np.ndarray, threshold: float, *, strength: float | None = None,
                samples: int = POSTERIOR_SAMPLES, seed: int = 0) -> Boundary:
    """The usable boundary along blur level (at `strength` for a 2-D fit) and its 95 % interval."""
    x = _inputs(grid, strength)
    mean, _sd = fit.predict(x)
    b = float(first_crossing(grid, mean, threshold)[0])
    crossings = first_crossing(grid, fit.sample(x, samples, seed), threshold)
    clipped = np.clip(crossings, grid[0], grid[-1])
    lo, hi = (float(v) for v in np.percentile(clipped, [2.5, 97.5]))
    status = ("crosses" if math.isfinite(b) else "usable throughout" if b > 0
              else "not usable even at the smallest level")
    return Boundary(level=b if math.isfinite(b) else None, interval=(lo, hi),
                    open_low=bool(lo <= grid[0]) and bool((crossings == -np.inf).any()),
                    open_high=bool(hi >= grid[-1]) and bool((crossings == np.inf).any()), status=status)


def propose(fit: Fit, candidates: np.ndarray, threshold: float, k: int,
            min_gap: float = 0.0) -> list[tuple[np.ndarray, float]]:
    """The `k` candidate inputs (rows of `candidates`, raw units) with the highest Straddle score,
    at least `min_gap` apart in scaled units, best first, each with its score."""
    candidates = np.atleast_2d(np.asarray(candidates, dtype=float))
    mean, sd = fit.predict(candidates)
    score = straddle(mean, sd, threshold)
    chosen: list[int] = []
    scaled = fit.scale(candidates)
    for i in np.argsort(-score, kind="stable"):
        if len(chosen) == k:
            break
        if all(np.abs(scaled[i] - scaled[j]).max() > min_gap for j in chosen):
            chosen.append(int(i))
    return [(candidates[i], float(score[i])) for i in chosen]


def _inputs(levels: np.ndarray, strength: float | None) -> np.ndarray:
    levels = np.asarray(levels, dtype=float)
    if strength is None:
        return levels[:, None]
    return np.column_stack([levels, np.full(len(levels), strength)])


# --------------------------------------------------------------------------------------------
# From a study's ratings to one curve (or surface) per restorer, setting and blur kind
# --------------------------------------------------------------------------------------------


@dataclass
class Curve:
    """One restorer at one setting on one blur kind: observations, the GP, the boundary.

    For a strength-varying restorer (SD1.5 img2img) one Curve holds every strength: `strengths`
    lists them, `boundaries` has one entry per strength, and `gp_*` rows are per (level, strength)
    on `grid` x `strengths`."""

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


def level_stats(df: pd.DataFrame, faithful_min: int = FAITHFUL_MIN) -> list[LevelStat]:
    """Faithful share (Wilson 95 %) and MOS (normal 95 %) per blur level and strength of `df`
    (one curve's ratings: columns blur_level, strength, score, item)."""
    out = []
    keys = ["blur_level", "strength"]
    frame = df.assign(strength=df["strength"].astype(float))
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
    """The GP, boundary, level classes and proposals of one curve's ratings."""
    stats = level_stats(df, options.faithful_min)
    levels = sorted({s.level for s in stats})
    strengths: list[float | None] = sorted({s.strength for s in stats if s.strength is not None}) or [None]
    two_d = restorer in STRENGTH_METHODS and len(strengths) > 1
    if not two_d:  # one curve: strength (if any) is a constant of the setting
        strengths = [strengths[0]] if len(strengths) == 1 else [None]
        stats = _pool_strengths(stats, strengths[0]) if len({s.strength for s in stats}) > 1 else stats
    x = np.array([[s.level, s.strength] if two_d else [s.level] for s in stats], dtype=float)
    fit = fit_share(x, np.array([s.faithful for s in stats]), np.array([s.ratings for s in stats]),
                    seed=options.seed)
    lo, hi = levels[0], levels[-1]
    grid = np.linspace(lo, hi, GRID_POINTS) if hi > lo else np.array([lo])
    means, sds, bounds, classes = [], [], [], []
    for strength in strengths:
        at = strength if two_d else None
        m, s = fit.predict(_inputs(grid, at))
        means.append([float(v) for v in m])
        sds.append([float(v) for v in s])
        bounds.append(boundary_of(fit, grid, options.threshold, strength=at, seed=options.seed))
        lm, ls = fit.predict(_inputs(np.array(levels), at))
        classes.append(classify(lm, ls, options.threshold, options.beta))
    step = min(np.diff(levels)) if len(levels) > 1 else 1.0
    cand_levels = np.arange(lo, hi + step / 2, step / 2)
    candidates = (np.array([[lv, st] for lv in cand_levels for st in strengths]) if two_d
                  else cand_levels[:, None])
    proposals = [{"level": float(c[0]), **({"strength": float(c[1])} if two_d else {}), "score": sc}
                 for c, sc in propose(fit, candidates, options.threshold, options.proposals,
                                      min_gap=0.5 * step / max(hi - lo, 1e-9))]
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


def curves_of(df: pd.DataFrame, options: Options = Options(), *,
              include_simulated: bool = True) -> list[Curve]:
    """Every curve of a study's ratings (review.analysis.export.ratings_frame's columns): one per
    restorer, setting and blur kind with at least two rated blur levels; the hidden reference,
    smoke-test outputs and photos without a blur level are left out."""
    if df.empty:
        return []
    frame = df[df["blur_level"].notna() & ~df["restorer"].isin(NOT_A_RESTORER)]
    if "is_smoke_test" in frame:
        frame = frame[~frame["is_smoke_test"].astype(bool)]
    if not include_simulated and "simulated" in frame:
        frame = frame[~frame["simulated"].astype(bool)]
    if frame.empty:
        return []
    frame = frame.assign(
        setting=[setting_label(m, json.loads(p) if isinstance(p, str) else (p or {}))
                 for m, p in zip(frame["restorer"], frame["restorer_params"], strict=True)],
        strength=pd.to_numeric(frame["strength"], errors="coerce"),
        blur_level=frame["blur_level"].astype(float))
    curves = []
    for (restorer, setting, kind), g in frame.groupby(["restorer", "setting", "blur_kind"], sort=True):
        if g["blur_level"].nunique() < 2:
            continue
        curves.append(analyse_curve(g, str(restorer), str(setting), str(kind), options))
    return curves
