"""Data cleansing in the lab: a study's finished crowd submissions through review.analysis.cleansing,
the decisions stored, overridden by an admin, exported for the platforms, and items reopened.

A submission is one participant's session: their live ratings of the study (gold controls among
them), their trap answers and their seconds per item. Decisions are rows of `cleansing_decisions`,
only ever added: the newest is the decision. An automatic run never replaces an admin's override
(the newest row decides); it adds a row only where the automatic outcome changed.

Nothing is deleted. A not-used submission's ratings stay active (so "all ratings" analyses keep
them) until an admin reopens its items for other participants: the schema allows raters-per-item
active ratings per item, so reopening sets them aside (inactive, their ids kept in the decision's
criteria as `set_aside`, still in the "all ratings" table) and frees their assignments' slots
(review.labeling.assignment.set_aside_assignments).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import (
    BlockedParticipant,
    CleansingDecision,
    Participant,
    ParticipantProbe,
    RaterPool,
    Rating,
    StudyItem,
)
from review.accounts.audit import record
from review.analysis.cleansing import GOLD, LIVE, TRAP, Cleansing, CleansingRules, cleanse
from review.analysis.pools_compared import PoolCosts
from review.enums import CleansingOutcome, ParticipantStage, ProbePhase
from review.errors import ReviewError
from review.labeling.assignment import restore_set_aside, set_aside_assignments

MAX_REASON = 500


class CleansingStoreError(ReviewError):
    """A cleansing decision cannot be made as asked; the message says why."""


def _participants(session: Session, study_id: int) -> list[Participant]:
    return list(session.scalars(select(Participant).join(RaterPool, RaterPool.id == Participant.pool_id)
                                .where(RaterPool.study_id == study_id).order_by(Participant.id)))


def submissions_frame(session: Session, study_id: int) -> pd.DataFrame:
    """One row per live rating and trap answer of the study's finished crowd submissions, in the
    columns review.analysis.cleansing needs (plus `rating_id`, `pool_id`)."""
    finished = {p.user_id: p for p in _participants(session, study_id)
                if p.stage == ParticipantStage.COMPLETED}
    rows: list[dict[str, object]] = []
    if finished:
        ratings = session.execute(
            select(Rating.id, Rating.reviewer_id, Rating.item_id, Rating.score, Rating.time_taken_ms,
                   StudyItem.is_gold, StudyItem.expected_min, StudyItem.expected_max)
            .join(StudyItem, StudyItem.id == Rating.item_id)
            .where(StudyItem.study_id == study_id, Rating.active.is_(True),
                   Rating.reviewer_id.in_(list(finished)))).all()
        for rid, user_id, item_id, score, ms, is_gold, lo, hi in ratings:
            p = finished[user_id]
            gold = bool(is_gold) and lo is not None
            rows.append({"submission": p.id, "rater": p.id, "item": item_id, "score": score,
                         "seconds": math.nan if ms is None else ms / 1000, "kind": GOLD if gold else LIVE,
                         "expected_min": lo if gold else math.nan, "expected_max": hi if gold else math.nan,
                         "rating_id": rid, "pool_id": p.pool_id})
        traps = session.scalars(select(ParticipantProbe).where(
            ParticipantProbe.participant_id.in_([p.id for p in finished.values()]),
            ParticipantProbe.phase == ProbePhase.TRAP.value, ParticipantProbe.answered_at.is_not(None)))
        by_id = {p.id: p for p in finished.values()}
        for t in traps:
            seconds = (t.details or {}).get("seconds")
            rows.append({"submission": t.participant_id, "rater": t.participant_id, "item": f"trap-{t.id}",
                         "score": t.answer, "seconds": math.nan if seconds is None else float(seconds),
                         "kind": TRAP, "expected_min": t.expected_min, "expected_max": t.expected_max,
                         "rating_id": None, "pool_id": by_id[t.participant_id].pool_id})
    return pd.DataFrame(rows, columns=["submission", "rater", "item", "score", "seconds", "kind",
                                       "expected_min", "expected_max", "rating_id", "pool_id"])


def current_decisions(session: Session, study_id: int) -> dict[int, CleansingDecision]:
    """participant id -> their newest decision (participants of the study's pools)."""
    ids = [p.id for p in _participants(session, study_id)]
    out: dict[int, CleansingDecision] = {}
    if ids:
        for d in session.scalars(select(CleansingDecision).where(CleansingDecision.participant_id.in_(ids))
                                 .order_by(CleansingDecision.id)):
            out[d.participant_id] = d
    return out


#: The criteria a decision stores, in the cleansing report's order (review.analysis.crowd_exports).
CRITERIA = ("live_items", "traps", "trap_failures", "gold_items", "gold_accuracy", "score_variance",
            "others_variance", "median_seconds", "bt500_rejected", "ds_accuracy", "consensus_r",
            "outlier_ratings", "forgiven")


def _criteria(row: pd.Series, outliers: list[int]) -> dict[str, object]:
    out: dict[str, object] = {}
    for k in (*CRITERIA, "platform_feedback"):
        v = row[k]
        out[k] = None if isinstance(v, float) and math.isnan(v) else (v.item() if hasattr(v, "item") else v)
    out["outlier_rating_ids"] = outliers
    return out


def run_cleansing(session: Session, study_id: int, rules: CleansingRules | None = None, *,
                  actor_id: int | None = None) -> Cleansing | None:
    """Cleanse the study's finished submissions and store what changed (audited); None when
    there is nothing to cleanse yet."""
    frame = submissions_frame(session, study_id)
    if frame.empty:
        return None
    result = cleanse(frame, rules or CleansingRules())
    live = frame["kind"] == LIVE
    unused = frame[live & ~result.used]
    outliers = unused.groupby("submission")["rating_id"].agg(list).to_dict()
    current = current_decisions(session, study_id)
    changed = 0
    for _i, row in result.submissions.iterrows():
        pid = int(row["submission"])
        before = current.get(pid)
        if before is not None and before.decided_by is not None:
            continue  # an admin decided: automatic runs leave it
        used_sub = row["outcome"] == CleansingOutcome.ACCEPT_USE
        ids = [int(r) for r in outliers.get(row["submission"], [])] if used_sub else []
        criteria = {**_criteria(row, ids), "rules": result.rules.as_dict()}
        if before is not None and before.outcome == row["outcome"] and before.reasons == row["reasons"] \
                and (before.criteria or {}).get("outlier_rating_ids") == ids:
            continue
        session.add(CleansingDecision(participant_id=pid, outcome=row["outcome"], reasons=row["reasons"],
                                      criteria=criteria, decided_by=None))
        changed += 1
    session.flush()
    record(session, "cleansing.decide", actor_id=actor_id, target=f"study {study_id}",
           submissions=len(result.submissions), changed=changed)
    return result


def override(session: Session, participant_id: int, outcome: str, reason: str, *,
             actor_id: int) -> CleansingDecision:
    """An admin's decision for one submission, with their reason (audited); it stands until the
    next override."""
    if outcome not in set(CleansingOutcome):
        raise CleansingStoreError(f"A decision is one of {', '.join(CleansingOutcome)} (got {outcome!r}).")
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON:
        raise CleansingStoreError(f"Say why in a reason of 1-{MAX_REASON} characters.")
    p = session.get(Participant, participant_id)
    if p is None:
        raise CleansingStoreError(f"No participant {participant_id}.")
    before = session.scalar(select(CleansingDecision).where(CleansingDecision.participant_id == p.id)
                            .order_by(CleansingDecision.id.desc()).limit(1))
    criteria = dict(before.criteria or {}) if before is not None else {}
    set_aside = list(criteria.get("set_aside") or [])
    if outcome == CleansingOutcome.ACCEPT_USE and set_aside:
        set_aside = restore_set_aside(session, set_aside)
    criteria["set_aside"] = set_aside
    decision = CleansingDecision(participant_id=p.id, outcome=outcome, reasons=reason, criteria=criteria,
                                 decided_by=actor_id)
    session.add(decision)
    session.flush()
    record(session, "cleansing.override", actor_id=actor_id, target=f"participant {p.id}", outcome=outcome,
           reason=reason)
    return decision


def block(session: Session, participant_id: int, reason: str, *, actor_id: int | None) -> None:
    """Put the participant's platform id on the block list (audited): no pool admits it again."""
    p = session.get(Participant, participant_id)
    if p is None:
        raise CleansingStoreError(f"No participant {participant_id}.")
    pool = session.get(RaterPool, p.pool_id)
    assert pool is not None
    exists = session.scalar(select(BlockedParticipant.id).where(
        BlockedParticipant.platform == pool.platform,
        BlockedParticipant.platform_id_hash == p.platform_id_hash))
    if exists is None:
        session.add(BlockedParticipant(platform=pool.platform, platform_id_hash=p.platform_id_hash,
                                       participant_id=p.id, reason=reason.strip()[:MAX_REASON],
                                       blocked_by=actor_id))
        record(session, "participant.block", actor_id=actor_id, target=f"participant {p.id}")


@dataclass(frozen=True)
class Reopened:
    submissions: int
    ratings_set_aside: int
    rating_ids: frozenset[int] = frozenset()  # the ratings this reopening set aside


def reopen(session: Session, study_id: int, *, actor_id: int | None = None) -> Reopened:
    """Free the items of every not-used submission for other participants (see the module note)."""
    submissions, ratings = 0, set[int]()
    for pid, d in current_decisions(session, study_id).items():
        if d.outcome == CleansingOutcome.ACCEPT_USE:
            continue
        p = session.get(Participant, pid)
        assert p is not None
        aside = set_aside_assignments(session, study_id, p.user_id)
        if not aside:
            continue
        criteria = dict(d.criteria or {})
        criteria["set_aside"] = sorted({*criteria.get("set_aside", []), *aside})
        session.add(CleansingDecision(participant_id=pid, outcome=d.outcome, reasons=d.reasons,
                                      criteria=criteria, decided_by=d.decided_by))
        submissions, ratings = submissions + 1, ratings | set(aside)
    session.flush()
    record(session, "cleansing.decide", actor_id=actor_id, target=f"study {study_id}", reopened=submissions,
           set_aside=len(ratings))
    return Reopened(submissions, len(ratings), frozenset(ratings))


def unused_rating_ids(session: Session, study_id: int,
                      decisions: Mapping[int, CleansingDecision] | None = None) -> set[int]:
    """Ratings the "used ratings only" analyses leave out: every rating of a submission whose
    decision is not accept-and-use, and the outlier ratings of used ones (`decisions`: the
    study's current decisions when the caller has read them already)."""
    out: set[int] = set()
    decisions = current_decisions(session, study_id) if decisions is None else decisions
    not_used = [pid for pid, d in decisions.items() if d.outcome != CleansingOutcome.ACCEPT_USE]
    if not_used:
        users = list(session.scalars(select(Participant.user_id).where(Participant.id.in_(not_used))))
        out |= set(session.scalars(select(Rating.id).join(StudyItem, StudyItem.id == Rating.item_id)
                                   .where(StudyItem.study_id == study_id, Rating.reviewer_id.in_(users))))
    for d in decisions.values():
        if d.outcome == CleansingOutcome.ACCEPT_USE:
            out |= {int(i) for i in (d.criteria or {}).get("outlier_rating_ids") or []}
    return out


def set_aside_rating_ids(session: Session, study_id: int,
                         decisions: Mapping[int, CleansingDecision] | None = None) -> set[int]:
    """Ratings set aside to reopen their items (inactive, still the study's ratings)."""
    decisions = current_decisions(session, study_id) if decisions is None else decisions
    return {int(i) for d in decisions.values() for i in (d.criteria or {}).get("set_aside") or []}


def pool_costs(session: Session, study_id: int) -> dict[str, PoolCosts]:
    """Each of the study's pools' pay and how its finished submissions fared, by pool name."""
    decisions = current_decisions(session, study_id)
    out: dict[str, PoolCosts] = {}
    for pool in session.scalars(select(RaterPool).where(RaterPool.study_id == study_id)):
        finished = [p for p in session.scalars(select(Participant).where(Participant.pool_id == pool.id))
                    if p.stage == ParticipantStage.COMPLETED]
        outcomes = [decisions[p.id].outcome for p in finished if p.id in decisions]
        paid_users = [p.user_id for p in finished
                      if p.id in decisions and decisions[p.id].outcome != CleansingOutcome.REJECT]
        # Every item they rated is paid, set aside or not; a QA correction is not another item.
        paid_items = session.scalar(
            select(func.count(Rating.id)).join(StudyItem, StudyItem.id == Rating.item_id)
            .where(StudyItem.study_id == study_id, Rating.reviewer_id.in_(paid_users),
                   Rating.supersedes_id.is_(None))) if paid_users else 0
        out[pool.name] = PoolCosts(
            pay_per_item=pool.pay_per_item, pay_per_session=pool.pay_per_session, currency=pool.currency,
            submissions=len(finished), used_submissions=outcomes.count(CleansingOutcome.ACCEPT_USE),
            paid_submissions=sum(o != CleansingOutcome.REJECT for o in outcomes),
            paid_items=int(paid_items or 0))
    return out
