"""Reviewer cohorts for guideline and QA experiments (the "Quality Assured" design).

A study may list several guideline versions (`StudySettings.guideline_version_ids`) and run QA
for a share of its reviewers (`StudySettings.qa_share`, 0..1). When a reviewer first receives work in
the study they join the arm (guideline version x QA on/off) with the fewest members so far, ties
broken by a reproducible hash, so arms stay balanced and comparable on the same items.
"""

from __future__ import annotations

from itertools import product

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import Assignment, Study, StudyItem, StudyReviewer
from db.rows import get_or_create
from review.enums import ANSWERED
from review.errors import ReviewError
from review.labeling.settings import StudySettings
from review.labeling.study import draw


class CohortError(ReviewError):
    """The study's experiment settings are inconsistent."""


def guideline_arms(study: Study) -> list[int]:
    ids = list(StudySettings.of(study).guideline_version_ids)
    if not ids:
        if study.guideline_version_id is None:
            raise CohortError(f"Study {study.name!r} has no guideline version; assign one first.")
        ids = [study.guideline_version_id]
    return ids


def qa_arms(study: Study) -> list[bool]:
    share = StudySettings.of(study).qa_share
    if share == 0.0:
        return [False]
    if share == 1.0:
        return [True]
    # Proportional arms: e.g. share 0.5 -> [True, False]; 0.25 -> [True, False, False, False].
    slots = max(2, round(1 / min(share, 1 - share)))
    n_qa = round(share * slots)
    return [True] * n_qa + [False] * (slots - n_qa)


def _tiebreak(*parts: object) -> str:
    return draw(*parts).hex()


def finished_count(session: Session, study: Study, reviewer_id: int) -> int:
    """Items the reviewer has done or skipped in the study, counted from the assignments; the
    member row keeps the same number as `finished_items` so the hot path never counts."""
    return session.scalar(
        select(func.count())
        .select_from(Assignment)
        .join(StudyItem, StudyItem.id == Assignment.item_id)
        .where(StudyItem.study_id == study.id, Assignment.reviewer_id == reviewer_id,
               Assignment.status.in_(ANSWERED))
    ) or 0


def joined_counts(session: Session) -> dict[int, int]:
    """Reviewers enrolled per study id (a study's guideline arms are fixed once any joined)."""
    return dict(session.execute(select(StudyReviewer.study_id, func.count())
                                .group_by(StudyReviewer.study_id)).all())


def add_finished(member: StudyReviewer, delta: int) -> None:
    """Add ``delta`` to the member's finished_items in SQL (``x = x + delta``), so two tabs of one
    reviewer writing at once on PostgreSQL cannot lose an update."""
    member.finished_items = StudyReviewer.finished_items + delta


def ensure_enrolled(session: Session, study: Study, reviewer_id: int) -> StudyReviewer:
    """The reviewer's cohort in this study, assigning a balanced random arm on first use."""

    def enrol() -> StudyReviewer:
        arms = list(product(guideline_arms(study), enumerate(qa_arms(study))))
        counts = dict(session.execute(
            select(StudyReviewer.cohort, func.count()).where(StudyReviewer.study_id == study.id)
            .group_by(StudyReviewer.cohort)).all())

        def label(arm: tuple[int, tuple[int, bool]]) -> str:
            gv, (slot, qa) = arm
            return f"g{gv}-{'qa' if qa else 'noqa'}-{slot}"

        best = min(arms, key=lambda arm: (counts.get(label(arm), 0),
                                          _tiebreak(study.id, reviewer_id, label(arm))))
        gv, (_slot, qa) = best
        return StudyReviewer(study_id=study.id, reviewer_id=reviewer_id, guideline_version_id=gv,
                             qa_enabled=qa, cohort=label(best),
                             finished_items=finished_count(session, study, reviewer_id))

    member, _new = get_or_create(session, StudyReviewer,
                                 {"study_id": study.id, "reviewer_id": reviewer_id}, enrol)
    return member
