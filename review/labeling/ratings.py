"""Recording fidelity ratings: submit, skip, undo. Append-only and idempotent.

- A resubmit with the same `client_token` (double click, network retry) returns the first rating.
- Undo retracts the reviewer's last rating (its row stays, `active` cleared) and re-leases the
  item; the next rating of that item supersedes the retracted one, so history is auditable.
- A rating on an assignment whose lease expired is still accepted while the item has a free slot;
  when another reviewer has taken the slot the caller gets `StaleAssignment` with a clear message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session, aliased

from db.models import Assignment, Rating, Study, StudyItem, StudyReviewer, utcnow
from review.errors import ReviewError
from review.labeling.assignment import _as_aware, live_assignment_filter, reclaim_slot
from review.labeling.cohorts import CohortError, add_finished, ensure_enrolled

FLAGS = ("identity_changed", "invented_detail", "text_changed", "artifacts", "still_blurry")
FLAG_LABELS = {
    "identity_changed": "Identity changed",
    "invented_detail": "Invented detail",
    "text_changed": "Text changed",
    "artifacts": "Artifacts",
    "still_blurry": "Still blurry",
}
SKIP_REASONS = ("image did not load", "cannot judge", "offensive or private content", "other")
MAX_COMMENT = 2000
# Built once: a fresh aliased() per submit cost ~1.5 ms adapting its columns (bench/rating_loop.py).
_NEWER = aliased(Rating)


class RatingError(ReviewError):
    """The rating cannot be recorded as given; the message says what to change."""


class StaleAssignment(RatingError):
    """The item is no longer this reviewer's (lease expired and the slot went to someone else)."""

    level = "warning"  # not the reviewer's mistake: the page moves on to the next item


@dataclass(frozen=True)
class Submission:
    score: int
    flags: tuple[str, ...] = ()
    comment: str = ""
    time_taken_ms: int | None = None
    client_token: str | None = None


def _load_assignment(session: Session, assignment_id: int, reviewer_id: int) -> tuple[Assignment, Study]:
    assignment = session.get(Assignment, assignment_id, with_for_update=True)
    if assignment is None or assignment.reviewer_id != reviewer_id:
        raise StaleAssignment("This item is not assigned to you any more. Loading your next item.")
    item = session.get(StudyItem, assignment.item_id)
    return assignment, session.get(Study, item.study_id)


def _validate(study: Study, sub: Submission) -> None:
    if not isinstance(sub.score, int) or not study.scale_min <= sub.score <= study.scale_max:
        raise RatingError(f"Pick a score from {study.scale_min} to {study.scale_max}.")
    unknown = set(sub.flags) - set(FLAGS)
    if unknown:
        raise RatingError(f"Unknown flags: {', '.join(sorted(unknown))}.")
    if len(sub.comment) > MAX_COMMENT:
        raise RatingError(f"The comment is {len(sub.comment)} characters; the limit is {MAX_COMMENT}.")
    if sub.time_taken_ms is not None and sub.time_taken_ms < 0:
        raise RatingError("time_taken_ms cannot be negative.")


def submit(session: Session, assignment_id: int, reviewer_id: int, sub: Submission,
           now: datetime | None = None) -> Rating:
    """Record a rating for a leased (or retracted-and-re-leased) assignment."""
    now = now or utcnow()
    if sub.client_token:
        earlier = session.scalar(select(Rating).where(Rating.client_token == sub.client_token))
        if earlier is not None:
            if earlier.reviewer_id != reviewer_id:
                raise RatingError("This submission token belongs to another reviewer.")
            return earlier
    assignment, study = _load_assignment(session, assignment_id, reviewer_id)
    _validate(study, sub)
    if assignment.status == "done":
        active = _active_rating(session, assignment.item_id, reviewer_id)
        if active is not None:
            raise RatingError("You already rated this item. Use Undo to change your last rating.")
    if assignment.status == "skipped":
        raise StaleAssignment("You skipped this item. Loading your next item.")
    expires = _as_aware(assignment.lease_expires_at)
    if assignment.status == "expired" or (expires is not None and expires <= now):
        others = session.scalar(
            select(func.count()).select_from(Assignment).where(
                Assignment.item_id == assignment.item_id, Assignment.id != assignment.id,
                live_assignment_filter(now)))
        if others >= study.raters_per_item:
            raise StaleAssignment(
                "Your time on this item ran out and it went to another reviewer, so this rating "
                "was not needed. Your next item is loading.")
    # Its lease expired and another claim released its slot.
    if assignment.slot is None and not reclaim_slot(session, study, assignment, now):
        raise StaleAssignment("This item went to other reviewers meanwhile. Your next item is loading.")
    member = _member(session, study, reviewer_id)
    retracted = session.scalar(
        select(Rating).where(Rating.item_id == assignment.item_id, Rating.reviewer_id == reviewer_id,
                             Rating.active.is_(False), Rating.source == "reviewer",
                             ~exists().where(_NEWER.supersedes_id == Rating.id))
        .order_by(Rating.id.desc()).limit(1))
    rating = Rating(
        item_id=assignment.item_id,
        reviewer_id=reviewer_id,
        author_id=reviewer_id,
        source="reviewer",
        score=sub.score,
        flags=sorted(set(sub.flags)),
        comment=sub.comment.strip(),
        guideline_version_id=member.guideline_version_id,
        time_taken_ms=sub.time_taken_ms,
        active=True,
        supersedes_id=retracted.id if retracted is not None else None,
        client_token=sub.client_token,
        created_at=now,
    )
    session.add(rating)
    if assignment.status != "done":
        add_finished(member, +1)
    assignment.status, assignment.completed_at = "done", now
    session.flush()
    return rating


def _member(session: Session, study: Study, reviewer_id: int) -> StudyReviewer:
    """The reviewer's cohort row: their guideline version and finished-items counter."""
    try:
        return ensure_enrolled(session, study, reviewer_id)
    except CohortError as exc:
        raise RatingError(str(exc)) from exc


def _active_rating(session: Session, item_id: int, reviewer_id: int) -> Rating | None:
    return session.scalar(select(Rating).where(
        Rating.item_id == item_id, Rating.reviewer_id == reviewer_id, Rating.active.is_(True)))


def skip(session: Session, assignment_id: int, reviewer_id: int, reason: str,
         now: datetime | None = None) -> Assignment:
    """Give the item back with a reason; it goes to another reviewer."""
    if not reason.strip():
        raise RatingError("Say why you skip (pick a reason).")
    assignment, study = _load_assignment(session, assignment_id, reviewer_id)
    if assignment.status == "skipped":
        return assignment
    if assignment.status == "done":
        raise RatingError("You already rated this item.")
    add_finished(_member(session, study, reviewer_id), +1)
    assignment.status, assignment.skip_reason, assignment.slot = "skipped", reason.strip()[:200], None
    assignment.completed_at = now or utcnow()
    session.flush()
    return assignment


def undo_last(
    session: Session, study: Study, reviewer_id: int, now: datetime | None = None
) -> Assignment | None:
    """Retract the reviewer's most recent active rating in the study and hand the item back."""
    now = now or utcnow()
    last = session.scalar(
        select(Rating).join(StudyItem, StudyItem.id == Rating.item_id)
        .where(StudyItem.study_id == study.id, Rating.reviewer_id == reviewer_id,
               Rating.author_id == reviewer_id, Rating.active.is_(True))
        .order_by(Rating.created_at.desc(), Rating.id.desc()).limit(1))
    if last is None:
        return None
    last.active = False
    assignment = session.scalar(select(Assignment).where(
        Assignment.item_id == last.item_id, Assignment.reviewer_id == reviewer_id))
    # Release any other lease the reviewer holds so the undone item comes back first.
    for other in session.scalars(select(Assignment).join(StudyItem).where(
            StudyItem.study_id == study.id, Assignment.reviewer_id == reviewer_id,
            Assignment.status == "leased", Assignment.id != assignment.id)):
        other.status, other.slot = "expired", None
    if assignment.status in ("done", "skipped"):
        add_finished(_member(session, study, reviewer_id), -1)
    # A skipped item given back needs a slot again.
    if assignment.slot is None and not reclaim_slot(session, study, assignment, now):
        raise RatingError("This item went to other reviewers meanwhile; it cannot be rated again.")
    assignment.status, assignment.completed_at = "leased", None
    assignment.leased_at = now
    assignment.lease_expires_at = now + timedelta(minutes=study.lease_minutes)
    session.flush()
    return assignment


def history(session: Session, item_id: int, reviewer_id: int) -> list[Rating]:
    """Every rating row for one (item, reviewer), oldest first: the audit trail."""
    return list(session.scalars(select(Rating).where(
        Rating.item_id == item_id, Rating.reviewer_id == reviewer_id).order_by(Rating.id)))
