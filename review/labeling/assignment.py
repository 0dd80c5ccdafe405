"""Handing out work: each item gets exactly the study's raters-per-item, never the same reviewer
twice, on demand, with leases that expire so a reviewer who leaves blocks nothing for long.

Order: the study has one global shuffled order (`StudyItem.order_key`); each reviewer walks it
circularly from their own reproducible starting offset and shuffles a small window of candidates,
so two reviewers see different sequences and spread over the items, and the next-item query is an
index range scan rather than a sort of the whole study. Gold items are mixed in at the study's
rate, decided reproducibly per (reviewer, position).

Cost independent of history: the reviewer's cohort row keeps `queue_cursor`, the first item that
was still open to them at their last claim, and `finished_items`; so a claim scans about one
window of the order however many items the reviewer has done (re-walking from the starting offset
and counting the history grew with every item: ~14 ms per rating after 1,500). A slot that reopens
behind a cursor (an expired lease, a skip) is ahead of the other reviewers' cursors, which start
elsewhere in the order, and every reviewer reaches it again when their walk wraps around.

Balance: by default work goes to whoever asks (fast reviewers rate more); a study can cap each
reviewer's share with `StudySettings.max_items_per_reviewer` (e.g. ceil(items x raters / reviewers)).

Concurrency: the claim reads the item's slots inside the write transaction, with the study row
held FOR SHARE and the item row locked on PostgreSQL (SQLite serialises writers with BEGIN
IMMEDIATE), and takes a free one; the schema backs this up (a unique (item, slot) and a trigger
keeping slots below raters_per_item, which since migration 0012 meets a concurrent change of
raters per item on the study row), so two browsers can never over-fill an item or receive the
same slot, and lowering raters per item while reviewers rate cannot leave a slot out of range.

On PostgreSQL a plain claim (an enrolled reviewer, no quota, a free slot of a fresh item) runs as
two hand-written statements (review.labeling.hotpath); everything else goes through the ORM code
here, which the hot path matches row for row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import overload

from sqlalchemy import ColumnElement, ScalarSelect, and_, exists, func, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from db.models import Assignment, Rating, Study, StudyClosure, StudyItem, StudyReviewer, User, utcnow
from review.accounts.check import check_account, require_account
from review.enums import ANSWERED, AssignmentStatus
from review.labeling import hotpath
from review.labeling.cohorts import ensure_enrolled
from review.labeling.settings import StudySettings
from review.labeling.study import draw, listed, study_by_id
from review.labeling.views import ItemView, item_view_of

WINDOW = 24  # open items read per claim
PICK = 8  # of which the oldest PICK are drawn from
ORDER_SPACE = 2**31


def _hash01(*parts: object) -> float:
    return int.from_bytes(draw(*parts)[:8], "big") / 2**64


@overload
def _as_aware(ts: datetime) -> datetime: ...
@overload
def _as_aware(ts: None) -> None: ...
def _as_aware(ts: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes even for timezone columns; they are stored in UTC."""
    if ts is not None and ts.tzinfo is None:
        return ts.replace(tzinfo=UTC)
    return ts


def _lease_end(ts: datetime | None) -> datetime:
    """A lease's expiry, timezone-aware: a leased assignment always has one."""
    if ts is None:
        raise ValueError("a leased assignment without an expiry")
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def live_assignment_filter(now: datetime) -> ColumnElement[bool]:
    """Assignments that occupy a slot: finished, or leased and not yet expired."""
    return or_(
        Assignment.status == AssignmentStatus.DONE,
        and_(Assignment.status == AssignmentStatus.LEASED, Assignment.lease_expires_at > now),
    )


def _occupied(item_id: InstrumentedAttribute[int], now: datetime) -> ScalarSelect[int]:
    return (
        select(func.count())
        .select_from(Assignment)
        .where(Assignment.item_id == item_id, live_assignment_filter(now))
        .scalar_subquery()
    )


@dataclass(frozen=True)
class Lease:
    assignment_id: int
    item_id: int
    expires_at: datetime
    position: int  # how many items this reviewer has finished in the study, before this one
    # The item's images when the claim read them with the lease (PostgreSQL's hot path does, in the
    # same statement); otherwise None and the page asks `item_view`.
    view: ItemView | None = None


def _lease_id(study: Study, reviewer_id: int, now: datetime) -> ScalarSelect[int]:
    """The id of the reviewer's oldest unexpired lease in this study, as a scalar subquery."""
    return (select(Assignment.id)
            .join(StudyItem, StudyItem.id == Assignment.item_id)
            .where(StudyItem.study_id == study.id, Assignment.reviewer_id == reviewer_id,
                   Assignment.status == AssignmentStatus.LEASED, Assignment.lease_expires_at > now)
            .order_by(Assignment.leased_at).limit(1).scalar_subquery())


def current_lease(session: Session, study: Study, reviewer_id: int, now: datetime) -> Assignment | None:
    """The reviewer's unexpired lease in this study, if any (a reload resumes the same item)."""
    lease_id = session.scalar(select(_lease_id(study, reviewer_id, now)))
    return session.get(Assignment, lease_id) if lease_id is not None else None


def _member_and_lease(session: Session, study: Study, reviewer_id: int,
                      now: datetime) -> tuple[StudyReviewer, Assignment | None]:
    """The active reviewer's cohort row and live lease in one round trip (the claim's hot path,
    which `require_account` would cost one more: the account's flag is read here and judged by
    `check_account`); the lease row is loaded only when there is one (a reload), enrolment only
    on first use. Every claim checks the account first, not only the page: a browser left open
    after deactivation claims nothing."""
    active = select(User.active).where(User.id == reviewer_id).scalar_subquery()
    row = session.execute(select(StudyReviewer, _lease_id(study, reviewer_id, now), active).where(
        StudyReviewer.study_id == study.id, StudyReviewer.reviewer_id == reviewer_id)).first()
    if row is None:
        require_account(session, reviewer_id)
        return ensure_enrolled(session, study, reviewer_id), current_lease(session, study, reviewer_id, now)
    member, lease_id, is_active = row
    check_account(is_active, None)
    return member, session.get(Assignment, lease_id) if lease_id is not None else None


def start_offset(study_id: int, reviewer_id: int) -> int:
    """Where the reviewer's walk through the study order begins (reproducible per reviewer)."""
    return int(_hash01("start", study_id, reviewer_id) * ORDER_SPACE)


def _candidates(session: Session, study: Study, reviewer_id: int, gold: bool, now: datetime,
                cursor: int) -> list[tuple[int, int]]:
    """Up to WINDOW open items as (id, order_key), in circular order from ``cursor``."""
    mine = exists().where(Assignment.item_id == StudyItem.id, Assignment.reviewer_id == reviewer_id,
                          or_(Assignment.status.in_(ANSWERED), live_assignment_filter(now)))
    base = select(StudyItem.id, StudyItem.order_key).where(
        StudyItem.study_id == study.id,
        ~exists().where(StudyClosure.study_id == study.id),  # a closed study hands out nothing new
        StudyItem.is_gold.is_(gold),
        StudyItem.is_training.is_(False),  # a crowd pool's training example is never a live item
        ~mine,
        _occupied(StudyItem.id, now) < study.raters_per_item,
    )
    found = [(item_id, key) for item_id, key in session.execute(
        base.where(StudyItem.order_key >= cursor).order_by(StudyItem.order_key).limit(WINDOW))]
    if len(found) < WINDOW:  # wrap around the circular order
        found += [(item_id, key) for item_id, key in session.execute(
            base.where(StudyItem.order_key < cursor).order_by(StudyItem.order_key)
            .limit(WINDOW - len(found)))]
    return found


def next_assignment(
    session: Session, study: Study, reviewer_id: int, now: datetime | None = None
) -> Lease | None:
    """Resume the reviewer's live lease or claim a new item; None when nothing is left for them."""
    return claim_next(session, study.id, reviewer_id, now)


def claim_next(session: Session, study_id: int, reviewer_id: int,
               now: datetime | None = None) -> Lease | None:
    """`next_assignment` for the study with this id, as the Rate page claims: on PostgreSQL the
    study's row is read in the claim's own statement instead of loaded first (StudyError when the
    study is gone)."""
    now = now or utcnow()
    if hotpath.applies(session):
        fast = _claim_fast(session, study_id, reviewer_id, now)
        if not isinstance(fast, _Path):
            return fast
    return _claim_orm(session, study_by_id(session, study_id), reviewer_id, now)


def hold_study(session: Session, study: Study) -> None:
    """Hold the study's row FOR SHARE until the transaction ends and read it afresh (PostgreSQL):
    a change of its raters per item waits for this write, or this write for the change and then
    sees the new value, so slots and counts are checked against the study as it is (migration
    0012's triggers take the same lock; taking it first, before any item row, keeps a write and a
    settings change from waiting for each other in a cycle). On SQLite, BEGIN IMMEDIATE already
    serialises writers: no statement."""
    if session.get_bind().dialect.name == "sqlite":
        return
    session.execute(select(Study).where(Study.id == study.id).with_for_update(read=True)
                    .execution_options(populate_existing=True))


def _claim_orm(session: Session, study: Study, reviewer_id: int, now: datetime) -> Lease | None:
    """`next_assignment` through the ORM: SQLite, and PostgreSQL's cases off the hot path."""
    hold_study(session, study)
    if not listed(study, reviewer_id):
        return None  # not among the reviewers the study lists (its page does not offer it to them)
    quota = StudySettings.of(study).max_items_per_reviewer
    member, lease = _member_and_lease(session, study, reviewer_id, now)
    position = member.finished_items
    if lease is not None:
        return Lease(lease.id, lease.item_id, _lease_end(lease.lease_expires_at), position)
    if quota is not None and position >= quota:
        return None  # this reviewer has done their share; the rest goes to others

    cursor = member.queue_cursor if member.queue_cursor is not None else start_offset(study.id, reviewer_id)
    want_gold = _hash01("gold", study.id, reviewer_id, position) < study.gold_rate
    for gold in (want_gold, not want_gold):
        found = _candidates(session, study, reviewer_id, gold, now, cursor)
        if found and not gold and found[0][1] != member.queue_cursor:
            member.queue_cursor = found[0][1]  # everything before it was closed to this reviewer
        candidates = [item_id for item_id, _key in found]
        # With a per-reviewer quota, least-filled first so the quotas can fill every item (one
        # more query, so only then).
        filled = dict(session.execute(
            select(Assignment.item_id, func.count()).where(
                Assignment.item_id.in_(candidates), live_assignment_filter(now))
            .group_by(Assignment.item_id)).all()) if candidates and quota is not None else {}
        for item_id in _draw_order(study.id, reviewer_id, position, candidates, filled):
            claimed = _claim(session, study, item_id, reviewer_id, now)
            if claimed is not None:
                return Lease(claimed[0], item_id, claimed[1], position)
    return None


def _draw_order(study_id: int, reviewer_id: int, position: int, candidates: list[int],
                filled: dict[int, int]) -> list[int]:
    """The order the candidates are tried in: least-filled first (``filled``, with a quota), then
    a reproducible draw, fresh at each position, among the PICK oldest open items (the rest of the
    window is the fallback when claims race): no item stays behind for long, so the cursor keeps
    up with the reviewer."""
    rank = {item_id: i for i, item_id in enumerate(candidates)}

    def key(item_id: int) -> tuple[int, bool, float]:
        return (filled.get(item_id, 0), rank[item_id] >= PICK,
                _hash01("order", study_id, reviewer_id, position, item_id))

    return sorted(candidates, key=key)


class _Path(Enum):
    ORM = "orm"  # the hot path's answer when its case is not plain: the ORM path decides


def _joined(ahead: list[list[int]] | None, behind: list[list[int]] | None) -> list[list[int]] | None:
    """One window from its part after the cursor and its wrap-around (None: not read)."""
    if ahead is None:
        return None
    return ahead + (behind or [])[:WINDOW - len(ahead)]


def _claim_fast(session: Session, study_id: int, reviewer_id: int, now: datetime) -> Lease | None | _Path:
    """`next_assignment` in two statements (PostgreSQL): the study's settings, the reviewer's state
    and the open windows in one, the lease in the other. `_Path.ORM` when the study or account is
    gone, the study caps each reviewer's share, before enrolment, at the end of the queue without
    a gold window read, and when the drawn item cannot be leased as it stands."""
    state = hotpath.run(session, hotpath.CLAIM_STATE, study=study_id, reviewer=reviewer_id, now=now,
                        start=start_offset(study_id, reviewer_id), window=WINDOW)
    if state is None:
        return _Path.ORM
    (raw_settings, scale_min, scale_max, gold_rate, per_item, lease_minutes, member_id, position,
     queue_cursor, active, lease_id, lease_item, lease_expires, *parts) = state
    settings = StudySettings.from_json(raw_settings)  # as StudySettings.of(study) reads them
    settings.check_scale(scale_min, scale_max)
    if settings.reviewer_ids and reviewer_id not in settings.reviewer_ids:
        return None  # not among the reviewers the study lists, as `listed` says
    if settings.max_items_per_reviewer is not None or member_id is None:
        return _Path.ORM  # a quota needs the fill counts; a reviewer joining is enrolled there
    check_account(active, None)
    if lease_id is not None:
        return Lease(lease_id, lease_item, _lease_end(lease_expires), position)
    plain, gold_window = _joined(parts[0], parts[1]), _joined(parts[2], parts[3])
    want_gold = _hash01("gold", study_id, reviewer_id, position) < gold_rate
    for gold in (want_gold, not want_gold):
        found = gold_window if gold else plain
        if found is None:
            return _Path.ORM  # the gold window was not read (a study without gold rate)
        if not found:
            continue
        moved = found[0][1] if not gold and found[0][1] != queue_cursor else None
        expires = now + timedelta(minutes=lease_minutes)
        order = _draw_order(study_id, reviewer_id, position, [item_id for item_id, _key in found], {})
        leased = hotpath.run(session, hotpath.LEASE_FIRST, ids=order, reviewer=reviewer_id, now=now,
                             expires=expires, slots=list(range(per_item)), member=member_id, cursor=moved)
        if leased is None:
            return _Path.ORM
        if moved is not None:
            hotpath.forget(session, StudyReviewer, member_id)
        return Lease(leased[0], leased[1], expires, position, item_view_of(*leased[1:]))
    return None


def lock_row(session: Session, model: type[Assignment | StudyItem], row_id: int, *,
             skip_locked: bool = False) -> bool:
    """Lock one row for this transaction on PostgreSQL; False when it is missing, or when another
    transaction holds it and ``skip_locked``. On SQLite the write transaction's BEGIN IMMEDIATE
    already serialises writers, so no statement is sent. A statement of its own, before the reads
    that depend on it: on PostgreSQL a statement that waited for a lock still reads the snapshot
    it started with, so only a later statement sees what the lock's previous holder committed."""
    if session.get_bind().dialect.name == "sqlite":
        return True
    return session.scalar(select(model.id).where(model.id == row_id)
                          .with_for_update(skip_locked=skip_locked)) is not None


@dataclass(frozen=True)
class _Held:
    """One of an item's assignments, as take_slot needs it (columns: ORM rows cost)."""

    id: int
    reviewer_id: int
    slot: int | None
    status: str
    expires: datetime | None


def _item_assignments(session: Session, item_id: int) -> list[_Held]:
    """Every assignment of the item, in one statement, read after `lock_row` locked the item."""
    return [_Held(*row) for row in session.execute(
        select(Assignment.id, Assignment.reviewer_id, Assignment.slot, Assignment.status,
               Assignment.lease_expires_at).where(Assignment.item_id == item_id))]


def _claim(
    session: Session, study: Study, item_id: int, reviewer_id: int, now: datetime
) -> tuple[int, datetime] | None:
    """Lease the item to the reviewer: (assignment id, expiry), or None when it cannot be had."""
    # Lock the item row (PostgreSQL) and re-check the slot count inside this transaction. A row
    # another reviewer is claiming right now is skipped, never waited for: waiting while holding
    # locks on earlier candidates could deadlock two claims that walk candidates in other orders.
    if not lock_row(session, StudyItem, item_id, skip_locked=True):
        return None
    held = _item_assignments(session, item_id)
    existing = next((h for h in held if h.reviewer_id == reviewer_id), None)
    if existing is not None and (existing.status in ANSWERED
                                 or _holds_slot(existing.status, existing.expires, now)):
        return None  # already theirs: only an expired or run-out lease is taken up again
    slot = take_slot(session, study, item_id, now, held)
    if slot is None:
        return None
    expires = now + timedelta(minutes=study.lease_minutes)
    if existing is not None:  # the reviewer's own run-out lease: taken up again
        session.execute(update(Assignment).where(Assignment.id == existing.id).values(
            status=AssignmentStatus.LEASED, leased_at=now, lease_expires_at=expires, slot=slot))
        return existing.id, expires
    assignment = Assignment(item_id=item_id, reviewer_id=reviewer_id, status=AssignmentStatus.LEASED,
                            leased_at=now, lease_expires_at=expires, slot=slot)
    session.add(assignment)
    session.flush()
    return assignment.id, expires


def _holds_slot(status: str, expires: datetime | None, now: datetime) -> bool:
    """Finished, or leased and not yet run out: the Python form of `live_assignment_filter`."""
    return status == AssignmentStatus.DONE or (status == AssignmentStatus.LEASED and expires is not None
                                               and _as_aware(expires) > now)


def take_slot(session: Session, study: Study, item_id: int, now: datetime,
              held: list[_Held] | None = None) -> int | None:
    """The lowest of the item's slots not held by a finished or live leased assignment, or None when
    the item is full. A run-out lease holding it gives it up (its status becomes 'expired'); the
    caller must then give the slot to an assignment in the same transaction. ``held``: the item's
    assignments when the caller has just read them under the item's lock."""
    if held is None:
        held = _item_assignments(session, item_id)
    live = {h.slot for h in held if h.slot is not None and _holds_slot(h.status, h.expires, now)}
    taken = {h.slot for h in held if h.slot is not None}
    for slot in range(study.raters_per_item):
        if slot in live:
            continue
        if slot not in taken:
            return slot
        # A run-out lease holds it. Its row is skipped, never waited for, when its reviewer is
        # submitting late right now: that submit waits for this item's lock (PostgreSQL).
        holder = session.scalar(select(Assignment.id).where(
            Assignment.item_id == item_id, Assignment.slot == slot).with_for_update(skip_locked=True))
        if holder is not None:
            session.execute(update(Assignment).where(Assignment.id == holder)
                            .values(status=AssignmentStatus.EXPIRED, slot=None))
            return slot
    return None


def reclaim_slot(session: Session, study: Study, assignment: Assignment, now: datetime) -> bool:
    """Give a slot back to an assignment that lost its own (a skipped item undone, a rating after
    the lease ran out); False when the item is full. The item row is locked as a claim locks it,
    after the study's (`hold_study`)."""
    hold_study(session, study)
    lock_row(session, StudyItem, assignment.item_id)
    slot = take_slot(session, study, assignment.item_id, now)
    if slot is None:
        return False
    assignment.status, assignment.slot = AssignmentStatus.LEASED, slot  # a live assignment holds a slot
    return True


def remaining_for(session: Session, study: Study, reviewer_id: int, now: datetime | None = None) -> int:
    """How many more items this reviewer could still receive (for 'item k of n')."""
    now = now or utcnow()
    mine = exists().where(Assignment.item_id == StudyItem.id, Assignment.reviewer_id == reviewer_id)
    return session.scalar(
        select(func.count()).select_from(StudyItem).where(
            StudyItem.study_id == study.id, ~mine,
            _occupied(StudyItem.id, now) < study.raters_per_item)
    ) or 0


SET_ASIDE = "set aside by data cleansing"


def set_aside_assignments(session: Session, study_id: int, reviewer_id: int) -> list[int]:
    """Free the slots of a rater's finished items in the study for other raters (data cleansing
    reopening a submission it does not use): their done assignments become skipped with the
    reason SET_ASIDE, their active ratings inactive (kept). Returns the ratings set aside."""
    done = list(session.scalars(
        select(Assignment).join(StudyItem, StudyItem.id == Assignment.item_id)
        .where(StudyItem.study_id == study_id, Assignment.reviewer_id == reviewer_id,
               Assignment.status == AssignmentStatus.DONE).with_for_update()))
    if not done:
        return []
    items = [a.item_id for a in done]
    ratings = list(session.scalars(select(Rating).where(
        Rating.item_id.in_(items), Rating.reviewer_id == reviewer_id, Rating.active.is_(True))))
    for r in ratings:
        r.active = False
    for a in done:
        a.status, a.slot, a.skip_reason = AssignmentStatus.SKIPPED.value, None, SET_ASIDE
    session.flush()
    return sorted(r.id for r in ratings)


def restore_set_aside(session: Session, rating_ids: list[int]) -> list[int]:
    """Take set-aside ratings back where their item still has room (a free slot and fewer active
    ratings than raters per item); returns the ids that stay aside."""
    left = []
    for rid in rating_ids:
        rating = session.get(Rating, rid)
        if rating is None or rating.active:
            continue
        item = session.get(StudyItem, rating.item_id)
        assert item is not None
        study = session.get(Study, item.study_id)
        assert study is not None
        hold_study(session, study)
        assignment = session.scalar(select(Assignment).where(Assignment.item_id == item.id,
                                                             Assignment.reviewer_id == rating.reviewer_id))
        taken = set(session.scalars(select(Assignment.slot).where(
            Assignment.item_id == item.id, live_assignment_filter(utcnow()), Assignment.slot.is_not(None))))
        active = session.scalar(select(func.count()).select_from(Rating).where(
            Rating.item_id == item.id, Rating.active.is_(True))) or 0
        free = [k for k in range(study.raters_per_item) if k not in taken]
        if (assignment is None or assignment.skip_reason != SET_ASIDE or not free
                or active >= study.raters_per_item):
            left.append(rid)
            continue
        assignment.status, assignment.slot = AssignmentStatus.DONE.value, free[0]
        assignment.skip_reason = None
        rating.active = True
        session.flush()
    return left
