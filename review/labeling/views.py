"""Read models: what each page shows, queried in one place, free of Streamlit (testable, and
usable from the CLI).

Blindness is enforced here, not in the page: `ItemView` carries only what a reviewer may see
(store paths and hashes of the three images), never the method, blur level or other ratings.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from db.models import (
    Assignment,
    DegradedImage,
    GuidelineVersion,
    QAVerdict,
    Rating,
    Restoration,
    SourceImage,
    Study,
    StudyItem,
    StudyReviewer,
    User,
)
from review.enums import ANSWERED, AssignmentStatus, RatingSource
from review.labeling.cohorts import CohortError
from review.labeling.settings import StudySettings
from review.labeling.study import may_join


@dataclass(frozen=True)
class ImageRef:
    """A stored image: the relative store path and its sha256 (the display-cache key)."""

    relpath: str
    sha256: str


@dataclass(frozen=True)
class ItemView:
    """What a reviewer is shown for one item, and nothing more."""

    item_id: int
    restoration: ImageRef
    blurred: ImageRef
    reference: ImageRef | None  # None: a real blurred photo with no sharp original


@dataclass(frozen=True)
class GuidelineView:
    """A guideline version as every page shows it (detached from the database session)."""

    id: int
    slug: str
    version: int
    title: str
    body_md: str
    assets_dir: str
    change_note: str

    @classmethod
    def of(cls, gv: GuidelineVersion) -> GuidelineView:
        return cls(gv.id, gv.slug, gv.version, gv.title, gv.body_md, gv.assets_dir, gv.change_note or "")

    @property
    def label(self) -> str:
        return f"{self.slug} v{self.version}"


@dataclass(frozen=True)
class StudyChoice:
    id: int
    name: str
    scale_min: int
    scale_max: int
    labels: dict[int, str]


ITU_IMPAIRMENT = {
    5: "Imperceptible",
    4: "Perceptible but not annoying",
    3: "Slightly annoying",
    2: "Annoying",
    1: "Very annoying",
}


def scale_labels(study: Study) -> dict[int, str]:
    """Labels per score: the study's own (`StudySettings.scale_labels`) or ITU-R BT.500's 5-point
    impairment scale for a 1..5 study; other scales get bare numbers."""
    custom = StudySettings.of(study).scale_labels
    if custom:
        return dict(custom)
    if (study.scale_min, study.scale_max) == (1, 5):
        return dict(ITU_IMPAIRMENT)
    return {}


def ratable_studies(session: Session, reviewer_id: int | None = None) -> list[StudyChoice]:
    """Studies that have items and a guideline, in name order; with `reviewer_id`, only the open
    ones that reviewer may join (review.labeling.study.may_join)."""
    has_items = select(StudyItem.id).where(StudyItem.study_id == Study.id).exists()
    rows = session.scalars(select(Study).where(has_items).order_by(Study.name))
    return [StudyChoice(s.id, s.name, s.scale_min, s.scale_max, scale_labels(s)) for s in rows
            if reviewer_id is None or may_join(session, s, reviewer_id)]


def item_view(session: Session, item_id: int) -> ItemView:
    """The three images of one item, in one query."""
    row = session.execute(
        select(Restoration.path, Restoration.sha256, DegradedImage.path, DegradedImage.sha256,
               SourceImage.path, SourceImage.sha256, SourceImage.is_reference)
        .select_from(StudyItem)
        .join(Restoration, Restoration.id == StudyItem.restoration_id)
        .join(DegradedImage, DegradedImage.id == Restoration.degraded_id)
        .join(SourceImage, SourceImage.id == DegradedImage.source_id)
        .where(StudyItem.id == item_id)
    ).one()
    return item_view_of(item_id, *row)


def item_view_of(item_id: int, r_path: str, r_sha: str, d_path: str, d_sha: str, s_path: str, s_sha: str,
                 is_ref: bool) -> ItemView:
    """An ItemView from the columns `item_view` reads (the PostgreSQL claim reads them too)."""
    return ItemView(item_id, ImageRef(r_path, r_sha), ImageRef(d_path, d_sha),
                    ImageRef(s_path, s_sha) if is_ref else None)


def guideline_for(session: Session, study_id: int, reviewer_id: int) -> GuidelineView:
    """The guideline version this reviewer rates under: their cohort's. Read only: a reviewer
    joins a cohort when work is handed out (`review.labeling.assignment.next_assignment`)."""
    gv = session.scalar(
        select(GuidelineVersion)
        .join(StudyReviewer, StudyReviewer.guideline_version_id == GuidelineVersion.id)
        .where(StudyReviewer.study_id == study_id, StudyReviewer.reviewer_id == reviewer_id))
    if gv is None:
        raise CohortError("You have not joined this study yet: its guideline comes with your first item.")
    return GuidelineView.of(gv)


def guideline_versions(session: Session) -> list[GuidelineView]:
    """Every loaded guideline version, by slug and version."""
    return [GuidelineView.of(gv) for gv in session.scalars(
        select(GuidelineVersion).order_by(GuidelineVersion.slug, GuidelineVersion.version))]


@dataclass(frozen=True)
class ReviewerSummary:
    rated: int
    skipped: int
    mean_time_ms: float | None


def reviewer_summary(session: Session, study_id: int, reviewer_id: int) -> ReviewerSummary:
    """A reviewer's own totals in a study (for the end-of-queue summary)."""
    rated, mean_ms = session.execute(
        select(func.count(), func.avg(Rating.time_taken_ms))
        .join(StudyItem, StudyItem.id == Rating.item_id)
        .where(StudyItem.study_id == study_id, Rating.reviewer_id == reviewer_id,
               Rating.author_id == reviewer_id, Rating.active.is_(True))
    ).one()
    skipped = session.scalar(
        select(func.count()).select_from(Assignment)
        .join(StudyItem, StudyItem.id == Assignment.item_id)
        .where(StudyItem.study_id == study_id, Assignment.reviewer_id == reviewer_id,
               Assignment.status == AssignmentStatus.SKIPPED)
    ) or 0
    return ReviewerSummary(rated or 0, skipped, float(mean_ms) if mean_ms is not None else None)


# ----------------------------------------------------------------------------- generated outputs


@dataclass(frozen=True)
class OutputView:
    """One generated item as the Generate page shows it to admins (method and parameters included:
    this is never shown to reviewers)."""

    item_id: int
    method: str
    is_smoke_test: bool
    blur_kind: str
    blur_level: float | None
    reference: ImageRef | None
    blurred: ImageRef
    restoration: ImageRef
    params: dict
    metrics: dict
    provenance: dict


def study_outputs(session: Session, study_id: int, limit: int = 400) -> list[OutputView]:
    """The study's newest items with their images and restorer details."""
    rows = session.execute(
        select(StudyItem.id, Restoration, DegradedImage, SourceImage)
        .join(Restoration, Restoration.id == StudyItem.restoration_id)
        .join(DegradedImage, DegradedImage.id == Restoration.degraded_id)
        .join(SourceImage, SourceImage.id == DegradedImage.source_id)
        .where(StudyItem.study_id == study_id).order_by(StudyItem.id.desc()).limit(limit))
    return [OutputView(item_id, res.method, res.is_smoke_test, deg.kind, deg.level,
                       ImageRef(src.path, src.sha256) if src.is_reference else None,
                       ImageRef(deg.path, deg.sha256), ImageRef(res.path, res.sha256),
                       res.params, res.metrics, res.provenance)
            for item_id, res, deg, src in rows]


# ----------------------------------------------------------------------------- admin progress


@dataclass(frozen=True)
class StudyProgress:
    id: int
    name: str
    items: int
    gold_items: int
    raters_per_item: int
    active_ratings: int
    complete_items: int  # items with raters_per_item active ratings or more
    skipped: int

    @property
    def target(self) -> int:
        return self.items * self.raters_per_item


def study_progress(session: Session) -> list[StudyProgress]:
    """Items, ratings done and completed items per study (admins only)."""
    per_item = (
        select(Rating.item_id, func.count().label("n"))
        .where(Rating.active.is_(True), Rating.source == RatingSource.REVIEWER)
        .group_by(Rating.item_id).subquery())
    out = []
    for study in session.scalars(select(Study).order_by(Study.name)):
        items, gold = session.execute(
            select(func.count(), func.coalesce(func.sum(case((StudyItem.is_gold, 1), else_=0)), 0))
            .where(StudyItem.study_id == study.id)).one()
        ratings, complete = session.execute(
            select(func.coalesce(func.sum(per_item.c.n), 0),
                   func.coalesce(func.sum(case((per_item.c.n >= study.raters_per_item, 1), else_=0)), 0))
            .select_from(per_item).join(StudyItem, StudyItem.id == per_item.c.item_id)
            .where(StudyItem.study_id == study.id)).one()
        skipped = session.scalar(
            select(func.count()).select_from(Assignment)
            .join(StudyItem, StudyItem.id == Assignment.item_id)
            .where(StudyItem.study_id == study.id, Assignment.status == AssignmentStatus.SKIPPED)) or 0
        out.append(StudyProgress(study.id, study.name, items, int(gold), study.raters_per_item,
                                 int(ratings), int(complete), skipped))
    return out


@dataclass(frozen=True)
class ReviewerProgress:
    username: str
    display_name: str
    rated: int
    skipped: int
    mean_time_ms: float | None
    active: bool = True  # False: the account is deactivated (its ratings still count)


def reviewer_progress(session: Session, study_id: int) -> list[ReviewerProgress]:
    """Per reviewer: active ratings of their own and skips (admins only). Gold accuracy is a
    statistic with one definition: review.analysis.qa_stats.gold_accuracy.

    Counts active reviewer-source ratings filed under the reviewer (a QA correction replaces the
    reviewer's rating, so it no longer counts as theirs)."""
    rated = {uid: (n, t) for uid, n, t in session.execute(
        select(Rating.reviewer_id, func.count(), func.avg(Rating.time_taken_ms))
        .join(StudyItem, StudyItem.id == Rating.item_id)
        .where(StudyItem.study_id == study_id, Rating.active.is_(True),
               Rating.source == RatingSource.REVIEWER)
        .group_by(Rating.reviewer_id))}
    skipped = dict(session.execute(
        select(Assignment.reviewer_id, func.count())
        .join(StudyItem, StudyItem.id == Assignment.item_id)
        .where(StudyItem.study_id == study_id, Assignment.status == AssignmentStatus.SKIPPED)
        .group_by(Assignment.reviewer_id)).all())
    ids = set(rated) | set(skipped)
    if not ids:
        return []
    users = {u.id: u for u in session.scalars(select(User).where(User.id.in_(ids)))}
    rows = []
    for uid in sorted(ids, key=lambda i: users[i].username):
        n, t = rated.get(uid, (0, None))
        rows.append(ReviewerProgress(users[uid].username, users[uid].display_name, int(n),
                                     int(skipped.get(uid, 0)), float(t) if t is not None else None,
                                     bool(users[uid].active)))
    return rows


# ----------------------------------------------------------------------------- the reviewer's history


@dataclass(frozen=True)
class AnswerView:
    """One of the reviewer's recent answers, for the history list on the Rate page (their own
    answer only; the QA verdict only when the study shows QA feedback)."""

    assignment_id: int
    item_id: int
    skipped: bool
    score: int | None
    flags: tuple[str, ...]
    comment: str
    qa_verdict: str | None
    judged: bool  # QA judged it: the reviewer can no longer change it


def recent_answers(session: Session, study_id: int, reviewer_id: int, limit: int = 8) -> list[AnswerView]:
    """The reviewer's latest finished items in the study, newest first."""
    study = session.get_one(Study, study_id)
    show_qa = StudySettings.of(study).show_qa_feedback
    rows = session.execute(
        select(Assignment.id, Assignment.item_id, Assignment.status)
        .join(StudyItem, StudyItem.id == Assignment.item_id)
        .where(StudyItem.study_id == study_id, Assignment.reviewer_id == reviewer_id,
               Assignment.status.in_(ANSWERED))
        .order_by(Assignment.completed_at.desc(), Assignment.id.desc()).limit(limit)).all()
    items = [item_id for _aid, item_id, _status in rows]
    own = {r.item_id: r for r in session.scalars(select(Rating).where(
        Rating.item_id.in_(items), Rating.reviewer_id == reviewer_id, Rating.author_id == reviewer_id)
        .order_by(Rating.id))}  # the latest own rating per item wins
    verdicts = dict(session.execute(select(Rating.item_id, QAVerdict.verdict).join(
        Rating, Rating.id == QAVerdict.rating_id).where(
        Rating.item_id.in_(items), Rating.reviewer_id == reviewer_id)).all())
    out = []
    for aid, item_id, status in rows:
        rating = own.get(item_id) if status == AssignmentStatus.DONE else None
        verdict = verdicts.get(item_id) if rating is not None else None
        out.append(AnswerView(aid, item_id, status == AssignmentStatus.SKIPPED,
                              rating.score if rating else None,
                              tuple(rating.flags or []) if rating else (), rating.comment if rating else "",
                              verdict if show_qa else None, verdict is not None))
    return out
