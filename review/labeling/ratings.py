"""Recording fidelity ratings: submit, skip, undo. Append-only and idempotent.

- A resubmit with the same `client_token` (double click, network retry) returns the first rating.
- Undo corrects the reviewer's own last answer, once: it retracts their last rating (its row
  stays, `active` cleared) or takes back their last skip, and re-leases the item; the next rating
  of that item supersedes the retracted one, so history is auditable. Pressing it again while that
  item is reopened changes nothing (no walk back through history). `reopen` does the same for one
  of the reviewer's recent items (the history list). A rating QA has judged stays as it is.
- Every write checks that the reviewer's account is still active (review.accounts.check) and, for a
  signed-in browser (`signed`), that its session is still live and its role one that rates
  (`review.accounts.sessions.require_session`, in the write's transaction; the hot path's SQL checks the
  same): a tab left open after a logout, role change, password reset or deactivation stores nothing.
- An item this reviewer already rated in another tab is not rated twice: that tab's submit (or
  skip) moves on to the next item (`AlreadyRated`), and its Undo never withdraws the other tab's
  answer (`answered_here`).
- A rating on an assignment whose lease expired is still accepted while the item has a free slot;
  when another reviewer has taken the slot the caller gets `StaleAssignment` with a clear message.
- On PostgreSQL a plain submit (a live lease, a fresh token) is one hand-written statement
  (review.labeling.hotpath); anything else goes through the ORM code here.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, and_, delete, exists, func, null, select
from sqlalchemy.orm import Session, aliased, make_transient_to_detached

from db.models import (
    Assignment,
    QAVerdict,
    Rating,
    RatingDraft,
    Study,
    StudyItem,
    StudyReviewer,
    User,
    utcnow,
)
from review.accounts.audit import rating_details, record
from review.accounts.check import check_account, require_account
from review.accounts.sessions import SIGNED_OUT, SessionEnded, SignedIn, require_session
from review.enums import ANSWERED, AssignmentStatus, RatingSource
from review.errors import ReviewError
from review.labeling import hotpath
from review.labeling.assignment import (
    _as_aware,
    live_assignment_filter,
    lock_row,
    reclaim_slot,
)
from review.labeling.cohorts import CohortError, add_finished, ensure_enrolled
from review.policy import Action, roles_for

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
NOT_YOURS = "This item is not assigned to you any more. Loading your next item."
#: The roles whose ratings count: reviewers' (the Rate page) and crowd participants' live items.
RATER_ROLES = (*roles_for(Action.RATE), *roles_for(Action.PARTICIPATE))
RATED_ELSEWHERE = ("You already rated this item in another tab, so this answer was not saved. "
                   "Here is your next item.")
JUDGED = "QA has already judged your rating of this item, so it stays as it is. Ask QA if you disagree."
UNDO_ELSEWHERE = ("Your last answer was given in another tab (or before this page was reloaded), so "
                  "Undo here leaves it alone. Change it in that tab, or reopen it from "
                  "'Your recent answers'.")
# Built once: a fresh aliased() per submit cost ~1.5 ms adapting its columns (bench/rating_loop.py).
_NEWER = aliased(Rating)


class RatingError(ReviewError):
    """The rating cannot be recorded as given; the message says what to change."""


class StaleAssignment(RatingError):
    """The item is no longer this reviewer's (lease expired and the slot went to someone else)."""

    level = "warning"  # not the reviewer's mistake: the page moves on to the next item


class AlreadyRated(StaleAssignment):
    """The reviewer answered this item already (in another tab): the page moves on."""


def require_rater(session: Session, reviewer_id: int, signed: SignedIn | None) -> None:
    """The check every rating write starts with: the signed-in browser's session is live, its
    account active and a rater's (`signed`), or, for a caller without a browser session, the
    account is active."""
    if signed is None:
        require_account(session, reviewer_id)
        return
    if signed.user_id != reviewer_id:
        raise SessionEnded(SIGNED_OUT)
    require_session(session, signed, RATER_ROLES)


@dataclass(frozen=True)
class Submission:
    score: int
    flags: tuple[str, ...] = ()
    comment: str = ""
    time_taken_ms: int | None = None
    client_token: str | None = None


def _load_assignment(session: Session, assignment_id: int, reviewer_id: int,
                     signed: SignedIn | None) -> tuple[Assignment, Study]:
    require_rater(session, reviewer_id, signed)
    assignment = session.get(Assignment, assignment_id, with_for_update=True)
    if assignment is None or assignment.reviewer_id != reviewer_id:
        raise StaleAssignment(NOT_YOURS)
    item = session.get_one(StudyItem, assignment.item_id)
    return assignment, session.get_one(Study, item.study_id)


@dataclass(frozen=True)
class _Context:
    """What a submit needs, read in one statement: the assignment (already locked), its study, the
    reviewer's cohort row (None before they joined) and account, the rating an Undo retracted (it
    is superseded) and any rating already sent with the same client token."""

    assignment: Assignment
    study: Study
    member: StudyReviewer | None
    user: User  # held here, so it stays in the session's (weak) identity map for the audit entry
    retracted_id: int | None
    earlier_id: int | None


def _context(session: Session, assignment_id: int, reviewer_id: int, token: str | None) -> _Context | None:
    """One round trip instead of seven (bench/load.py: PostgreSQL claim+submit p50). The user row
    comes as an entity, so the audit entry's actor name is found in the session, not queried."""
    retracted = (select(Rating.id).where(
        Rating.item_id == Assignment.item_id, Rating.reviewer_id == reviewer_id, Rating.active.is_(False),
        Rating.source == RatingSource.REVIEWER, ~exists().where(_NEWER.supersedes_id == Rating.id))
        .order_by(Rating.id.desc()).limit(1).scalar_subquery())
    earlier = (select(Rating.id).where(Rating.client_token == token).scalar_subquery() if token
               else null())
    row = session.execute(
        select(Assignment, Study, User, StudyReviewer, retracted, earlier)
        .join(StudyItem, StudyItem.id == Assignment.item_id)
        .join(Study, Study.id == StudyItem.study_id)
        .join(User, User.id == reviewer_id)
        .outerjoin(StudyReviewer, and_(StudyReviewer.study_id == Study.id,
                                       StudyReviewer.reviewer_id == reviewer_id))
        .where(Assignment.id == assignment_id)
        .execution_options(populate_existing=True)).first()  # as locked, not as loaded before
    if row is None:
        return None
    assignment, study, user, member, retracted_id, earlier_id = row
    return _Context(assignment, study, member, user, retracted_id, earlier_id)


def _validate(study: Study, sub: Submission) -> None:
    if not isinstance(sub.score, int) or not study.scale_min <= sub.score <= study.scale_max:
        raise RatingError(f"Pick a score from {study.scale_min} to {study.scale_max}.")
    problem = _field_problem(sub)
    if problem is not None:
        raise RatingError(problem)


def _field_problem(sub: Submission) -> str | None:
    """What is wrong with the submission apart from its score (the study's scale), if anything."""
    unknown = set(sub.flags) - set(FLAGS)
    if unknown:
        return f"Unknown flags: {', '.join(sorted(unknown))}."
    if len(sub.comment) > MAX_COMMENT:
        return f"The comment is {len(sub.comment)} characters; the limit is {MAX_COMMENT}."
    if sub.time_taken_ms is not None and sub.time_taken_ms < 0:
        return "time_taken_ms cannot be negative."
    return None


def submit(session: Session, assignment_id: int, reviewer_id: int, sub: Submission,
           now: datetime | None = None, *, signed: SignedIn | None = None) -> Rating:
    """Record a rating for a leased (or retracted-and-re-leased) assignment; with `signed` (the
    Rate page) only while that browser session is live (`require_rater`)."""
    now = now or utcnow()
    if _plain(sub) and hotpath.applies(session) and (signed is None or signed.user_id == reviewer_id):
        rating = _submit_fast(session, assignment_id, reviewer_id, sub, now, signed)
        if rating is not None:
            return rating
    if signed is not None:
        require_rater(session, reviewer_id, signed)
    lock_row(session, Assignment, assignment_id)
    found = _context(session, assignment_id, reviewer_id, sub.client_token)
    if sub.client_token and (found is None or found.earlier_id is not None):
        earlier = session.scalar(select(Rating).where(Rating.client_token == sub.client_token))
        if earlier is not None:
            if earlier.reviewer_id != reviewer_id:
                raise RatingError("This submission token belongs to another reviewer.")
            return earlier
    if found is None:
        require_account(session, reviewer_id)
    else:
        check_account(found.user.active, found.user.role)
    if found is None or found.assignment.reviewer_id != reviewer_id:
        raise StaleAssignment(NOT_YOURS)
    assignment, study = found.assignment, found.study
    _validate(study, sub)
    if assignment.status == AssignmentStatus.DONE:
        active = _active_rating(session, assignment.item_id, reviewer_id)
        if active is not None:  # another tab's submit (a retry of this one returned above)
            raise AlreadyRated(RATED_ELSEWHERE)
    if assignment.status == AssignmentStatus.SKIPPED:
        raise StaleAssignment("You skipped this item. Loading your next item.")
    expires = _as_aware(assignment.lease_expires_at)
    if assignment.status == AssignmentStatus.EXPIRED or (expires is not None and expires <= now):
        others = session.execute(
            select(func.count()).select_from(Assignment).where(
                Assignment.item_id == assignment.item_id, Assignment.id != assignment.id,
                live_assignment_filter(now))).scalar_one()
        if others >= study.raters_per_item:
            raise StaleAssignment(
                "Your time on this item ran out and it went to another reviewer, so this rating "
                "was not needed. Your next item is loading.")
    # Its lease expired and another claim released its slot.
    if assignment.slot is None and not reclaim_slot(session, study, assignment, now):
        raise StaleAssignment("This item went to other reviewers meanwhile. Your next item is loading.")
    member = found.member or _member(session, study, reviewer_id)
    rating = Rating(
        item_id=assignment.item_id,
        reviewer_id=reviewer_id,
        author_id=reviewer_id,
        source=RatingSource.REVIEWER,
        score=sub.score,
        flags=sorted(set(sub.flags)),
        comment=sub.comment.strip(),
        guideline_version_id=member.guideline_version_id,
        time_taken_ms=sub.time_taken_ms,
        active=True,
        supersedes_id=found.retracted_id,
        client_token=sub.client_token,
        created_at=now,
    )
    session.add(rating)
    if assignment.status != AssignmentStatus.DONE:
        add_finished(member, +1)
    assignment.status, assignment.completed_at = AssignmentStatus.DONE, now
    assignment.skip_reason = None  # a skip taken back and now rated
    _drop_draft(session, assignment.id, reviewer_id)
    session.flush()
    record(session, "rating.supersede" if rating.supersedes_id else "rating.submit", actor_id=reviewer_id,
           **rating_details(rating.item_id, study.name, rating.score, rating.id))
    return rating


def _plain(sub: Submission) -> bool:
    """A submission `_validate` accepts whatever the study's scale (the hot path checks that),
    with the integers the hot path's SQL takes."""
    return (type(sub.score) is int and (sub.time_taken_ms is None or type(sub.time_taken_ms) is int)
            and _field_problem(sub) is None)


def _submit_fast(session: Session, assignment_id: int, reviewer_id: int, sub: Submission,
                 now: datetime, signed: SignedIn | None) -> Rating | None:
    """`submit` in one statement (PostgreSQL, review.labeling.hotpath) for a live lease; None when
    the case is not plain (a retried token, an expired or finished assignment, a score off the
    scale, an inactive or unenrolled reviewer, an ended session or a role that does not rate):
    nothing was written and the ORM path decides."""
    flags, comment = sorted(set(sub.flags)), sub.comment.strip()
    role = None if signed is None else signed.role if signed.role in RATER_ROLES else "-"
    row = hotpath.run(session, hotpath.SUBMIT, assignment=assignment_id, reviewer=reviewer_id, now=now,
                      score=sub.score, flags=json.dumps(flags), comment=comment,
                      time_taken_ms=sub.time_taken_ms, token=sub.client_token, at=utcnow(),
                      browser_session=signed.session_id if signed else None, role=role)
    if row is None:
        return None
    rating_id, item_id, supersedes_id, guideline_version_id, member_id = row
    for model, row_id in ((Assignment, assignment_id), (StudyReviewer, member_id)):
        hotpath.forget(session, model, row_id)
    hotpath.drop_cached_drafts(session, assignment_id)
    rating = Rating(id=rating_id, item_id=item_id, reviewer_id=reviewer_id, author_id=reviewer_id,
                    source=RatingSource.REVIEWER, score=sub.score, flags=flags, comment=comment,
                    guideline_version_id=guideline_version_id, time_taken_ms=sub.time_taken_ms,
                    active=True, supersedes_id=supersedes_id, client_token=sub.client_token, created_at=now)
    make_transient_to_detached(rating)  # the row exists: the session holds it as if loaded
    session.add(rating)
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
         now: datetime | None = None, *, signed: SignedIn | None = None) -> Assignment:
    """Give the item back with a reason; it goes to another reviewer."""
    if not reason.strip():
        raise RatingError("Say why you skip (pick a reason).")
    assignment, study = _load_assignment(session, assignment_id, reviewer_id, signed)
    if assignment.status == AssignmentStatus.SKIPPED:
        return assignment
    if assignment.status == AssignmentStatus.DONE:
        raise AlreadyRated(RATED_ELSEWHERE)
    add_finished(_member(session, study, reviewer_id), +1)
    assignment.status, assignment.skip_reason, assignment.slot = (AssignmentStatus.SKIPPED,
                                                                  reason.strip()[:200], None)
    assignment.completed_at = now or utcnow()
    _drop_draft(session, assignment.id, reviewer_id)
    session.flush()
    return assignment


def _drop_draft(session: Session, assignment_id: int, reviewer_id: int) -> None:
    session.execute(delete(RatingDraft).where(RatingDraft.assignment_id == assignment_id,
                                              RatingDraft.reviewer_id == reviewer_id))


def _in_study(study: Study, reviewer_id: int) -> Select[Assignment]:
    return select(Assignment).join(StudyItem, StudyItem.id == Assignment.item_id).where(
        StudyItem.study_id == study.id, Assignment.reviewer_id == reviewer_id)


def _reopened(session: Session, study: Study, reviewer_id: int, now: datetime) -> Assignment | None:
    """The reviewer's item that Undo or `reopen` handed back and that is still waiting for their new
    answer (a live lease with a retracted, not yet superseded rating, or a skip taken back)."""
    retracted = exists().where(
        Rating.item_id == Assignment.item_id, Rating.reviewer_id == reviewer_id,
        Rating.author_id == reviewer_id, Rating.active.is_(False),
        ~exists().where(_NEWER.supersedes_id == Rating.id))
    return session.scalar(_in_study(study, reviewer_id).where(
        Assignment.status == AssignmentStatus.LEASED, Assignment.lease_expires_at > now,
        retracted | Assignment.skip_reason.is_not(None)).limit(1))


def undo_last(
    session: Session, study: Study, reviewer_id: int, now: datetime | None = None, *,
    signed: SignedIn | None = None, answered_here: Collection[int] | None = None,
) -> Assignment | None:
    """Reopen the reviewer's last answer in the study (rating or skip) and hand the item back;
    None when they have none. While that item waits for its new answer, Undo returns it again and
    changes nothing else. With `answered_here` (the assignments this tab answered or reopened),
    an answer given elsewhere is refused (`UNDO_ELSEWHERE`), never withdrawn."""
    now = now or utcnow()
    require_rater(session, reviewer_id, signed)
    pending = _reopened(session, study, reviewer_id, now)
    if pending is not None:
        if answered_here is not None and pending.id not in answered_here:
            raise RatingError(UNDO_ELSEWHERE)
        return pending
    last = session.scalar(_in_study(study, reviewer_id).where(Assignment.status.in_(ANSWERED))
                          .order_by(Assignment.completed_at.desc(), Assignment.id.desc()).limit(1))
    if last is not None and answered_here is not None and last.id not in answered_here:
        if _judged(session, last, reviewer_id):  # the reason that holds in every tab comes first
            raise RatingError(JUDGED)
        raise RatingError(UNDO_ELSEWHERE)
    return _reopen(session, study, reviewer_id, last, now) if last is not None else None


def reopen(session: Session, study: Study, reviewer_id: int, assignment_id: int,
           now: datetime | None = None, *, signed: SignedIn | None = None) -> Assignment:
    """Reopen one of the reviewer's finished items (the history list) to change the answer."""
    now = now or utcnow()
    require_rater(session, reviewer_id, signed)
    assignment = session.scalar(_in_study(study, reviewer_id).where(Assignment.id == assignment_id))
    if assignment is None or assignment.status not in ANSWERED:
        raise RatingError("That item is not one of your finished items in this study.")
    pending = _reopened(session, study, reviewer_id, now)
    if pending is not None and pending.id != assignment.id:
        raise RatingError("Finish the item you reopened first (rate or skip it), then reopen another.")
    return _reopen(session, study, reviewer_id, assignment, now)


def _judged(session: Session, assignment: Assignment, reviewer_id: int) -> bool:
    """Whether QA has judged a rating of the reviewer on the assignment's item."""
    return bool(assignment.status == AssignmentStatus.DONE and session.scalar(
        select(func.count()).select_from(QAVerdict).join(Rating, Rating.id == QAVerdict.rating_id)
        .where(Rating.item_id == assignment.item_id, Rating.reviewer_id == reviewer_id)))


def _reopen(session: Session, study: Study, reviewer_id: int, assignment: Assignment,
            now: datetime) -> Assignment:
    """Take back a finished answer: retract the rating (its values become the draft) or the skip,
    and lease the item to the reviewer again, ahead of anything else."""
    if assignment.status == AssignmentStatus.DONE:
        last = _active_rating(session, assignment.item_id, reviewer_id)
        if _judged(session, assignment, reviewer_id) or last is None or last.author_id != reviewer_id:
            raise RatingError(JUDGED)
        last.active = False
        record(session, "rating.withdraw", actor_id=reviewer_id,
               **rating_details(last.item_id, study.name, last.score, last.id))
        _drop_draft(session, assignment.id, reviewer_id)
        session.add(RatingDraft(assignment_id=assignment.id, reviewer_id=reviewer_id, score=last.score,
                                flags=list(last.flags or []), comment=last.comment or "", updated_at=now))
    # Release any other lease the reviewer holds so the reopened item comes back first.
    for other in session.scalars(_in_study(study, reviewer_id).where(
            Assignment.status == AssignmentStatus.LEASED, Assignment.id != assignment.id)):
        other.status, other.slot = AssignmentStatus.EXPIRED, None
    add_finished(_member(session, study, reviewer_id), -1)
    # A skipped item given back needs a slot again. Its skip_reason stays until it is answered: it
    # marks the item as reopened.
    if assignment.slot is None and not reclaim_slot(session, study, assignment, now):
        raise RatingError("This item went to other reviewers meanwhile; it cannot be rated again.")
    assignment.status, assignment.completed_at = AssignmentStatus.LEASED, None
    assignment.leased_at = now
    assignment.lease_expires_at = now + timedelta(minutes=study.lease_minutes)
    session.flush()
    return assignment


def history(session: Session, item_id: int, reviewer_id: int) -> list[Rating]:
    """Every rating row for one (item, reviewer), oldest first: the audit trail."""
    return list(session.scalars(select(Rating).where(
        Rating.item_id == item_id, Rating.reviewer_id == reviewer_id).order_by(Rating.id)))
