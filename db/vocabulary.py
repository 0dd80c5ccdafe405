"""The words the database stores for roles and states, declared once.

Each enum's values are the strings the rows hold (no migration: a `StrEnum` member equals its
string, and is stored and compared as one), and its member order is the order of the matching
CHECK constraint in db/models.py, which builds its constraints from these classes. The lab reads
them as `review.enums` (this module sits in db/ because db/ imports nothing of review/); SQL
written by hand (review/labeling/hotpath.py) formats them in too, so a rename reaches every copy.

Adding a member is the first half of a change: the CHECK constraint already in a database names
the old values, so a new role or state also needs a migration that widens it.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """A user's role; what each may do is review/policy.py's table."""

    ADMIN = "admin"
    REVIEWER = "reviewer"
    QA = "qa"
    # A pseudonymous crowd participant who arrived by a pool's link (migration 0014): no password,
    # sees only the participant flow of their own study.
    PARTICIPANT = "participant"


class AssignmentStatus(StrEnum):
    """An item handed to a reviewer: leased (being rated), then done, skipped, or expired (the
    lease ran out and gave its slot up)."""

    LEASED = "leased"
    DONE = "done"
    SKIPPED = "skipped"
    EXPIRED = "expired"


#: Answered by the reviewer: such an item is never offered to them again.
ANSWERED = (AssignmentStatus.DONE, AssignmentStatus.SKIPPED)
#: Statuses that hold one of the item's slots (a leased one only while its lease runs).
SLOT_HOLDING = (AssignmentStatus.LEASED, AssignmentStatus.DONE)
#: Statuses that hold no slot.
SLOT_FREE = (AssignmentStatus.SKIPPED, AssignmentStatus.EXPIRED)


class RatingSource(StrEnum):
    """Who gave a rating: the reviewer, or a QA reviewer's correction of it."""

    REVIEWER = "reviewer"
    QA = "qa"


class Verdict(StrEnum):
    """A QA reviewer's verdict on a sampled rating."""

    ACCEPT = "accept"
    REJECT = "reject"
    CORRECT = "correct"


class JobStatus(StrEnum):
    """A generation job's state."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class WorkItemState(StrEnum):
    """One unit of a generation job's work queue."""

    PENDING = "pending"
    CLAIMED = "claimed"
    DONE = "done"
    FAILED = "failed"


class BlurKind(StrEnum):
    """How a degraded image was blurred ("real": it arrived blurred; "none": not blurred)."""

    MOTION_LINE = "motion_line"
    CAMERA_SHAKE = "camera_shake"
    DEFOCUS = "defocus"
    GAUSSIAN = "gaussian"
    REAL = "real"
    NONE = "none"


class PoolKind(StrEnum):
    """Who a rater pool's people are: the lab's own team, an annotation company, a crowd platform."""

    IN_HOUSE = "in_house"
    COMPANY = "company"
    CROWD = "crowd"


class PoolStatus(StrEnum):
    """Whether a pool's link admits new participants."""

    OPEN = "open"
    CLOSED = "closed"


class ParticipantStage(StrEnum):
    """Where a crowd participant is in the flow, in order; screened_out ends it without live items."""

    CONSENT = "consent"
    VIEWING = "viewing"
    TRAINING = "training"
    QUALIFICATION = "qualification"
    LIVE = "live"
    COMPLETED = "completed"
    SCREENED_OUT = "screened_out"


class ProbePhase(StrEnum):
    """A participant's answer that is not a rating: a viewing-condition check, a training or
    qualification item, or a trapping question in the live queue."""

    VIEWING = "viewing"
    TRAINING = "training"
    QUALIFICATION = "qualification"
    TRAP = "trap"


class CleansingOutcome(StrEnum):
    """What data cleansing decided for a submission (review.analysis.cleansing)."""

    ACCEPT_USE = "accept_use"
    ACCEPT_NO_USE = "accept_no_use"
    REJECT = "reject"


def sql_list(values: tuple[StrEnum, ...] | type[StrEnum]) -> str:
    """The values as an SQL list body, `'done', 'skipped'`, for a CHECK or hand-written SQL."""
    return ", ".join(f"'{v.value}'" for v in values)
