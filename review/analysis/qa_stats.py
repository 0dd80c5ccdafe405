"""QA statistics: reviewers' accuracy on gold items and the per-cohort QA summary, for the Studies
and QA pages.

Why in analysis: gold accuracy has one definition (review.analysis.agreement.gold_of, the same
that the statistics report and so the Analysis page use), judged on the reviewer's own score: a
QA correction neither rescues a reviewer's miss nor hides it. The figures come from the study's
long-format ratings (review.analysis.export.ratings_frame), so the three pages cannot disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import GuidelineVersion, QAVerdict, Rating, Study, StudyItem, StudyReviewer
from review.analysis import agreement as ag
from review.analysis.export import GUIDELINE_LABEL, default_ratings, ratings_frame, ratings_in_use
from review.enums import RatingSource
from review.labeling.qa import live_sample

#: What gold accuracy can be broken down by (the ratings table calls a reviewer its "rater").
GOLD_BY = {"reviewer": "rater", "guideline_version": "guideline_version", "qa_cohort": "qa_cohort"}


def gold_accuracy_frame(df: pd.DataFrame, by: str, scale: Sequence[int] = (1, 5)) -> pd.DataFrame:
    """Per reviewer, guideline version or QA cohort of a long-format ratings table: gold ratings
    judged (n), how many fell in the expected range (within), their share and its Wilson 95% CI.

    The ratings are the report's (review.analysis.report.build_report): repeated (item, rater)
    rows keep the last, and each is judged by review.analysis.agreement.gold_of.
    """
    if by not in GOLD_BY:
        raise ValueError(f"Gold accuracy can be broken down by {', '.join(GOLD_BY)}, not {by!r}.")
    columns = [by, "n", "within", "accuracy", "ci_low", "ci_high"]
    r = ag.encode_ratings(df, scale)
    gold = ag.gold_of(df, r) if r.n_ratings else None
    if gold is None or gold.n == 0:
        return pd.DataFrame(columns=columns)
    judged = np.isfinite(gold.correct)
    frame = pd.DataFrame({by: r.column(df, GOLD_BY[by])[judged], "within": gold.correct[judged] == 1})
    rows = []
    for key, group in frame.groupby(by, sort=True):
        n, k = len(group), int(group["within"].sum())
        lo, hi = ag.wilson_interval(k, n)  # a group has at least one rating
        rows.append({by: key, "n": n, "within": k, "accuracy": k / n, "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows, columns=columns)


def gold_accuracy(session: Session, study_id: int, by: str, which: str | None = None) -> pd.DataFrame:
    """Gold accuracy of a study's active ratings per reviewer, guideline version or QA cohort
    (see gold_accuracy_frame): what the Studies page (per reviewer) and the QA page (per cohort)
    show, and what the Analysis page's report gives per rater. `which`: the ratings data
    cleansing uses ("used", the default once it leaves any out) or "all"."""
    return gold_accuracy_read(session, study_id, by, which)[0]


def gold_accuracy_read(session: Session, study_id: int, by: str,
                       which: str | None = None) -> tuple[pd.DataFrame, str]:
    """`gold_accuracy` and which ratings it read ("used" or "all"), for the page to say so."""
    study = session.get_one(Study, study_id)
    df = ratings_frame(session, study, gold_only=True)
    which = which or default_ratings(df)
    return gold_accuracy_frame(ratings_in_use(df, which), by, (study.scale_min, study.scale_max)), which


def qa_summary(session: Session, study_id: int) -> pd.DataFrame:
    """Per cohort (guideline version x QA on/off): reviewers, active reviewer ratings, how many
    were sampled, accepted, rejected, corrected, and the mean absolute score correction."""
    members = session.execute(
        select(StudyReviewer.reviewer_id, StudyReviewer.qa_enabled, GUIDELINE_LABEL)
        .join(GuidelineVersion, GuidelineVersion.id == StudyReviewer.guideline_version_id)
        .where(StudyReviewer.study_id == study_id)
    ).all()
    cohort_of = {rid: (label, "qa" if qa else "no_qa") for rid, qa, label in members}
    stats: dict[tuple[str, str], dict[str, Any]] = {}
    for key in sorted(set(cohort_of.values())):
        stats[key] = {"guideline_version": key[0], "qa_cohort": key[1], "reviewers": 0,
                      "ratings": 0, "sampled": 0, "accepted": 0, "rejected": 0, "corrected": 0,
                      "_corrections": []}
    for key in cohort_of.values():
        stats[key]["reviewers"] += 1
    reviewer_ratings = session.execute(
        select(Rating.id, Rating.reviewer_id, Rating.active).join(StudyItem, StudyItem.id == Rating.item_id)
        .where(StudyItem.study_id == study_id, Rating.source == RatingSource.REVIEWER)
    ).all()
    cohort_of_rating = {rid: cohort_of[reviewer] for rid, reviewer, _active in reviewer_ratings
                        if reviewer in cohort_of}
    for _rid, reviewer, active in reviewer_ratings:
        if active and reviewer in cohort_of:
            stats[cohort_of[reviewer]]["ratings"] += 1
    verdicts = session.execute(
        select(QAVerdict.rating_id, QAVerdict.verdict, Rating.score, QAVerdict.corrected_rating_id)
        .join(Rating, Rating.id == QAVerdict.rating_id)
        .join(StudyItem, StudyItem.id == Rating.item_id).where(StudyItem.study_id == study_id)
    ).all()
    corrected_scores = dict(session.execute(select(Rating.id, Rating.score).where(
        Rating.id.in_([v.corrected_rating_id for v in verdicts if v.corrected_rating_id is not None]))).all())
    sampled, _judged = live_sample(session, session.get_one(Study, study_id))
    for rid in sampled:
        cohort = cohort_of_rating.get(rid)
        if cohort is not None:
            stats[cohort]["sampled"] += 1
    names = {"accept": "accepted", "reject": "rejected", "correct": "corrected"}
    for rating_id, verdict, score, corrected_id in verdicts:
        cohort = cohort_of_rating.get(rating_id)
        if cohort is None:
            continue
        stats[cohort][names[verdict]] += 1
        if corrected_id is not None:
            stats[cohort]["_corrections"].append(abs(corrected_scores[corrected_id] - score))
    rows = []
    for row in stats.values():
        corrections = row.pop("_corrections")
        row["mean_abs_correction"] = sum(corrections) / len(corrections) if corrections else float("nan")
        rows.append(row)
    columns = ["guideline_version", "qa_cohort", "reviewers", "ratings", "sampled", "accepted",
               "rejected", "corrected", "mean_abs_correction"]
    return pd.DataFrame(rows, columns=columns)
