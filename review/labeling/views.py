"""Read models: what each page shows, queried in one place, free of Streamlit (testable, and
usable from the CLI).

Blindness is enforced here, not in the page: `ItemView` carries only what a reviewer may see
(store paths and hashes of the three images), never the method, blur level or other ratings.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session, aliased

from db.models import (
    Assignment,
    DegradedImage,
    GuidelineVersion,
    Rating,
    Restoration,
    SourceImage,
    Study,
    StudyItem,
    User,
)
from review.labeling.cohorts import ensure_enrolled


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
    id: int
    slug: str
    version: int
    title: str
    body_md: str
    assets_dir: str

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
    """Labels per score: the study's own (settings['scale_labels']) or ITU-R BT.500's 5-point
    impairment scale for a 1..5 study; other scales get bare numbers."""
    custom = (study.settings or {}).get("scale_labels") or {}
    if custom:
        return {int(k): str(v) for k, v in custom.items()}
    if (study.scale_min, study.scale_max) == (1, 5):
        return dict(ITU_IMPAIRMENT)
    return {}


def ratable_studies(session: Session) -> list[StudyChoice]:
    """Studies that have items and a guideline, in name order."""
    has_items = select(StudyItem.id).where(StudyItem.study_id == Study.id).exists()
    rows = session.scalars(select(Study).where(has_items).order_by(Study.name))
    return [StudyChoice(s.id, s.name, s.scale_min, s.scale_max, scale_labels(s)) for s in rows]


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
    r_path, r_sha, d_path, d_sha, s_path, s_sha, is_ref = row
    return ItemView(item_id, ImageRef(r_path, r_sha), ImageRef(d_path, d_sha),
                    ImageRef(s_path, s_sha) if is_ref else None)


def guideline_for(session: Session, study: Study, reviewer_id: int) -> GuidelineView:
    """The guideline version this reviewer rates under (their cohort's; enrols on first use)."""
    gv = session.get(GuidelineVersion, ensure_enrolled(session, study, reviewer_id).guideline_version_id)
    return GuidelineView(gv.id, gv.slug, gv.version, gv.title, gv.body_md, gv.assets_dir)


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
               Assignment.status == "skipped")
    ) or 0
    return ReviewerSummary(rated or 0, skipped, float(mean_ms) if mean_ms is not None else None)


def retracted_draft(session: Session, item_id: int, reviewer_id: int) -> tuple[int, list[str], str] | None:
    """Score, flags and comment of the reviewer's latest retracted rating of an item (after Undo),
    so the form can be pre-filled with what they had."""
    last = session.scalar(
        select(Rating).where(Rating.item_id == item_id, Rating.reviewer_id == reviewer_id,
                             Rating.author_id == reviewer_id)
        .order_by(Rating.id.desc()).limit(1))
    if last is None or last.active:
        return None
    return last.score, list(last.flags or []), last.comment or ""


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
        .where(Rating.active.is_(True), Rating.source == "reviewer")
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
            .where(StudyItem.study_id == study.id, Assignment.status == "skipped")) or 0
        out.append(StudyProgress(study.id, study.name, items, int(gold), study.raters_per_item,
                                 int(ratings), int(complete), skipped))
    return out


@dataclass(frozen=True)
class ReviewerProgress:
    username: str
    display_name: str
    rated: int
    skipped: int
    gold_rated: int
    gold_within: int
    mean_time_ms: float | None

    @property
    def gold_accuracy(self) -> float | None:
        """Share of the reviewer's active gold ratings inside the expected range."""
        return self.gold_within / self.gold_rated if self.gold_rated else None


def reviewer_progress(session: Session, study_id: int) -> list[ReviewerProgress]:
    """Per reviewer: active ratings, skips, and accuracy on gold items (admins only).

    Counts active reviewer-source ratings filed under the reviewer (a QA correction replaces the
    reviewer's judgement, so it no longer counts towards their gold accuracy)."""
    item = aliased(StudyItem)
    within = and_(item.is_gold, item.expected_min.is_not(None),
                  Rating.score >= item.expected_min, Rating.score <= item.expected_max)
    rated = dict((uid, (n, g, w, t)) for uid, n, g, w, t in session.execute(
        select(Rating.reviewer_id, func.count(),
               func.coalesce(func.sum(case((and_(item.is_gold, item.expected_min.is_not(None)), 1),
                                           else_=0)), 0),
               func.coalesce(func.sum(case((within, 1), else_=0)), 0),
               func.avg(Rating.time_taken_ms))
        .join(item, item.id == Rating.item_id)
        .where(item.study_id == study_id, Rating.active.is_(True), Rating.source == "reviewer")
        .group_by(Rating.reviewer_id)))
    skipped = dict(session.execute(
        select(Assignment.reviewer_id, func.count())
        .join(StudyItem, StudyItem.id == Assignment.item_id)
        .where(StudyItem.study_id == study_id, Assignment.status == "skipped")
        .group_by(Assignment.reviewer_id)).all())
    ids = set(rated) | set(skipped)
    if not ids:
        return []
    users = {u.id: u for u in session.scalars(select(User).where(User.id.in_(ids)))}
    rows = []
    for uid in sorted(ids, key=lambda i: users[i].username):
        n, g, w, t = rated.get(uid, (0, 0, 0, None))
        rows.append(ReviewerProgress(users[uid].username, users[uid].display_name, int(n),
                                     int(skipped.get(uid, 0)), int(g), int(w),
                                     float(t) if t is not None else None))
    return rows
