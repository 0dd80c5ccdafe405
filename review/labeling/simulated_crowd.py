"""A simulated crowd: participants of different behaviour rating sessions with gold and traps.

Careful and noisy participants are honest (their scores follow the item's quality, the noisy ones
with more scale-use bias and inconsistency); spammers answer uniformly at random; straight-liners
give one score to everything; speeders glance at each item for about a second. Each participant
rates one session: live items, gold items with a known range (a hidden sharp reference expected
4-5, the blurred input expected 1-2) and traps that state their answer ("select 2"). The table it
returns has the columns review.analysis.cleansing needs, plus the truth (`behaviour`, `level`) so
a benchmark can score cleansing against it. Everything here is SIMULATED, never a person.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import (
    Assignment,
    DegradedImage,
    Participant,
    ParticipantProbe,
    RaterPool,
    Rating,
    Restoration,
    Study,
    StudyItem,
)
from review.accounts.users import participant_account
from review.enums import AssignmentStatus, ParticipantStage, ProbePhase, RatingSource
from review.labeling.cohorts import ensure_enrolled
from review.labeling.pools import pool_settings
from review.labeling.simulated_panel import (
    PanelSpec,
    RaterModel,
    TruthShape,
    item_quality,
    taken_slots,
    truth_for,
)

BEHAVIOURS = ("careful", "noisy", "spammer", "straight_liner", "speeder")
HONEST = ("careful", "noisy")

#: Honest participants' scale use (P.910 subject model): careful as the reference crowd, noisy
#: with wider biases and twice the inconsistency.
HONEST_MODELS = {"careful": RaterModel("careful"),
                 "noisy": RaterModel("noisy", bias_sd=0.6, inconsistency=1.1)}

#: Median seconds per item and the chance of answering a trap as it asks, by behaviour.
SECONDS = {"careful": 9.0, "noisy": 7.0, "spammer": 3.5, "straight_liner": 2.5, "speeder": 1.2}
TRAP_RIGHT = {"careful": 0.99, "noisy": 0.97, "spammer": 0.2, "straight_liner": 0.5, "speeder": 0.6}

GOLD_ITEMS = ((4.7, 4, 5), (1.3, 1, 3))  # (true quality, expected range): the controls' own (registry)


@dataclass(frozen=True)
class CrowdMix:
    """Shares of each behaviour in a pool (they need not sum to 1: they are normalised)."""

    shares: dict[str, float] = field(default_factory=lambda: {
        "careful": 0.55, "noisy": 0.15, "spammer": 0.1, "straight_liner": 0.1, "speeder": 0.1})

    def draw(self, n: int, rng: np.random.Generator) -> list[str]:
        """Exactly the mix's shares of `n` participants (largest remainders), in random order."""
        kinds = list(self.shares)
        w = np.array([self.shares[k] for k in kinds], dtype=float)
        exact = w / w.sum() * n
        counts = np.floor(exact).astype(int)
        counts[np.argsort(exact - counts)[::-1][:n - counts.sum()]] += 1
        out = [k for k, c in zip(kinds, counts, strict=True) for _ in range(c)]
        rng.shuffle(out)
        return out


def honest_share(shape: TruthShape, level: np.ndarray | float, mix: CrowdMix) -> np.ndarray:
    """The share of honest participants' ratings calling a restoration faithful at `level`: the
    truth a cleansed analysis should find."""
    centre = HONEST_MODELS["careful"].centre_for(shape.share(level))
    w = {k: mix.shares.get(k, 0.0) for k in HONEST}
    total = sum(w.values()) or 1.0
    return sum((w[k] / total * HONEST_MODELS[k].population_share(centre) for k in HONEST),
               start=np.zeros(np.shape(centre)))


def true_boundary(shape: TruthShape, mix: CrowdMix, lo: float, hi: float, threshold: float = 0.8) -> float:
    """Where the honest share first falls below `threshold` (0.005 px grid; `hi` if never)."""
    x = np.arange(lo, hi + 0.0025, 0.005)
    below = honest_share(shape, x, mix) < threshold
    return float(x[int(np.argmax(below))]) if below.any() else hi


def _scores(kind: str, psi: np.ndarray, rng: np.random.Generator, constant: int,
            bias: float, inconsistency: float) -> np.ndarray:
    n = len(psi)
    if kind == "spammer":
        return rng.integers(1, 6, n)
    if kind == "straight_liner":
        return np.where(rng.random(n) < 0.95, constant, rng.integers(1, 6, n))
    noise = 1.6 if kind == "speeder" else inconsistency
    return np.clip(np.rint(psi + bias + noise * rng.standard_normal(n)), 1, 5).astype(int)


def simulate_crowd(shape: TruthShape, levels: np.ndarray, rng: np.random.Generator, *,
                   participants: int = 60, mix: CrowdMix = CrowdMix(), items_per_level: int = 8,
                   live_per_session: int = 20, traps: int = 2) -> pd.DataFrame:
    """One crowd study: `items_per_level` restorations at each level, each participant a session
    of `live_per_session` live items (spread evenly over items), both gold items and `traps`
    traps. One row per rating, with the cleansing columns and the truth."""
    levels = np.asarray(levels, dtype=float)
    item_level = np.repeat(levels, items_per_level)
    careful = HONEST_MODELS["careful"]
    psi = careful.centre_for(shape.share(item_level)) + rng.normal(0.0, careful.item_sd, len(item_level))
    order = rng.permutation(len(item_level))
    rows: list[pd.DataFrame] = []
    for p, kind in enumerate(mix.draw(participants, rng)):
        model = HONEST_MODELS.get(kind, careful)
        bias = float(rng.normal(0.0, model.bias_sd))
        inconsistency = float(model.inconsistency * rng.lognormal(0.0, model.inconsistency_spread))
        constant = int(rng.choice([3, 4, 5]))
        live = order[(p * live_per_session + np.arange(live_per_session)) % len(order)]
        gold_psi = np.array([g[0] for g in GOLD_ITEMS])
        trap_answer = rng.integers(1, 6, traps)
        scores = np.concatenate([
            _scores(kind, psi[live], rng, constant, bias, inconsistency),
            _scores(kind, gold_psi, rng, constant, bias, inconsistency),
            np.where(rng.random(traps) < TRAP_RIGHT[kind], trap_answer, rng.integers(1, 6, traps))])
        n = len(scores)
        seconds = SECONDS[kind] * rng.lognormal(0.0, 0.4, n)
        rows.append(pd.DataFrame({
            "submission": f"s{p:03d}", "rater": f"p{p:03d}", "behaviour": kind,
            "item": [f"i{i:03d}" for i in live] + [f"gold{g}" for g in range(len(GOLD_ITEMS))]
                    + [f"trap{p:03d}_{t}" for t in range(traps)],
            "kind": ["live"] * len(live) + ["gold"] * len(GOLD_ITEMS) + ["trap"] * traps,
            "level": np.concatenate([item_level[live], np.full(len(GOLD_ITEMS) + traps, np.nan)]),
            "score": scores.astype(int), "seconds": seconds,
            "expected_min": np.concatenate([np.full(len(live), np.nan), [g[1] for g in GOLD_ITEMS],
                                            trap_answer]),
            "expected_max": np.concatenate([np.full(len(live), np.nan), [g[2] for g in GOLD_ITEMS],
                                            trap_answer]),
        }))
    return pd.concat(rows, ignore_index=True)


# --------------------------------------------------------------------------------------------
# A simulated crowd pool in a study (the demo)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CrowdSummary:
    participants: int
    ratings: int
    behaviours: dict[str, int]


def simulate_pool(session: Session, study: Study, pool: RaterPool, *, participants: int, seed: int = 0,
                  mix: CrowdMix = CrowdMix(), traps: int = 2) -> CrowdSummary:
    """Finished sessions of `participants` SIMULATED crowd participants in `pool` (accounts marked
    simulated, never able to sign in): each rates up to the pool's session length of the study's
    items with free slots (gold controls among them), as its behaviour dictates, with seconds per
    item, and answers `traps` trapping questions. The pool's cleansing then has real rows to judge."""
    rng = np.random.default_rng(seed)
    per_session = pool_settings(pool).items_per_session
    rows = session.execute(
        select(StudyItem.id, StudyItem.is_gold, Restoration.method, Restoration.params, DegradedImage.kind,
               DegradedImage.level)
        .join(Restoration, Restoration.id == StudyItem.restoration_id)
        .join(DegradedImage, DegradedImage.id == Restoration.degraded_id)
        .where(StudyItem.study_id == study.id, StudyItem.is_training.is_(False)).order_by(StudyItem.id)).all()
    taken = taken_slots(session, study.id, [r.id for r in rows])
    spec = PanelSpec()
    psi = {}
    for r in rows:
        level = r.level if r.level is not None else 0.0
        strength = (r.params or {}).get("strength")
        psi[r.id] = float(item_quality(truth_for(r.method, r.kind), spec, np.array([level]), rng,
                                       None if strength is None else float(strength))[0])
    now = datetime.now(UTC)
    kinds = mix.draw(participants, rng)
    n = 0
    for k, kind in enumerate(kinds):
        model = HONEST_MODELS.get(kind, HONEST_MODELS["careful"])
        bias = float(rng.normal(0.0, model.bias_sd))
        inconsistency = float(model.inconsistency * rng.lognormal(0.0, model.inconsistency_spread))
        constant = int(rng.choice([3, 4, 5]))
        user = participant_account(session, f"simcrowd-{pool.id}-{k + 1:03d}", simulated=True)
        p = Participant(user_id=user.id, pool_id=pool.id, platform_id_hash=f"simulated-{pool.id}-{k + 1}",
                        export_ids={"pid": f"SIMULATED{k + 1:03d}"}, stage=ParticipantStage.COMPLETED.value,
                        viewing_attempts=1, end_code=pool.completion_code, consent_at=now, finished_at=now)
        session.add(p)
        member = ensure_enrolled(session, study, user.id)
        member.pool_id = pool.id
        session.flush()
        free = [r for r in rows if len(taken[r.id]) < study.raters_per_item]
        chosen = [free[i] for i in rng.permutation(len(free))[:per_session]]
        scores = _scores(kind, np.array([psi[r.id] for r in chosen]), rng, constant, bias, inconsistency)
        for r, score in zip(chosen, scores, strict=True):
            slot = min(set(range(study.raters_per_item)) - taken[r.id])
            taken[r.id].add(slot)
            session.add(Assignment(item_id=r.id, reviewer_id=user.id, status=AssignmentStatus.DONE, slot=slot,
                                   completed_at=now))
            seconds = SECONDS[kind] * float(rng.lognormal(0.0, 0.4))
            session.add(Rating(item_id=r.id, reviewer_id=user.id, author_id=user.id,
                               source=RatingSource.REVIEWER, comment="simulated",
                               score=int(np.clip(score, study.scale_min, study.scale_max)),
                               guideline_version_id=member.guideline_version_id,
                               time_taken_ms=int(seconds * 1000)))
            n += 1
        member.finished_items = len(chosen)
        for t in range(traps):
            answer = int(rng.integers(1, 6))
            given = answer if rng.random() < TRAP_RIGHT[kind] else int(rng.integers(1, 6))
            session.add(ParticipantProbe(participant_id=p.id, phase=ProbePhase.TRAP.value,
                                         probe_key=f"trap-{t}",
                                         position=t, answer=given, expected_min=answer, expected_max=answer,
                                         correct=given == answer, answered_at=now,
                                         details={"simulated": True, "seconds": SECONDS[kind]}))
    session.flush()
    return CrowdSummary(len(kinds), n, {b: kinds.count(b) for b in BEHAVIOURS if b in kinds})
