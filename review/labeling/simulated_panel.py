"""A simulated rating panel over a known ground truth: it validates the boundary estimator
(bench/assurance.py), exercises the statistics, and fills the demo with ratings to analyse.

Ground truth: per restorer a logistic curve of the share of faithful ratings (score >= 4) over
blur level, with a known boundary where the share equals h (0.8 by default); for a restorer
with a strength the boundary moves down as the strength rises. Raters follow the ITU-T P.910
subject model (Annex E; REFERENCE.md): O = psi_item + bias_rater + inconsistency_rater * N(0, 1),
rounded to the scale. The item's true quality psi is placed so that the population share of
O >= 3.5 at a level is the curve's share for a rater of the reference inconsistency. A clearer
guideline multiplies each rater's inconsistency by its clarity factor (< 1); QA (on for a rater
in a QA arm) corrects a share of ratings that miss the item's true score to that score.

Ratings written to a study come from accounts marked `simulated`, made as every account is
(review.accounts.users.rater_account: they cannot log in), so
analysis can include or exclude them, and `remove_simulated` takes them out again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import product

import numpy as np
from scipy.special import expit, logit
from scipy.stats import norm
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from db.models import (
    Assignment,
    DegradedImage,
    QAVerdict,
    Rating,
    Restoration,
    Study,
    StudyItem,
    StudyReviewer,
    User,
)
from review.accounts.users import UserError, rater_account
from review.enums import AssignmentStatus, RatingSource
from review.errors import ReviewError
from review.labeling.cohorts import guideline_arms, qa_arms
from review.media.restore import restorer_class

FAITHFUL_CUT = 3.5  # a continuous opinion at or above this rounds to 4 or 5: "faithful"


class SimulationError(ReviewError):
    """The simulated panel cannot be added to (or removed from) this study as asked."""


@dataclass(frozen=True)
class TrueCurve:
    """The ground truth of one restorer: faithful share over blur level (logistic), equal to
    `threshold` at `boundary` px (at `reference_strength`); `strength_slope` px of boundary are
    lost per unit of strength above it. `boundary = inf` means faithful at every level."""

    boundary: float
    width: float = 2.0  # logistic scale in px: how sharply the share falls around the boundary
    threshold: float = 0.8
    top: float = 0.97  # the share at no blur (raters are never unanimous)
    floor: float = 0.02
    strength_slope: float = 0.0
    reference_strength: float = 0.0

    def boundary_at(self, strength: float | None = None) -> float:
        if strength is None:
            return self.boundary
        return self.boundary - self.strength_slope * (strength - self.reference_strength)

    def share(self, level: np.ndarray | float, strength: np.ndarray | float | None = None) -> np.ndarray:
        """The population share of faithful ratings at `level` (and `strength`)."""
        level = np.asarray(level, dtype=float)
        b = (self.boundary if strength is None else self.boundary
             - self.strength_slope * (np.asarray(strength, dtype=float) - self.reference_strength))
        # The logistic's midpoint sits where the share equals `threshold` at the boundary.
        mid = b + self.width * logit((self.threshold - self.floor) / (self.top - self.floor))
        with np.errstate(invalid="ignore"):
            z = np.where(np.isinf(mid), np.inf, (mid - level) / self.width)
        return self.floor + (self.top - self.floor) * expit(z)


#: The truth of a restorer that declares none (its class's ``simulated_truth``).
UNKNOWN_TRUTH = TrueCurve(10.0, width=2.5)
KIND_SCALE = {"motion_line": 1.0, "camera_shake": 1.0, "defocus": 0.35, "gaussian": 0.25}


def default_truth(method: str) -> TrueCurve:
    """The ground truth of `method` on motion blur (px of line length / shake extent), as its
    restorer class declares it (``simulated_truth``); UNKNOWN_TRUTH for one that declares none or a
    restorer this lab does not know."""
    try:
        declared = restorer_class(method).simulated_truth
    except ValueError:
        declared = None
    return UNKNOWN_TRUTH if declared is None else TrueCurve(**declared)


def truth_for(method: str, kind: str) -> TrueCurve:
    """The ground truth of `method` on blur `kind`, scaled from the motion-blur truth by KIND_SCALE
    (a defocus radius of r blurs like ~3r px of shake)."""
    base = default_truth(method)
    s = KIND_SCALE.get(kind, 1.0)
    return TrueCurve(base.boundary * s, base.width * s, base.threshold, base.top, base.floor,
                     base.strength_slope * s, base.reference_strength)


@dataclass(frozen=True)
class PanelSpec:
    """How the simulated raters behave (P.910 subject model), and the guideline and QA effects."""

    bias_sd: float = 0.3  # spread of rater biases (score points)
    inconsistency: float = 0.6  # a rater's noise sd under the reference guideline
    inconsistency_spread: float = 0.25  # raters differ: inconsistency * lognormal(0, spread)
    item_sd: float = 0.3  # items at one level differ in true quality
    qa_fix_rate: float = 0.3  # share of off-by-one-or-more ratings QA corrects (QA arm only)
    scale: tuple[int, int] = (1, 5)

    @property
    def reference_sd(self) -> float:
        """The opinion spread around an item level's mean quality for a typical rater."""
        return math.sqrt(self.bias_sd**2 + self.inconsistency**2 + self.item_sd**2)


@dataclass(frozen=True)
class SimRater:
    bias: float
    inconsistency: float
    qa: bool = False


def draw_raters(spec: PanelSpec, k: int, rng: np.random.Generator, *, clarity: float = 1.0,
                qa: bool = False) -> list[SimRater]:
    """`k` raters: biases ~ N(0, bias_sd), inconsistency ~ inconsistency * clarity * lognormal."""
    bias = rng.normal(0.0, spec.bias_sd, k)
    noise = spec.inconsistency * clarity * rng.lognormal(0.0, spec.inconsistency_spread, k)
    return [SimRater(float(b), float(n), qa) for b, n in zip(bias, noise, strict=True)]


def item_quality(truth: TrueCurve, spec: PanelSpec, level: np.ndarray | float,
                 rng: np.random.Generator, strength: np.ndarray | float | None = None) -> np.ndarray:
    """True quality psi of items at `level`: placed so a typical rater calls it faithful with the
    curve's share, plus the item's own N(0, item_sd) deviation."""
    share = np.clip(truth.share(level, strength), 1e-6, 1 - 1e-6)
    # P(psi + bias + noise >= cut) over items and raters is Phi((centre - cut) / reference_sd).
    psi = FAITHFUL_CUT + spec.reference_sd * norm.ppf(share)
    return psi + rng.normal(0.0, spec.item_sd, np.shape(psi))


def rate(psi: np.ndarray, raters: list[SimRater], spec: PanelSpec,
         rng: np.random.Generator) -> np.ndarray:
    """Scores of each rater (columns) on each item (rows of `psi`)."""
    psi = np.asarray(psi, dtype=float)[:, None]
    bias = np.array([r.bias for r in raters])[None, :]
    noise = np.array([r.inconsistency for r in raters])[None, :]
    lo, hi = spec.scale
    opinion = psi + bias + noise * rng.standard_normal((psi.shape[0], len(raters)))
    scores = np.clip(np.rint(opinion), lo, hi)
    truth = np.clip(np.rint(np.broadcast_to(psi, scores.shape)), lo, hi)
    qa = np.array([r.qa for r in raters])[None, :]
    fix = qa & (scores != truth) & (rng.random(scores.shape) < spec.qa_fix_rate)
    return np.where(fix, truth, scores).astype(int)


def sample_faithful(truth: TrueCurve, spec: PanelSpec, level: float, n_ratings: int,
                    rng: np.random.Generator, *, strength: float | None = None,
                    raters_pool: list[SimRater] | None = None, faithful_min: int = 4) -> int:
    """How many of `n_ratings` fresh ratings at `level` are faithful: each on a new item by a rater
    drawn from `raters_pool` (or a fresh rater): what one batch of a study design returns."""
    pool = raters_pool or draw_raters(spec, n_ratings, rng)
    chosen = [pool[i] for i in rng.integers(0, len(pool), n_ratings)]
    psi = item_quality(truth, spec, np.full(n_ratings, float(level)), rng, strength)
    scores = np.array([rate(psi[i:i + 1], [r], spec, rng)[0, 0] for i, r in enumerate(chosen)])
    return int((scores >= faithful_min).sum())


# --------------------------------------------------------------------------------------------
# A simulated panel in a study
# --------------------------------------------------------------------------------------------


@dataclass
class SimulationSummary:
    study: str
    raters: int
    ratings: int
    cohorts: dict[str, int] = field(default_factory=dict)  # cohort label -> raters

    def line(self) -> str:
        arms = ", ".join(f"{c}: {n}" for c, n in sorted(self.cohorts.items()))
        return (f"Study {self.study!r}: {self.ratings} simulated ratings by {self.raters} simulated "
                f"raters ({arms}). Remove them with `python -m review simulate --remove "
                f"--study {self.study!r}`.")


def _clarity(arm_index: int, n_arms: int) -> float:
    """Guideline arms in version order: the first is the reference (1.0), the last the clearest
    (0.6: a guideline with example pictures lowers inconsistency, as Raedsch et al. 2023 found)."""
    return 1.0 if n_arms == 1 else 1.0 - 0.4 * arm_index / (n_arms - 1)


def taken_slots(session: Session, study_id: int, item_ids: list[int]) -> dict[int, set[int]]:
    """Each item's slots held by an assignment (empty sets for the items given): what a simulated
    rater must leave alone, so the item keeps exactly the room left for real raters."""
    taken: dict[int, set[int]] = {i: set() for i in item_ids}
    for item_id, slot in session.execute(
            select(Assignment.item_id, Assignment.slot).join(StudyItem, StudyItem.id == Assignment.item_id)
            .where(StudyItem.study_id == study_id, Assignment.slot.is_not(None))):
        if slot is not None:
            taken.setdefault(item_id, set()).add(slot)
    return taken


def simulate_study(session: Session, study: Study, *, raters: int = 8, seed: int = 0,
                   spec: PanelSpec = PanelSpec()) -> SimulationSummary:
    """Add `raters` simulated raters who rate every item of `study` (hidden references and blurred
    inputs included), spread over the study's guideline and QA arms like real reviewers."""
    if raters < 1:
        raise SimulationError("--raters must be at least 1.")
    if session.scalar(select(func.count()).select_from(StudyReviewer).join(
            User, User.id == StudyReviewer.reviewer_id).where(
            StudyReviewer.study_id == study.id, User.simulated.is_(True))):
        raise SimulationError(
            f"Study {study.name!r} already holds a simulated panel; remove it first with "
            f"`python -m review simulate --remove --study {study.name!r}`.")
    rows = session.execute(
        select(StudyItem.id, Restoration.method, Restoration.params, DegradedImage.kind, DegradedImage.level)
        .join(Restoration, Restoration.id == StudyItem.restoration_id)
        .join(DegradedImage, DegradedImage.id == Restoration.degraded_id)
        .where(StudyItem.study_id == study.id).order_by(StudyItem.id)).all()
    rows = [r for r in rows if r.level is not None]
    if not rows:
        raise SimulationError(f"Study {study.name!r} has no items with a blur level to rate.")
    # Simulated ratings hold slots like real ones (a finished assignment each), so the items keep
    # exactly the room left for real reviewers and nothing is over-filled.
    taken = taken_slots(session, study.id, [r.id for r in rows])
    active = dict(session.execute(
        select(Rating.item_id, func.count()).join(StudyItem, StudyItem.id == Rating.item_id)
        .where(StudyItem.study_id == study.id, Rating.active.is_(True)).group_by(Rating.item_id)).all())
    free = min(study.raters_per_item - max(active.get(r.id, 0), len(taken[r.id])) for r in rows)
    if raters > free:
        raise SimulationError(
            f"Study {study.name!r} takes {study.raters_per_item} raters per item and some items have "
            f"room for only {free} more; use --raters {free} or a study with more raters per item.")
    spec = PanelSpec(spec.bias_sd, spec.inconsistency, spec.inconsistency_spread, spec.item_sd,
                     spec.qa_fix_rate, (study.scale_min, study.scale_max))
    rng = np.random.default_rng(seed)
    g_arms, q_arms = guideline_arms(study), qa_arms(study)
    arms = list(product(range(len(g_arms)), q_arms))
    members: list[tuple[User, SimRater, int]] = []  # account, behaviour, guideline version id
    cohorts: dict[str, int] = {}
    for i in range(raters):
        g, qa = arms[i % len(arms)]
        cohort = f"sim-g{g_arms[g]}-{'qa' if qa else 'noqa'}"
        rater = draw_raters(spec, 1, rng, clarity=_clarity(g, len(g_arms)), qa=qa)[0]
        username = f"sim-{study.id}-{i + 1:03d}"
        try:  # inactive, without a password: it can never log in
            user = rater_account(session, username, f"Simulated rater {i + 1}", kind="simulated")
        except UserError as exc:
            raise SimulationError(str(exc)) from exc
        session.add(StudyReviewer(study_id=study.id, reviewer_id=user.id, guideline_version_id=g_arms[g],
                                  qa_enabled=qa, cohort=cohort, finished_items=len(rows)))
        cohorts[cohort] = cohorts.get(cohort, 0) + 1
        members.append((user, rater, g_arms[g]))
    session.flush()
    n = 0
    now = datetime.now(UTC)
    for row in rows:
        strength = (row.params or {}).get("strength")
        truth = truth_for(row.method, row.kind)
        psi = item_quality(truth, spec, np.array([row.level]), rng,
                           None if strength is None else float(strength))
        scores = rate(psi, [r for _u, r, _g in members], spec, rng)[0]
        free_slots = (slot for slot in range(study.raters_per_item) if slot not in taken[row.id])
        for (user, _r, gv), score, slot in zip(members, scores, free_slots, strict=False):
            session.add(Assignment(item_id=row.id, reviewer_id=user.id, status=AssignmentStatus.DONE,
                                   slot=slot, completed_at=now))
            session.add(Rating(item_id=row.id, reviewer_id=user.id, author_id=user.id,
                               source=RatingSource.REVIEWER, score=int(score), comment="simulated",
                               guideline_version_id=gv))
            n += 1
    session.flush()
    return SimulationSummary(study.name, raters, n, cohorts)


def remove_simulated(session: Session, study: Study) -> int:
    """Delete the study's simulated ratings, their QA verdicts and the simulated raters' study
    membership (and the accounts, which belong to this study alone); returns the ratings removed."""
    sim_users = select(User.id).where(User.simulated.is_(True)).scalar_subquery()
    rating_ids = select(Rating.id).join(StudyItem, StudyItem.id == Rating.item_id).where(
        StudyItem.study_id == study.id, Rating.reviewer_id.in_(sim_users))
    ids = list(session.scalars(rating_ids))
    if not ids:
        raise SimulationError(f"Study {study.name!r} holds no simulated ratings.")
    session.execute(delete(QAVerdict).where(QAVerdict.rating_id.in_(ids)))
    session.execute(delete(Assignment).where(Assignment.reviewer_id.in_(sim_users), Assignment.item_id.in_(
        select(StudyItem.id).where(StudyItem.study_id == study.id))))
    session.execute(delete(Rating).where(Rating.id.in_(ids)))
    members = list(session.scalars(select(StudyReviewer.reviewer_id).where(
        StudyReviewer.study_id == study.id, StudyReviewer.reviewer_id.in_(sim_users))))
    session.execute(delete(StudyReviewer).where(StudyReviewer.study_id == study.id,
                                                StudyReviewer.reviewer_id.in_(members)))
    session.flush()
    still_used = set(session.scalars(select(Rating.reviewer_id).where(Rating.reviewer_id.in_(members))))
    session.execute(delete(User).where(User.id.in_([u for u in members if u not in still_used])))
    return len(ids)


# --------------------------------------------------------------------------------------------
# Truth shapes and rater models for validating the boundary estimator (bench/assurance.py)
# --------------------------------------------------------------------------------------------
#
# A truth shape is the share of ratings that call a restoration faithful (score >= 4) at a blur
# level, for the population of raters a panel draws from and the population of items at that
# level. A rater model says how ratings arise: item quality psi (the level's centre plus the
# item's own N(0, item_sd)), a rater's bias and inconsistency (P.910), spammers who answer
# uniformly at random, how many raters rate each item and whether they are fresh crowd raters
# or one fixed panel that rates everything. The level's centre is solved so that the population
# share equals the shape exactly; for a fixed panel the TRUE share is that panel's own share
# (its raters are known; the estimator answers for them), computed exactly.

SPAM_FAITHFUL = 0.4  # a spammer picks 1-5 uniformly: 4 or 5 with probability 2/5
_INCONSISTENCY_QUANTILES = norm.ppf((np.arange(32) + 0.5) / 32)  # lognormal spread, quadrature


@dataclass(frozen=True)
class TruthShape:
    """A ground truth of the faithful share over blur level; `share(level)` is non-increasing.

    kind: "logistic" (share from `top` to `floor`, logistic of scale `width` px), "steep" and
    "shallow" (the same with a small or large width), "plateau_cliff" (flat just above h, then a
    cliff of scale `width`), "two_step" (a first drop to `mid_share` at `boundary - gap`, then a
    second drop), "linear" (a slow straight decline from `top` to `floor` across `span` px).
    `anchor` is a level where the share equals `anchor_share` (h for most shapes)."""

    kind: str
    anchor: float
    width: float = 2.0
    top: float = 0.93
    floor: float = 0.05
    plateau: float = 0.86
    mid_share: float = 0.84
    gap: float = 6.0
    span: float = 30.0
    threshold: float = 0.8

    def share(self, level: np.ndarray | float) -> np.ndarray:
        x = np.asarray(level, dtype=float)
        h = self.threshold
        if self.kind in ("logistic", "steep", "shallow"):
            mid = self.anchor + self.width * logit((h - self.floor) / (self.top - self.floor))
            return self.floor + (self.top - self.floor) * expit((mid - x) / self.width)
        if self.kind == "plateau_cliff":
            mid = self.anchor + self.width * logit((h - self.floor) / (self.plateau - self.floor))
            return self.floor + (self.plateau - self.floor) * expit((mid - x) / self.width)
        if self.kind == "two_step":
            first = self.anchor - self.gap  # the first, harmless drop (top -> mid_share > h)
            a = self.mid_share + (self.top - self.mid_share) * expit((first - x) / self.width)
            mid = self.anchor + self.width * logit((h - self.floor) / (self.mid_share - self.floor))
            return self.floor + (a - self.floor) * expit((mid - x) / self.width)
        if self.kind == "linear":
            slope = (self.top - self.floor) / self.span
            return np.clip(h - slope * (x - self.anchor), self.floor, self.top)
        raise ValueError(f"unknown truth shape {self.kind!r}")


SHAPES = ("logistic", "steep", "shallow", "plateau_cliff", "two_step")


def draw_shape(kind: str, rng: np.random.Generator, lo: float = 6.0, hi: float = 24.0) -> TruthShape:
    """A random truth of `kind` whose share crosses h between `lo` and `hi` px."""
    anchor = float(rng.uniform(lo, hi))
    if kind == "logistic":
        return TruthShape(kind, anchor, width=float(rng.uniform(1.5, 3.5)))
    if kind == "steep":
        return TruthShape(kind, anchor, width=float(rng.uniform(0.15, 0.6)))
    if kind == "shallow":
        return TruthShape(kind, anchor, width=float(rng.uniform(4.0, 7.0)))
    if kind == "plateau_cliff":
        return TruthShape(kind, anchor, width=float(rng.uniform(0.3, 1.0)),
                          plateau=float(rng.uniform(0.83, 0.9)))
    if kind == "two_step":
        return TruthShape(kind, anchor, width=float(rng.uniform(0.5, 1.5)), gap=float(rng.uniform(4.0, 8.0)),
                          mid_share=float(rng.uniform(0.83, 0.88)))
    if kind == "linear":
        return TruthShape(kind, anchor, span=float(rng.uniform(25.0, 45.0)))
    raise ValueError(f"unknown truth shape {kind!r}")


@dataclass(frozen=True)
class RaterModel:
    """How one panel's ratings arise (see the section comment above)."""

    name: str
    bias_sd: float = 0.3
    inconsistency: float = 0.6
    inconsistency_spread: float = 0.25
    item_sd: float = 0.3
    spammers: float = 0.0  # share of the panel's raters who answer uniformly at random
    raters_per_item: int = 3
    fixed_panel: int = 0  # > 0: this many raters rate every item; 0: a crowd pool
    pool: int = 2000  # crowd: raters in the pool (large: each rater rates few items)

    def _sd(self) -> np.ndarray:
        """Per inconsistency quadrature node: sd of psi + noise around the level's centre."""
        s = self.inconsistency * np.exp(self.inconsistency_spread * _INCONSISTENCY_QUANTILES)
        return np.sqrt(self.item_sd**2 + s**2)

    def population_share(self, centre: np.ndarray) -> np.ndarray:
        """The share of faithful ratings at item centre `centre`, over this model's population."""
        c = np.asarray(centre, dtype=float)[..., None]
        honest = norm.cdf((c - FAITHFUL_CUT) / np.sqrt(self._sd()**2 + self.bias_sd**2)).mean(axis=-1)
        return (1 - self.spammers) * honest + self.spammers * SPAM_FAITHFUL

    def centre_for(self, share: np.ndarray) -> np.ndarray:
        """The item centre at which the population share is `share` (clipped to what it can reach)."""
        grid = np.linspace(-4.0, 11.0, 3001)
        return np.interp(np.asarray(share, dtype=float), self.population_share(grid), grid)


RATER_MODELS: dict[str, RaterModel] = {
    "p910_crowd": RaterModel("p910_crowd"),
    "scale_use": RaterModel("scale_use", bias_sd=0.9),
    "spammers_10": RaterModel("spammers_10", spammers=0.1),
    "two_per_item": RaterModel("two_per_item", raters_per_item=2),
    "fixed_panel_8": RaterModel("fixed_panel_8", fixed_panel=8, raters_per_item=8),
}


@dataclass
class Panel:
    """The raters of one simulated study: biases, inconsistencies, spammer flags."""

    model: RaterModel
    bias: np.ndarray
    inconsistency: np.ndarray
    spammer: np.ndarray

    @classmethod
    def draw(cls, model: RaterModel, rng: np.random.Generator) -> Panel:
        n = model.fixed_panel or model.pool
        spam = np.zeros(n, dtype=bool)
        spam[:round(model.spammers * n)] = True  # exactly the model's share of spammers
        return cls(model, rng.normal(0.0, model.bias_sd, n),
                   model.inconsistency * rng.lognormal(0.0, model.inconsistency_spread, n), spam)

    def true_share(self, shape: TruthShape, level: np.ndarray | float) -> np.ndarray:
        """The TRUE share of ratings calling a restoration faithful at `level`: over the rater
        population for a crowd, over this panel's own raters for a fixed panel."""
        centre = self.model.centre_for(shape.share(level))
        if not self.model.fixed_panel:
            return self.model.population_share(centre)
        c = np.asarray(centre, dtype=float)[..., None]
        p = norm.cdf((c + self.bias - FAITHFUL_CUT) / np.sqrt(self.model.item_sd**2 + self.inconsistency**2))
        return np.where(self.spammer, SPAM_FAITHFUL, p).mean(axis=-1)

    def true_boundary(self, shape: TruthShape, lo: float, hi: float, threshold: float = 0.8) -> float:
        """Where the TRUE share first falls below `threshold` (bisection on a 0.005 px grid);
        `lo` or `hi` when it starts below or never falls below within [lo, hi]."""
        x = np.arange(lo, hi + 0.0025, 0.005)
        below = self.true_share(shape, x) < threshold
        if not below.any():
            return hi
        return float(x[int(np.argmax(below))])

    def rate_levels(self, shape: TruthShape, levels: np.ndarray, items: np.ndarray,
                    rng: np.random.Generator, faithful_min: int = 4) -> dict[str, np.ndarray]:
        """Ratings of `items[i]` new items at each `levels[i]`, `raters_per_item` each: one row per
        rating with its level, item number, rater number and whether it is faithful."""
        levels = np.repeat(np.asarray(levels, dtype=float), np.asarray(items, dtype=int))
        n_items = len(levels)
        k = self.model.raters_per_item
        psi = self.model.centre_for(shape.share(levels)) + rng.normal(0.0, self.model.item_sd, n_items)
        n = len(self.bias)
        if self.model.fixed_panel:
            raters = np.broadcast_to(np.arange(n)[None, :k], (n_items, k))
        else:  # raters drawn from a large pool: each rates few items, as crowd workers do
            raters = rng.integers(0, n, (n_items, k))
        opinion = (psi[:, None] + self.bias[raters]
                   + self.inconsistency[raters] * rng.standard_normal((n_items, k)))
        score = np.clip(np.rint(opinion), 1, 5)
        score = np.where(self.spammer[raters], rng.integers(1, 6, (n_items, k)), score)
        return {"level": np.repeat(levels, k), "item": np.repeat(np.arange(n_items), k),
                "rater": raters.ravel(), "faithful": (score >= faithful_min).ravel()}
