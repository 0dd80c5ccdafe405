"""Quality assurance of ratings: a stratified sample of reviewer ratings goes to QA reviewers, who
accept, reject or correct each one; admins promote items to gold. (The statistics, gold accuracy
and the per-cohort QA summary, are review.analysis.qa_stats.)

Design (the "Quality Assured" questions, arXiv 2407.17596):
- Only reviewers in a QA-on cohort (`StudyReviewer.qa_enabled`, see review.labeling.cohorts) are sampled, so
  the QA-off cohort is an untouched control.
- The sample is stratified by reviewer x blur kind x image content, so every reviewer and every
  kind of picture gets checked at the configured rate (QA's benefit depends on image
  characteristics). Each stratum of n eligible ratings gets ceil(rate * n) of them, picked in a
  reproducible pseudo-random order (sha256 of seed and rating id). Sampling is incremental: a
  second run only tops strata up as new ratings arrive, never drops what was sampled.
- The sample is a table, qa_samples (one row per sampled rating, unique per rating), topped up
  under a row lock on the study so two samplers never draw past the rate.
- Everything is auditable: a correction is a new Rating (source "qa", author = the QA reviewer)
  that supersedes the original, whose `active` flag is cleared in the same transaction; verdicts
  are rows in qa_verdicts. Nothing is deleted or rewritten.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from db.models import (
    Assignment,
    DegradedImage,
    GuidelineVersion,
    QASample,
    QAVerdict,
    Rating,
    Restoration,
    SourceImage,
    Study,
    StudyItem,
    StudyReviewer,
)
from review.accounts.audit import record
from review.accounts.check import require_account
from review.enums import RatingSource, Verdict
from review.errors import ReviewError
from review.labeling.guidelines.files import GUIDELINE_LABEL
from review.labeling.ratings import FLAGS, MAX_COMMENT
from review.labeling.settings import StudySettings, update_settings
from review.labeling.study import draw
from review.labeling.views import ImageRef
from review.policy import Action, roles_for

QA_ROLES = roles_for(Action.QA_REVIEW)


class QAError(ReviewError):
    """A QA request that cannot be carried out; the message says why and what to do."""


# ---------------------------------------------------------------------------------------------
# Settings


def set_qa_options(session: Session, study: Study, *, rate: float | None = None,
                   show_feedback: bool | None = None, actor_id: int | None = None) -> Study:
    """Set the QA sampling rate and whether reviewers see QA feedback on their own ratings."""
    _lock(session, study)
    changes: dict[str, Any] = {}
    if rate is not None:
        _check_rate(rate)
        changes["qa_rate"] = float(rate)
    if show_feedback is not None:
        changes["show_qa_feedback"] = bool(show_feedback)
    update_settings(study, **changes)
    session.flush()
    record(session, "settings.change", actor_id=actor_id, target=study.name, **changes)
    return study


def _lock(session: Session, study: Study) -> None:
    """Re-read the study row under a write lock (PostgreSQL; SQLite's BEGIN IMMEDIATE already
    serialises writers), keeping any change the caller made but did not flush yet."""
    session.flush()
    session.refresh(study, with_for_update=True)


def _check_rate(rate: float) -> None:
    if not isinstance(rate, int | float) or not 0.0 <= float(rate) <= 1.0:
        raise QAError(f"The QA rate must be between 0 and 1 (got {rate!r}).")


# ---------------------------------------------------------------------------------------------
# Sampling


def _hash_order(*parts: object) -> str:
    return draw(*parts).hex()


def stratum_quota(rate: float, n: int) -> int:
    """ceil(rate * n), robust to float noise (0.1 * 30 is 3.0000000000000004, not 4)."""
    return min(n, math.ceil(round(rate * n, 9)))


def _eligible(session: Session, study: Study) -> list[tuple[int, int, str, str]]:
    """(rating_id, reviewer_id, blur kind, content) of the reviewer ratings of QA-on reviewers
    that are active or already judged (a corrected rating is inactive but still counts towards
    its stratum, so a correction never causes an extra draw)."""
    q = (
        select(Rating.id, Rating.reviewer_id, DegradedImage.kind, SourceImage.content)
        .join(StudyItem, StudyItem.id == Rating.item_id)
        .join(Restoration, Restoration.id == StudyItem.restoration_id)
        .join(DegradedImage, DegradedImage.id == Restoration.degraded_id)
        .join(SourceImage, SourceImage.id == DegradedImage.source_id)
        .join(StudyReviewer, (StudyReviewer.study_id == StudyItem.study_id)
              & (StudyReviewer.reviewer_id == Rating.reviewer_id))
        .where(StudyItem.study_id == study.id, Rating.source == RatingSource.REVIEWER,
               StudyReviewer.qa_enabled.is_(True),
               or_(Rating.active.is_(True), exists().where(QAVerdict.rating_id == Rating.id)))
    )
    return [(rid, reviewer, kind, content) for rid, reviewer, kind, content in session.execute(q).all()]


def _verdict_rating_ids(session: Session, study: Study) -> set[int]:
    return set(session.scalars(
        select(QAVerdict.rating_id).join(Rating, Rating.id == QAVerdict.rating_id)
        .join(StudyItem, StudyItem.id == Rating.item_id).where(StudyItem.study_id == study.id)))


def qa_sample(session: Session, study: Study) -> list[int]:
    """Every rating id sampled for QA in this study so far."""
    return sorted(session.scalars(select(QASample.rating_id).where(QASample.study_id == study.id)))


def sample_for_qa(session: Session, study: Study, rate: float | None = None, seed: int = 0, *,
                  actor_id: int | None = None) -> list[int]:
    """Top up the study's QA sample to `rate` per (reviewer, blur kind, content) stratum and
    return the newly sampled rating ids (the full sample is `qa_sample(session, study)`).

    Ratings that already have a verdict or are already sampled count towards their stratum's
    quota and are never sampled again; ratings of QA-off reviewers are never eligible.
    """
    rate = StudySettings.of(study).qa_rate if rate is None else rate
    _check_rate(rate)
    _lock(session, study)  # one sampler at a time per study
    already = set(qa_sample(session, study)) | _verdict_rating_ids(session, study)
    strata: dict[tuple[int, str, str], list[int]] = defaultdict(list)
    for rating_id, reviewer_id, kind, content in _eligible(session, study):
        strata[(reviewer_id, kind, content)].append(rating_id)
    new: list[int] = []
    for members in strata.values():
        want = stratum_quota(rate, len(members)) - sum(1 for r in members if r in already)
        if want <= 0:
            continue
        fresh = sorted((r for r in members if r not in already), key=lambda r: _hash_order(seed, r))
        new.extend(fresh[:want])
    session.add_all(QASample(study_id=study.id, rating_id=r) for r in sorted(new))
    session.flush()
    if new:
        record(session, "qa.sample", actor_id=actor_id, target=study.name, rate=rate, added=len(new))
    return sorted(new)


def why_nothing_sampled(session: Session, study: Study) -> str:
    """Why a sampling run added no rating, in words an admin can act on."""
    settings = StudySettings.of(study)
    if not _eligible(session, study):
        if settings.qa_share == 0.0:
            return ("The study's QA share is 0, so no reviewer is in the QA-on cohort and no rating "
                    "is eligible. Set a QA share when you create a study (it is fixed once "
                    "reviewers join).")
        return "No reviewer in the QA-on cohort has rated yet; sample again once they have."
    if settings.qa_rate == 0.0:
        return "The QA rate is 0; raise it in the QA settings above."
    return (f"Every stratum already holds its share ({settings.qa_rate:.0%}) of the QA-on ratings; "
            "sample again as more ratings arrive.")


# ---------------------------------------------------------------------------------------------
# The QA queue


@dataclass(frozen=True)
class QATask:
    """What a QA reviewer sees for one sampled rating: the rating and the item's images.
    The reviewer's identity is deliberately absent (QA judges the rating, not the person)."""

    rating_id: int
    item_id: int
    score: int
    flags: tuple[str, ...]
    comment: str
    guideline_version_id: int
    guideline_label: str
    scale_min: int
    scale_max: int
    restoration: ImageRef
    blurred: ImageRef
    reference: ImageRef | None  # None: a real blurred photo with no sharp original


def _open_sample(session: Session, study: Study, qa_user_id: int) -> list[int]:
    """Sampled ratings still waiting for a verdict that this QA user may judge."""
    done = _verdict_rating_ids(session, study)
    rows = session.scalars(
        select(Rating.id).join(QASample, QASample.rating_id == Rating.id)
        .where(QASample.study_id == study.id, Rating.active.is_(True),
               Rating.author_id != qa_user_id, Rating.reviewer_id != qa_user_id)
    )
    return [r for r in rows if r not in done]


def next_qa_task(session: Session, study: Study, qa_user_id: int) -> QATask | None:
    """The next sampled rating without a verdict, never one the QA user wrote or was rated as.

    The order is a per-QA-user shuffle, so two QA reviewers working at once rarely meet on the
    same rating (if they do, the second verdict is refused with a clear message).
    """
    open_ids = _open_sample(session, study, qa_user_id)
    if not open_ids:
        return None
    rating_id = min(open_ids, key=lambda r: _hash_order("qa", qa_user_id, r))
    return _task(session, study, rating_id)


def _task(session: Session, study: Study, rating_id: int) -> QATask:
    row = session.execute(
        select(Rating, Restoration.path, Restoration.sha256, DegradedImage.path, DegradedImage.sha256,
               SourceImage.path, SourceImage.sha256, SourceImage.is_reference,
               GUIDELINE_LABEL)
        .join(StudyItem, StudyItem.id == Rating.item_id)
        .join(Restoration, Restoration.id == StudyItem.restoration_id)
        .join(DegradedImage, DegradedImage.id == Restoration.degraded_id)
        .join(SourceImage, SourceImage.id == DegradedImage.source_id)
        .join(GuidelineVersion, GuidelineVersion.id == Rating.guideline_version_id)
        .where(Rating.id == rating_id)
    ).one()
    rating, r_path, r_sha, d_path, d_sha, s_path, s_sha, is_ref, label = row
    return QATask(
        rating_id=rating.id, item_id=rating.item_id, score=rating.score,
        flags=tuple(rating.flags or ()), comment=rating.comment or "",
        guideline_version_id=rating.guideline_version_id, guideline_label=label,
        scale_min=study.scale_min, scale_max=study.scale_max,
        restoration=ImageRef(r_path, r_sha), blurred=ImageRef(d_path, d_sha),
        reference=ImageRef(s_path, s_sha) if is_ref else None,
    )


@dataclass(frozen=True)
class QAProgress:
    sampled: int
    judged: int
    open_for_user: int


def live_sample(session: Session, study: Study) -> tuple[set[int], set[int]]:
    """(sampled, judged): the sampled ratings that still count (judged, or active and so still
    judgeable: a rating withdrawn by its reviewer before QA reached it drops out) plus any rating
    judged outside the sample; and the judged ones."""
    judged = _verdict_rating_ids(session, study)
    active = set(session.scalars(select(Rating.id).join(QASample, QASample.rating_id == Rating.id)
                                 .where(QASample.study_id == study.id, Rating.active.is_(True))))
    return active | judged, judged


def qa_progress(session: Session, study: Study, qa_user_id: int) -> QAProgress:
    """How much of the sample has verdicts, and how much is left for this QA user."""
    sampled, judged = live_sample(session, study)
    return QAProgress(len(sampled), len(judged), len(_open_sample(session, study, qa_user_id)))


# ---------------------------------------------------------------------------------------------
# Verdicts


def _load_for_verdict(session: Session, rating_id: int, qa_user_id: int) -> tuple[Rating, Study]:
    require_account(session, qa_user_id, QA_ROLES, action="give QA verdicts")
    rating = session.get(Rating, rating_id, with_for_update=True)  # serialises verdicts per rating
    if rating is None:
        raise QAError(f"There is no rating {rating_id}.")
    if rating.source != RatingSource.REVIEWER:
        raise QAError("Only reviewers' ratings go through QA; this one is itself a QA correction.")
    if qa_user_id in (rating.author_id, rating.reviewer_id):
        raise QAError("You cannot QA your own rating.")
    item = session.get_one(StudyItem, rating.item_id)
    study = session.get_one(Study, item.study_id)
    member = session.scalar(select(StudyReviewer).where(
        StudyReviewer.study_id == study.id, StudyReviewer.reviewer_id == rating.reviewer_id))
    if member is None or not member.qa_enabled:
        raise QAError("This rating's reviewer is in the QA-off cohort; QA verdicts would spoil the "
                      "comparison between QA and no QA.")
    return rating, study


def _existing(session: Session, rating: Rating, qa_user_id: int, verdict: str,
              reason: str) -> QAVerdict | None:
    """The earlier verdict when this is a harmless repeat; an error when it conflicts."""
    earlier = session.scalar(select(QAVerdict).where(QAVerdict.rating_id == rating.id)
                             .order_by(QAVerdict.id).limit(1))
    if earlier is None:
        return None
    if earlier.qa_user_id == qa_user_id and earlier.verdict == verdict and earlier.reason == reason:
        return earlier
    who = "you" if earlier.qa_user_id == qa_user_id else "another QA reviewer"
    raise QAError(f"This rating already has a QA verdict ({earlier.verdict}, given by {who}); "
                  "a rating gets one verdict only.")


def _clean_reason(reason: str, required: bool) -> str:
    reason = (reason or "").strip()
    if required and not reason:
        raise QAError("Give a reason: the reviewer and the analysis need to know what was wrong.")
    if len(reason) > MAX_COMMENT:
        raise QAError(f"The reason is {len(reason)} characters; the limit is {MAX_COMMENT}.")
    return reason


def _require_active(rating: Rating) -> None:
    if not rating.active:
        raise QAError("This rating was withdrawn or replaced since it was sampled; skip it.")


def _judge(session: Session, rating_id: int, qa_user_id: int, verdict: str, reason: str) -> QAVerdict:
    """Record an accept or reject verdict; a repeat of the same verdict returns the first one."""
    rating, _study = _load_for_verdict(session, rating_id, qa_user_id)
    earlier = _existing(session, rating, qa_user_id, verdict, reason)
    if earlier is not None:
        return earlier
    _require_active(rating)
    row = QAVerdict(rating_id=rating.id, qa_user_id=qa_user_id, verdict=verdict, reason=reason)
    session.add(row)
    session.flush()
    record(session, f"qa.{verdict}", actor_id=qa_user_id, target=f"item {rating.item_id}",
           rating=rating.id, reason=reason)
    return row


def accept(session: Session, rating_id: int, qa_user_id: int) -> QAVerdict:
    """The rating is right as it stands."""
    return _judge(session, rating_id, qa_user_id, "accept", "")


def reject(session: Session, rating_id: int, qa_user_id: int, reason: str) -> QAVerdict:
    """The rating is wrong (or unusable) and QA does not offer a better score; a reason is required."""
    return _judge(session, rating_id, qa_user_id, "reject", _clean_reason(reason, required=True))


def correct(session: Session, rating_id: int, qa_user_id: int, new_score: int, reason: str,
            flags: list[str] | tuple[str, ...] | None = None) -> QAVerdict:
    """Replace the rating with QA's score (and flags): a new active Rating by the QA user that
    supersedes the original, which is deactivated in the same transaction."""
    reason = _clean_reason(reason, required=True)
    rating, study = _load_for_verdict(session, rating_id, qa_user_id)
    earlier = _existing(session, rating, qa_user_id, "correct", reason)
    if earlier is not None:
        return earlier
    _require_active(rating)
    if isinstance(new_score, bool) or not isinstance(new_score, int) or not (
            study.scale_min <= new_score <= study.scale_max):
        raise QAError(f"Pick a corrected score from {study.scale_min} to {study.scale_max}.")
    new_flags = sorted(set((rating.flags or []) if flags is None else flags))
    unknown = set(new_flags) - set(FLAGS)
    if unknown:
        raise QAError(f"Unknown flags: {', '.join(sorted(unknown))}.")
    if new_score == rating.score and new_flags == sorted(set(rating.flags or [])):
        raise QAError("The correction changes neither the score nor the flags; use Accept instead.")
    rating.active = False
    session.flush()  # the one-active-rating index must see the old row inactive first
    fixed = Rating(
        item_id=rating.item_id, reviewer_id=rating.reviewer_id, author_id=qa_user_id, source=RatingSource.QA,
        score=new_score, flags=new_flags, comment=reason,
        guideline_version_id=rating.guideline_version_id, active=True, supersedes_id=rating.id,
    )
    session.add(fixed)
    session.flush()
    verdict = QAVerdict(rating_id=rating.id, qa_user_id=qa_user_id, verdict=Verdict.CORRECT, reason=reason,
                        corrected_rating_id=fixed.id)
    session.add(verdict)
    session.flush()
    record(session, "qa.correct", actor_id=qa_user_id, target=f"item {rating.item_id}", rating=rating.id,
           old_score=rating.score, new_score=new_score, reason=reason)
    return verdict


# ---------------------------------------------------------------------------------------------
# Feedback for reviewers


def feedback_for(session: Session, study: Study, reviewer_id: int) -> list[dict[str, Any]]:
    """QA verdicts on this reviewer's own ratings, newest first, when the study shows feedback.

    Only what helps the reviewer learn: their score, the verdict, the reason, the corrected score
    and flags. Never who the QA reviewer was, and nothing about anyone else's ratings.
    """
    if not StudySettings.of(study).show_qa_feedback:
        return []
    rows = session.execute(
        select(QAVerdict.verdict, QAVerdict.reason, QAVerdict.created_at, QAVerdict.corrected_rating_id,
               Rating.id, Rating.item_id, Rating.score, Rating.flags)
        .join(Rating, Rating.id == QAVerdict.rating_id)
        .join(StudyItem, StudyItem.id == Rating.item_id)
        .where(StudyItem.study_id == study.id, Rating.reviewer_id == reviewer_id,
               Rating.author_id == reviewer_id)
        .order_by(QAVerdict.created_at.desc(), QAVerdict.id.desc())
    ).all()
    corrected_ids = [r.corrected_rating_id for r in rows if r.corrected_rating_id is not None]
    corrections = {r.id: r for r in session.scalars(select(Rating).where(Rating.id.in_(corrected_ids)))}
    out = []
    for verdict, reason, at, corrected_id, rating_id, item_id, score, flags in rows:
        fixed = corrections.get(corrected_id)
        out.append({
            "rating_id": rating_id,
            "item_id": item_id,
            "your_score": score,
            "your_flags": list(flags or []),
            "verdict": verdict,
            "reason": reason,
            "corrected_score": fixed.score if fixed is not None else None,
            "corrected_flags": list(fixed.flags or []) if fixed is not None else None,
            "at": at,
        })
    return out


# ---------------------------------------------------------------------------------------------
# Gold items


def _item_with_range(session: Session, item_id: int, expected_min: int, expected_max: int) -> StudyItem:
    """The study item, once the expected range is whole scores inside its study's scale."""
    item = session.get(StudyItem, item_id)
    if item is None:
        raise QAError(f"There is no study item {item_id}.")
    study = session.get_one(Study, item.study_id)
    for value in (expected_min, expected_max):
        if isinstance(value, bool) or not isinstance(value, int):
            raise QAError("The expected range must be whole scores.")
    if not study.scale_min <= expected_min <= expected_max <= study.scale_max:
        raise QAError(f"The expected range {expected_min}-{expected_max} must satisfy "
                      f"{study.scale_min} <= min <= max <= {study.scale_max}.")
    return item


def promote_to_gold(session: Session, item_id: int, expected_min: int, expected_max: int) -> StudyItem:
    """Make an item a gold item with the expected score range (inside the study's scale)."""
    item = _item_with_range(session, item_id, expected_min, expected_max)
    item.is_gold, item.expected_min, item.expected_max = True, expected_min, expected_max
    session.flush()
    return item


MAX_TRAINING_REASON = 1000


def mark_training(session: Session, item_id: int, expected_min: int, expected_max: int, reason: str, *,
                  actor_id: int | None = None) -> StudyItem:
    """Make an item a crowd pool's training example: shown before live items with its expected
    range and the guideline's reason, never handed out as a live item. An item someone has
    already rated stays a live item (its ratings would otherwise vanish from the study)."""
    item = _item_with_range(session, item_id, expected_min, expected_max)
    reason = reason.strip()
    if not reason or len(reason) > MAX_TRAINING_REASON:
        raise QAError(f"Give the guideline's reason for the expected answer (1-{MAX_TRAINING_REASON} "
                      "characters): participants read it after answering.")
    if session.scalar(select(Assignment.id).where(Assignment.item_id == item.id).limit(1)) is not None:
        raise QAError(f"Item {item.id} has already been given to raters; choose an item nobody has rated "
                      "as a training example.")
    item.is_training, item.expected_min, item.expected_max = True, expected_min, expected_max
    item.training_reason = reason
    session.flush()
    record(session, "study.edit", actor_id=actor_id, target=f"study {item.study_id}", training_item=item.id,
           expected=f"{expected_min}-{expected_max}")
    return item


def unmark_training(session: Session, item_id: int, *, actor_id: int | None = None) -> StudyItem:
    """Return a training example to the live items (its expected range stays, as for gold)."""
    item = session.get(StudyItem, item_id)
    if item is None:
        raise QAError(f"There is no study item {item_id}.")
    item.is_training, item.training_reason = False, ""
    session.flush()
    record(session, "study.edit", actor_id=actor_id, target=f"study {item.study_id}", live_item=item.id)
    return item


def training_examples(session: Session, study_id: int) -> list[StudyItem]:
    """The study's training examples, by id."""
    return list(session.scalars(select(StudyItem).where(StudyItem.study_id == study_id,
                                                        StudyItem.is_training.is_(True))
                                .order_by(StudyItem.id)))
