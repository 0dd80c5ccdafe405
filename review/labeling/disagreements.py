"""Disagreements and their settlement: the items whose active ratings spread most, with every
rater's score, flags and comment side by side, and the settlement an admin or QA reviewer records
for one (a note, optionally a corrected consensus score). A settlement never touches the ratings:
it is a row of its own beside them (`ItemSettlement`), the newest per item counts, and the
exports carry it next to the original scores.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import ItemSettlement, Rating, StudyItem, User
from review.accounts.audit import record
from review.accounts.check import require_account
from review.errors import ReviewError
from review.labeling.study import study_by_id
from review.policy import Action, roles_for

SETTLER_ROLES = roles_for(Action.DISAGREEMENTS_SETTLE)
MAX_NOTE = 2000


class SettlementError(ReviewError):
    """A settlement that cannot be recorded as given; the message says what to change."""


@dataclass(frozen=True)
class RaterScore:
    rater: str
    score: int
    flags: tuple[str, ...]
    comment: str
    source: str  # "reviewer", or "qa" for a QA correction


@dataclass(frozen=True)
class Settlement:
    consensus_score: int | None
    note: str
    settled_by: str
    settled_at: datetime


@dataclass(frozen=True)
class Disagreement:
    item_id: int
    scores: tuple[RaterScore, ...]
    mean: float
    spread: int  # max - min
    sd: float  # sample standard deviation
    settlement: Settlement | None


def latest_settlements(session: Session, study_id: int) -> dict[int, Settlement]:
    """The newest settlement of each settled item of the study, by item id."""
    rows = session.execute(
        select(ItemSettlement, User.username).join(StudyItem, StudyItem.id == ItemSettlement.item_id)
        .join(User, User.id == ItemSettlement.settled_by)
        .where(StudyItem.study_id == study_id).order_by(ItemSettlement.id)).all()
    return {row.item_id: Settlement(row.consensus_score, row.note, username, row.created_at)
            for row, username in rows}


def disagreements(session: Session, study_id: int, *, min_spread: int = 1, limit: int = 50,
                  pseudonymise: bool = False) -> list[Disagreement]:
    """Items with at least two active ratings whose scores differ by `min_spread` or more, widest
    spread (then standard deviation) first. `pseudonymise` names raters "rater 1", "rater 2" ...
    per item (QA reviewers never see who rated)."""
    study_by_id(session, study_id)
    rows = session.execute(
        select(Rating.item_id, User.username, Rating.score, Rating.flags, Rating.comment, Rating.source)
        .join(StudyItem, StudyItem.id == Rating.item_id).join(User, User.id == Rating.reviewer_id)
        .where(StudyItem.study_id == study_id, Rating.active.is_(True))
        .order_by(Rating.item_id, User.username)).all()
    by_item: dict[int, list[RaterScore]] = {}
    for item_id, rater, score, flags, comment, source in rows:
        scores = by_item.setdefault(item_id, [])
        name = f"rater {len(scores) + 1}" if pseudonymise else rater
        scores.append(RaterScore(name, score, tuple(flags or ()), comment or "", source))
    settled = latest_settlements(session, study_id)
    out = []
    for item_id, scores in by_item.items():
        values = [s.score for s in scores]
        spread = max(values) - min(values)
        if len(values) < 2 or spread < min_spread:
            continue
        out.append(Disagreement(item_id, tuple(scores), statistics.fmean(values), spread,
                                statistics.stdev(values), settled.get(item_id)))
    out.sort(key=lambda d: (-d.spread, -d.sd, d.item_id))
    return out[:limit]


def settle_item(session: Session, item_id: int, user_id: int, *, note: str,
                consensus_score: int | None = None) -> ItemSettlement:
    """Record an admin's or QA reviewer's settlement of an item: a note (required, it says why)
    and optionally the consensus score the study should use; the ratings stay as they are."""
    require_account(session, user_id, SETTLER_ROLES, action="settle items")
    item = session.get(StudyItem, item_id)
    if item is None:
        raise SettlementError(f"There is no item {item_id}.")
    note = note.strip()
    if not note:
        raise SettlementError("Write a note saying how the item was settled.")
    if len(note) > MAX_NOTE:
        raise SettlementError(f"The note is {len(note)} characters; the limit is {MAX_NOTE}.")
    study = item.study
    if consensus_score is not None and (isinstance(consensus_score, bool) or not isinstance(
            consensus_score, int) or not study.scale_min <= consensus_score <= study.scale_max):
        raise SettlementError(f"Pick a consensus score from {study.scale_min} to {study.scale_max}, "
                              "or none to leave only a note.")
    row = ItemSettlement(item_id=item_id, settled_by=user_id, consensus_score=consensus_score, note=note)
    session.add(row)
    session.flush()
    record(session, "study.settle", actor_id=user_id, target=f"item {item_id}", study=study.name,
           consensus_score=consensus_score, note=note)
    return row
