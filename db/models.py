"""The data model, as it flows: source image -> degraded image -> restoration -> study item ->
assignment -> rating -> QA sample -> QA verdict; plus users, guideline versions, generation jobs and
rater pools with their crowd participants.

Invariants live in the schema, not only in Python: foreign keys, check constraints on enums, score
ranges, counters and booleans, and a partial unique index that allows one *active* rating per (item,
reviewer). Rules that read another table are triggers made by migration 0007 (a rating's score
within its study's scale, at most raters_per_item active ratings per item, an assignment's slot
below raters_per_item); on SQLite, that migration also enforces this module's single-row CHECKs
with triggers, because adding a CHECK there means rebuilding the table.
Ratings are never updated in place: a change inserts a new row whose `supersedes_id` points at the
old one, and the old row's `active` flag is cleared in the same transaction.
"""

from __future__ import annotations

import numbers
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from db.vocabulary import (
    SLOT_FREE,
    SLOT_HOLDING,
    AssignmentStatus,
    BlurKind,
    CleansingOutcome,
    JobStatus,
    ParticipantStage,
    PoolKind,
    PoolStatus,
    ProbePhase,
    RatingSource,
    Role,
    Verdict,
    WorkItemState,
    sql_list,
)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}



def utcnow() -> datetime:
    return datetime.now(UTC)


def _in(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN ({sql_list(values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


TS = DateTime(timezone=True)


def _bool(column: str) -> Boolean:
    """A boolean SQLite cannot store as 't' (which its indexes would read as false); PostgreSQL's is
    native. The migrated SQLite schema enforces it with triggers named after the constraint (0007)."""
    return Boolean(create_constraint=True, name=f"{column}_bool")


class WholeNumber(TypeDecorator[int]):
    """An integer column that refuses 5.5 before it is sent: PostgreSQL would round it into an
    integer column silently (SQLite refuses it itself since migration 0007)."""

    impl = Integer
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> numbers.Integral | None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
            raise ValueError(f"{value!r} is not a whole number")
        return value


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_in("role", Role), name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128), default="")
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(256))
    active: Mapped[bool] = mapped_column(_bool("active"), default=True)
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(TS)
    # Failed logins before this moment no longer count (an admin's unlock or password reset).
    login_cleared_at: Mapped[datetime | None] = mapped_column(TS)
    # A simulated panel's rater (review.labeling.simulated_panel): never a person, never logs in;
    # analysis can leave its ratings out and one command removes them (migration 0011).
    simulated: Mapped[bool] = mapped_column(_bool("simulated"), default=False, server_default=false())


class LoginAttempt(Base):
    """Every login try, kept so failed logins can be rate-limited across processes."""

    __tablename__ = "login_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    succeeded: Mapped[bool] = mapped_column(_bool("succeeded"))
    at: Mapped[datetime] = mapped_column(TS, default=utcnow, index=True)
    # The client address the try came from: failures are throttled per (account, client).
    client: Mapped[str | None] = mapped_column(String(64))


class ReviewerSession(Base):
    """A signed-in browser (review.accounts.sessions): only hashes of its secrets are stored. The one-time
    `handoff_hash` is exchanged for the cookie's token, whose hash is `token_hash`."""

    __tablename__ = "reviewer_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    handoff_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    handoff_expires_at: Mapped[datetime | None] = mapped_column(TS)
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(TS)
    revoked_at: Mapped[datetime | None] = mapped_column(TS)


class RatingDraft(Base):
    """A reviewer's unsent answer for one assignment, kept server-side (never in the URL)."""

    __tablename__ = "rating_drafts"
    __table_args__ = (UniqueConstraint("assignment_id", "reviewer_id", name="uq_rating_draft"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id", ondelete="CASCADE"))
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    score: Mapped[int | None] = mapped_column(Integer)
    flags: Mapped[list[Any]] = mapped_column(default=list)
    comment: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(TS, default=utcnow)


class SourceImage(Base):
    """A sharp original (or a real blurred photo with no reference), stored by content hash."""

    __tablename__ = "source_images"

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    path: Mapped[str] = mapped_column(String(255))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200), default="")
    origin: Mapped[str] = mapped_column(String(500), default="")
    licence: Mapped[str] = mapped_column(String(200), default="")
    content: Mapped[str] = mapped_column(String(32), default="scene")
    is_reference: Mapped[bool] = mapped_column(_bool("is_reference"), default=True)
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)


class DegradedImage(Base):
    """A blurred version of a source image; `recipe_key` makes generation idempotent."""

    __tablename__ = "degraded_images"
    __table_args__ = (
        CheckConstraint(_in("kind", BlurKind), name="kind"),
        CheckConstraint("level IS NULL OR level >= 0", name="level_nonneg"),
        UniqueConstraint("source_id", "recipe_key", name="uq_degraded_recipe"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("source_images.id", ondelete="RESTRICT"))
    recipe_key: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    level: Mapped[float | None] = mapped_column(Float)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    seed: Mapped[int] = mapped_column(Integer, default=0)
    sha256: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(255))
    kernel_path: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)

    source: Mapped[SourceImage] = relationship()


class Restoration(Base):
    """One restorer's output for one degraded image, with full provenance and metrics.

    Unique on (degraded image, method, params_key), where params_key is the recipe key of
    review.media.catalog.recipe_key: the parameters and, for restorers with a model, the model's
    content identity (`model_identity`, also kept as its own column; '' without a model). Rows
    from before migration 0013 keep their key; their model_identity comes from their provenance,
    or is 'legacy-unknown'.
    """

    __tablename__ = "restorations"
    __table_args__ = (
        UniqueConstraint("degraded_id", "method", "params_key", name="uq_restoration_recipe"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    degraded_id: Mapped[int] = mapped_column(ForeignKey("degraded_images.id", ondelete="RESTRICT"))
    method: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    params_key: Mapped[str] = mapped_column(String(64))
    model_identity: Mapped[str] = mapped_column(String(100), default="", server_default="")
    sha256: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(255))
    provenance: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    is_smoke_test: Mapped[bool] = mapped_column(_bool("is_smoke_test"), default=False)
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)

    degraded: Mapped[DegradedImage] = relationship()


class GuidelineVersion(Base):
    """An immutable snapshot of a guideline's text; ratings point at the version they used."""

    __tablename__ = "guideline_versions"
    __table_args__ = (UniqueConstraint("slug", "version", name="uq_guideline_slug_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200))
    body_md: Mapped[str] = mapped_column(Text)
    change_note: Mapped[str] = mapped_column(Text, default="")
    content_sha256: Mapped[str] = mapped_column(String(64))
    assets_dir: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)


class Study(Base):
    __tablename__ = "studies"
    __table_args__ = (
        CheckConstraint("raters_per_item >= 1", name="raters_per_item_pos"),
        CheckConstraint("gold_rate >= 0 AND gold_rate <= 1", name="gold_rate_range"),
        CheckConstraint("scale_min < scale_max", name="scale_order"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    guideline_version_id: Mapped[int | None] = mapped_column(ForeignKey("guideline_versions.id"))
    raters_per_item: Mapped[int] = mapped_column(Integer, default=3)
    gold_rate: Mapped[float] = mapped_column(Float, default=0.1)
    scale_min: Mapped[int] = mapped_column(Integer, default=1)
    scale_max: Mapped[int] = mapped_column(Integer, default=5)
    lease_minutes: Mapped[int] = mapped_column(Integer, default=20)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)

    guideline_version: Mapped[GuidelineVersion | None] = relationship()


class StudyReviewer(Base):
    """A reviewer's place in a study: the guideline version they rate under and whether their
    ratings go through QA. Cohorts are randomised and balanced when a reviewer first joins, so
    guideline versions and QA on/off can be compared on the same items."""

    __tablename__ = "study_reviewers"
    __table_args__ = (
        UniqueConstraint("study_id", "reviewer_id", name="uq_study_reviewer"),
        CheckConstraint("finished_items >= 0", name="finished_items_nonneg"),
        CheckConstraint("queue_cursor IS NULL OR queue_cursor >= 0", name="queue_cursor_nonneg"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    guideline_version_id: Mapped[int] = mapped_column(ForeignKey("guideline_versions.id"))
    qa_enabled: Mapped[bool] = mapped_column(_bool("qa_enabled"), default=False)
    cohort: Mapped[str] = mapped_column(String(64), default="")
    joined_at: Mapped[datetime] = mapped_column(TS, default=utcnow)
    # Kept by review.labeling.ratings in the same transaction as each status change, so the hot path
    # needs no count over the reviewer's history: items done or skipped in this study.
    finished_items: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Where the reviewer's next scan of the study order begins (review.labeling.assignment); NULL =
    # their starting offset.
    queue_cursor: Mapped[int | None] = mapped_column(Integer)
    # The rater pool the reviewer rates for (migration 0014); NULL = the study's in-house team.
    pool_id: Mapped[int | None] = mapped_column(ForeignKey("rater_pools.id"), index=True)


class StudyItem(Base):
    """A restoration placed in a study; gold items carry the expected score range."""

    __tablename__ = "study_items"
    __table_args__ = (
        UniqueConstraint("study_id", "restoration_id", name="uq_item_study_restoration"),
        Index("ix_study_items_queue", "study_id", "is_gold", "order_key"),
        CheckConstraint(
            "(expected_min IS NULL AND expected_max IS NULL) OR "
            "(expected_min IS NOT NULL AND expected_max IS NOT NULL AND expected_min <= expected_max)",
            name="expected_range",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    restoration_id: Mapped[int] = mapped_column(ForeignKey("restorations.id", ondelete="RESTRICT"))
    # A random position in the study's global shuffled order; each reviewer walks it from their
    # own starting offset, so queues differ per reviewer, are reproducible, and use an index.
    order_key: Mapped[int] = mapped_column(Integer, default=0)
    is_gold: Mapped[bool] = mapped_column(_bool("is_gold"), default=False)
    expected_min: Mapped[int | None] = mapped_column(Integer)
    expected_max: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)
    # A training example for crowd participants (migration 0014): shown before live items with its
    # expected range and the guideline's reason, never handed out as a live item.
    is_training: Mapped[bool] = mapped_column(_bool("is_training"), default=False, server_default=false())
    training_reason: Mapped[str] = mapped_column(Text, default="", server_default="")

    study: Mapped[Study] = relationship()
    restoration: Mapped[Restoration] = relationship()


class Assignment(Base):
    """An item handed to a reviewer, with a lease that expires so nobody blocks work for long."""

    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("item_id", "reviewer_id", name="uq_assignment_item_reviewer"),
        CheckConstraint(_in("status", AssignmentStatus), name="status"),
        # The reviewer's live lease is found without reading their whole history.
        Index("ix_assignments_reviewer_status", "reviewer_id", "status"),
        # An item has raters_per_item slots (0, 1, ...; a trigger keeps them below it), each held by
        # at most one leased or finished assignment: the schema itself refuses an over-filled item.
        Index("uq_assignments_item_slot", "item_id", "slot", unique=True),
        CheckConstraint("slot IS NULL OR slot >= 0", name="slot_nonneg"),
        CheckConstraint(f"(status IN ({sql_list(SLOT_HOLDING)}) AND slot IS NOT NULL) OR "
                        f"(status IN ({sql_list(SLOT_FREE)}) AND slot IS NULL)", name="slot_when_live"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("study_items.id", ondelete="CASCADE"))
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(String(16), default=AssignmentStatus.LEASED.value)
    leased_at: Mapped[datetime] = mapped_column(TS, default=utcnow)
    lease_expires_at: Mapped[datetime | None] = mapped_column(TS)
    completed_at: Mapped[datetime | None] = mapped_column(TS)
    skip_reason: Mapped[str | None] = mapped_column(String(200))
    # Which of the item's slots this assignment holds; NULL once skipped or expired.
    slot: Mapped[int | None] = mapped_column(Integer)

    item: Mapped[StudyItem] = relationship()


class Rating(Base):
    """A fidelity score. Append-only: corrections supersede, they never overwrite."""

    __tablename__ = "ratings"
    __table_args__ = (
        CheckConstraint("score >= 1 AND score <= 10", name="score_range"),
        CheckConstraint(_in("source", RatingSource), name="source"),
        CheckConstraint("time_taken_ms IS NULL OR time_taken_ms >= 0", name="time_nonneg"),
        Index(
            "uq_ratings_one_active",
            "item_id",
            "reviewer_id",
            unique=True,
            sqlite_where=text("active"),
            postgresql_where=text("active"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("study_items.id", ondelete="CASCADE"), index=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    source: Mapped[str] = mapped_column(String(16), default=RatingSource.REVIEWER.value)
    score: Mapped[int] = mapped_column(WholeNumber)
    flags: Mapped[list[Any]] = mapped_column(default=list)
    comment: Mapped[str] = mapped_column(Text, default="")
    guideline_version_id: Mapped[int] = mapped_column(ForeignKey("guideline_versions.id"))
    time_taken_ms: Mapped[int | None] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(_bool("active"), default=True)
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("ratings.id"), unique=True)
    client_token: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)

    item: Mapped[StudyItem] = relationship()
    guideline_version: Mapped[GuidelineVersion] = relationship()


class QAVerdict(Base):
    __tablename__ = "qa_verdicts"
    __table_args__ = (
        CheckConstraint(_in("verdict", Verdict), name="verdict"),
        CheckConstraint(
            f"verdict != '{Verdict.CORRECT}' OR corrected_rating_id IS NOT NULL", name="correct_has_rating"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # One verdict per rating, enforced by the schema (a second QA reviewer cannot race the first).
    rating_id: Mapped[int] = mapped_column(ForeignKey("ratings.id"), index=True, unique=True)
    qa_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    verdict: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    corrected_rating_id: Mapped[int | None] = mapped_column(ForeignKey("ratings.id"))
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)


class QASample(Base):
    """A rating drawn into its study's QA sample (review.labeling.qa). One row per rating, so two
    samplers cannot draw the same rating twice; rows are only ever added."""

    __tablename__ = "qa_samples"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    rating_id: Mapped[int] = mapped_column(ForeignKey("ratings.id", ondelete="CASCADE"), unique=True)
    # NULL for ratings sampled before migration 0006 moved the sample out of the study's settings,
    # which did not record when.
    sampled_at: Mapped[datetime | None] = mapped_column(TS, default=utcnow)


class GenerationJob(Base):
    """A generation run: progress and errors live here so any process can watch or cancel it."""

    __tablename__ = "generation_jobs"
    __table_args__ = (
        CheckConstraint(_in("status", JobStatus), name="status"),
        CheckConstraint("progress_done >= 0 AND progress_done <= progress_total", name="progress"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int | None] = mapped_column(ForeignKey("studies.id", ondelete="SET NULL"))
    plan: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED.value)
    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(_bool("cancel_requested"), default=False)
    worker: Mapped[str | None] = mapped_column(String(128))
    heartbeat_at: Mapped[datetime | None] = mapped_column(TS)
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(TS)
    finished_at: Mapped[datetime | None] = mapped_column(TS)


class JobItemError(Base):
    __tablename__ = "job_item_errors"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("generation_jobs.id", ondelete="CASCADE"))
    item_key: Mapped[str] = mapped_column(String(200))
    error: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)


class GenerationWorkItem(Base):
    """One unit of a job's plan (or one Stable Diffusion grid of units, run as a batch), claimed by
    one worker process at a time under a lease the worker renews while it works; a lease that runs
    out (its worker was killed) lets another worker claim the item again."""

    __tablename__ = "generation_work_items"
    __table_args__ = (
        CheckConstraint(_in("state", WorkItemState), name="state"),
        CheckConstraint("units >= 1 AND attempts >= 0", name="counts"),
        CheckConstraint(f"state <> '{WorkItemState.CLAIMED}' OR "
                        "(lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL)",
                        name="claimed_has_lease"),
        UniqueConstraint("job_id", "position", name="uq_work_item_position"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("generation_jobs.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)  # index of the unit group in the expanded plan
    item_key: Mapped[str] = mapped_column(String(200))
    units: Mapped[int] = mapped_column(Integer, default=1)
    state: Mapped[str] = mapped_column(String(16), default=WorkItemState.PENDING.value)
    lease_owner: Mapped[str | None] = mapped_column(String(128))  # host:pid@start; kept once finished
    lease_expires_at: Mapped[datetime | None] = mapped_column(TS)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    finished_at: Mapped[datetime | None] = mapped_column(TS)


class StudyClosure(Base):
    """A closed study (migration 0010): no new work is handed out, its ratings stay. A table of its
    own rather than a column of `studies`, so code reading studies on an older schema still works;
    reopening removes the row (the audit log keeps both events)."""

    __tablename__ = "study_closures"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), unique=True)
    closed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    closed_at: Mapped[datetime] = mapped_column(TS, default=utcnow)


class AuditEntry(Base):
    """Who did what and when (review.accounts.audit): written in the same transaction as the action
    it records, so the log never shows something that did not happen. Rows are only ever added."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(TS, default=utcnow, index=True)
    # NULL for a login attempt with an unknown username; `actor` keeps the name as it was.
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor: Mapped[str] = mapped_column(String(64), default="")
    action: Mapped[str] = mapped_column(String(48), index=True)
    target: Mapped[str] = mapped_column(String(200), default="")
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ItemSettlement(Base):
    """An admin's or QA reviewer's settlement of a disputed item: a note and optionally a corrected
    consensus score, kept beside the original ratings (never replacing them). The newest row of an
    item is its settlement; earlier ones stay as history."""

    __tablename__ = "item_settlements"
    __table_args__ = (
        CheckConstraint("consensus_score IS NULL OR (consensus_score >= 1 AND consensus_score <= 10)",
                        name="consensus_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("study_items.id", ondelete="CASCADE"), index=True)
    settled_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    consensus_score: Mapped[int | None] = mapped_column(WholeNumber)
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)


# --------------------------------------------------------------------------------------------
# Rater pools and crowd studies (migration 0014)
# --------------------------------------------------------------------------------------------


class RaterPool(Base):
    """A study's group of raters from one provider (in-house team, annotation company, crowd
    platform), with what its link, flow and pay need. Crowd settings (viewing check, training,
    qualification, traps, session length) are in `flow` (review.labeling.pools.PoolSettings)."""

    __tablename__ = "rater_pools"
    __table_args__ = (
        UniqueConstraint("study_id", "name", name="uq_rater_pool_study_name"),
        CheckConstraint(_in("kind", PoolKind), name="kind"),
        CheckConstraint(_in("status", PoolStatus), name="status"),
        CheckConstraint("quota IS NULL OR quota >= 1", name="quota_pos"),
        CheckConstraint("pay_per_item >= 0 AND pay_per_session >= 0", name="pay_nonneg"),
        CheckConstraint("link_version >= 1", name="link_version_pos"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16), default=PoolKind.IN_HOUSE.value)
    status: Mapped[str] = mapped_column(String(16), default=PoolStatus.OPEN.value)
    # The platform whose participant parameters the link reads (review.labeling.pools.PLATFORMS).
    platform: Mapped[str] = mapped_column(String(32), default="plain")
    quota: Mapped[int | None] = mapped_column(Integer)  # participants admitted; NULL = no limit
    pay_per_item: Mapped[float] = mapped_column(Float, default=0.0)
    pay_per_session: Mapped[float] = mapped_column(Float, default=0.0)
    currency: Mapped[str] = mapped_column(String(8), default="USD")
    completion_code: Mapped[str] = mapped_column(String(64), default="")
    screened_out_code: Mapped[str] = mapped_column(String(64), default="")
    no_places_code: Mapped[str] = mapped_column(String(64), default="")
    return_url: Mapped[str] = mapped_column(String(500), default="")
    # Raised to void every link given out so far (a leaked link).
    link_version: Mapped[int] = mapped_column(Integer, default=1)
    # review.labeling.pools.PoolSettings; not named `settings` in Python, which is a study's typed
    # settings everywhere else (tests/test_study_settings.py).
    flow: Mapped[dict[str, Any]] = mapped_column("settings", JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)


class Participant(Base):
    """A pseudonymous crowd participant: their account (role participant, no password), their pool,
    the platform id as a keyed hash (the same id returning finds this row), the ids the platform's
    approve/reject export needs, and where they are in the flow."""

    __tablename__ = "participants"
    __table_args__ = (
        UniqueConstraint("pool_id", "platform_id_hash", name="uq_participant_pool_platform_id"),
        CheckConstraint(_in("stage", ParticipantStage), name="stage"),
        CheckConstraint("viewing_attempts >= 0", name="viewing_attempts_nonneg"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), unique=True)
    pool_id: Mapped[int] = mapped_column(ForeignKey("rater_pools.id"), index=True)
    platform_id_hash: Mapped[str] = mapped_column(String(64))
    export_ids: Mapped[dict[str, Any]] = mapped_column(default=dict)
    stage: Mapped[str] = mapped_column(String(16), default=ParticipantStage.CONSENT.value)
    consent_at: Mapped[datetime | None] = mapped_column(TS)
    viewing_attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The code shown at the end (completion or screened out): shown again, never a second one.
    end_code: Mapped[str] = mapped_column(String(64), default="")
    joined_at: Mapped[datetime] = mapped_column(TS, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(TS)


class ParticipantProbe(Base):
    """An answer that is not a rating (viewing check, training, qualification, trap): kept to score
    the participant and to explain a decision, never part of the analysis."""

    __tablename__ = "participant_probes"
    __table_args__ = (
        UniqueConstraint("participant_id", "phase", "probe_key", name="uq_probe_participant_phase_key"),
        CheckConstraint(_in("phase", ProbePhase), name="phase"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id", ondelete="CASCADE"), index=True)
    phase: Mapped[str] = mapped_column(String(16))
    probe_key: Mapped[str] = mapped_column(String(100))  # a study item id, a trap's key, a check's name
    position: Mapped[int] = mapped_column(Integer, default=0)  # where in the live queue (traps)
    answer: Mapped[int | None] = mapped_column(Integer)
    expected_min: Mapped[int | None] = mapped_column(Integer)
    expected_max: Mapped[int | None] = mapped_column(Integer)
    correct: Mapped[bool | None] = mapped_column(Boolean(create_constraint=True, name="correct_bool"))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    shown_at: Mapped[datetime] = mapped_column(TS, default=utcnow)
    answered_at: Mapped[datetime | None] = mapped_column(TS)


class CleansingDecision(Base):
    """Data cleansing's outcome for one participant's submission, automatic or an admin's override.
    Rows are only added: the newest one is the decision, earlier ones are its history."""

    __tablename__ = "cleansing_decisions"
    __table_args__ = (CheckConstraint(_in("outcome", CleansingOutcome), name="outcome"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[str] = mapped_column(Text, default="")
    criteria: Mapped[dict[str, Any]] = mapped_column(default=dict)
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))  # NULL = automatic
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)


class BlockedParticipant(Base):
    """A platform id (keyed hash) not to admit again, in any pool of the lab."""

    __tablename__ = "blocked_participants"
    __table_args__ = (UniqueConstraint("platform", "platform_id_hash", name="uq_blocked_platform_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(32))
    platform_id_hash: Mapped[str] = mapped_column(String(64))
    participant_id: Mapped[int | None] = mapped_column(ForeignKey("participants.id"))
    reason: Mapped[str] = mapped_column(Text, default="")
    blocked_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow)


class LinkOpen(Base):
    """Each opening of a recruitment link, kept to slow one browser or address opening it with new
    ids faster than the pool allows (code farming)."""

    __tablename__ = "link_opens"

    id: Mapped[int] = mapped_column(primary_key=True)
    pool_id: Mapped[int] = mapped_column(ForeignKey("rater_pools.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(64), index=True)
    admitted: Mapped[bool] = mapped_column(Boolean(create_constraint=True, name="admitted_bool"))
    created_at: Mapped[datetime] = mapped_column(TS, default=utcnow, index=True)

