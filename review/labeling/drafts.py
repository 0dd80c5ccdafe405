"""The reviewer's unsent answer (score, flags, comment), kept server-side per reviewer and
assignment: it survives a reload, a lost session or a server restart, and never lives in the URL or
the browser history. Submitting or skipping the item deletes it (review.labeling.ratings);
reopening a rating puts the rating's values back into it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Assignment, RatingDraft, Study, StudyItem, utcnow
from review.accounts.check import require_account
from review.enums import AssignmentStatus
from review.labeling.ratings import FLAGS, MAX_COMMENT, RatingError


@dataclass(frozen=True)
class Draft:
    score: int | None
    flags: tuple[str, ...]
    comment: str


def load_draft(session: Session, assignment_id: int, reviewer_id: int) -> Draft | None:
    """The saved draft for this assignment, or None."""
    row = session.scalar(select(RatingDraft).where(RatingDraft.assignment_id == assignment_id,
                                                   RatingDraft.reviewer_id == reviewer_id))
    if row is None:
        return None
    return Draft(row.score, tuple(f for f in row.flags or [] if f in FLAGS), row.comment or "")


def save_draft(session: Session, assignment_id: int, reviewer_id: int, draft: Draft,
               now: datetime | None = None) -> None:
    """Keep the reviewer's answer so far for their current (leased) item, whole: a comment over
    the limit is refused with its length, never cut."""
    require_account(session, reviewer_id)
    assignment = session.get(Assignment, assignment_id)
    if (assignment is None or assignment.reviewer_id != reviewer_id
            or assignment.status != AssignmentStatus.LEASED):
        raise RatingError("This item is not yours to rate any more; the draft was not kept.")
    study = session.execute(select(Study).join(StudyItem, StudyItem.study_id == Study.id)
                            .where(StudyItem.id == assignment.item_id)).scalar_one()
    if draft.score is not None and not study.scale_min <= draft.score <= study.scale_max:
        raise RatingError(f"Pick a score from {study.scale_min} to {study.scale_max}.")
    if set(draft.flags) - set(FLAGS):
        raise RatingError(f"Unknown flags: {', '.join(sorted(set(draft.flags) - set(FLAGS)))}.")
    if len(draft.comment) > MAX_COMMENT:
        raise RatingError(f"The comment is {len(draft.comment)} characters; the limit is {MAX_COMMENT}.")
    row = session.scalar(select(RatingDraft).where(RatingDraft.assignment_id == assignment_id,
                                                   RatingDraft.reviewer_id == reviewer_id))
    if row is None:
        row = RatingDraft(assignment_id=assignment_id, reviewer_id=reviewer_id)
        session.add(row)
    row.score, row.flags, row.comment = draft.score, sorted(set(draft.flags)), draft.comment
    row.updated_at = now or utcnow()
    session.flush()
