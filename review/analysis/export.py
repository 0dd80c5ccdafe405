"""Exports: every rating in long format with its context, the wide item x rater matrix, and the
files analysts and other tools read (CSV, JSON Lines, Parquet).

Long format is one row per rating row (active ones by default; `include_history=True` adds the
superseded rows). Columns: item, rater, score, flags, comment, guideline_version, qa_verdict,
qa_cohort, time_taken_ms, created_at, rating_id, supersedes_id, active, source, is_gold,
expected_min, expected_max, restorer, restorer_params, strength, seed, blur_kind, blur_level,
content, source_title, reference_group, is_hidden_reference, is_smoke_test, study.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from sqlalchemy import String, and_, cast, select
from sqlalchemy.orm import Session

from db.models import (
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

FORMATS = ("csv", "jsonl", "parquet")


def ratings_frame(session: Session, study: Study, *, include_history: bool = False) -> pd.DataFrame:
    """All ratings of a study with item, rater, guideline, QA and image characteristics."""
    q = (
        select(
            Rating.id.label("rating_id"),
            StudyItem.id.label("item"),
            User.username.label("rater"),
            Rating.score,
            Rating.flags,
            Rating.comment,
            (GuidelineVersion.slug + "-v" + cast(GuidelineVersion.version, String))
            .label("guideline_version"),
            Rating.time_taken_ms,
            Rating.created_at,
            Rating.supersedes_id,
            Rating.active,
            Rating.source,
            StudyItem.is_gold,
            StudyItem.expected_min,
            StudyItem.expected_max,
            Restoration.method.label("restorer"),
            Restoration.params.label("restorer_params"),
            Restoration.is_smoke_test,
            DegradedImage.kind.label("blur_kind"),
            DegradedImage.level.label("blur_level"),
            SourceImage.id.label("reference_group"),
            SourceImage.content,
            SourceImage.title.label("source_title"),
            StudyReviewer.cohort.label("cohort"),
            StudyReviewer.qa_enabled,
        )
        .join(StudyItem, StudyItem.id == Rating.item_id)
        .join(User, User.id == Rating.reviewer_id)
        .join(GuidelineVersion, GuidelineVersion.id == Rating.guideline_version_id)
        .join(Restoration, Restoration.id == StudyItem.restoration_id)
        .join(DegradedImage, DegradedImage.id == Restoration.degraded_id)
        .join(SourceImage, SourceImage.id == DegradedImage.source_id)
        .outerjoin(StudyReviewer, and_(StudyReviewer.study_id == StudyItem.study_id,
                                       StudyReviewer.reviewer_id == Rating.reviewer_id))
        .where(StudyItem.study_id == study.id)
        .order_by(Rating.id)
    )
    if not include_history:
        q = q.where(Rating.active.is_(True))
    df = pd.DataFrame(session.execute(q).mappings().all())
    if df.empty:
        return pd.DataFrame(columns=_COLUMNS)
    verdicts = dict(session.execute(select(QAVerdict.rating_id, QAVerdict.verdict)).all())
    corrected_from = dict(session.execute(
        select(QAVerdict.corrected_rating_id, QAVerdict.verdict)
        .where(QAVerdict.corrected_rating_id.is_not(None))).all())
    df["qa_verdict"] = [verdicts.get(r, corrected_from.get(r)) for r in df["rating_id"]]
    df["qa_cohort"] = df["qa_enabled"].map({True: "qa", False: "no_qa"}).fillna("no_qa")
    df["is_hidden_reference"] = df["restorer"] == "hidden_reference"
    df["strength"] = [p.get("strength") if isinstance(p, dict) else None for p in df["restorer_params"]]
    df["seed"] = [p.get("seed") if isinstance(p, dict) else None for p in df["restorer_params"]]
    df["flags"] = [",".join(f or []) for f in df["flags"]]
    df["restorer_params"] = [json.dumps(p or {}, sort_keys=True) for p in df["restorer_params"]]
    df["study"] = study.name
    return df[_COLUMNS]


_COLUMNS = [
    "item", "rater", "score", "flags", "comment", "guideline_version", "qa_verdict", "qa_cohort",
    "cohort", "time_taken_ms", "created_at", "rating_id", "supersedes_id", "active", "source",
    "is_gold", "expected_min", "expected_max", "restorer", "restorer_params", "strength", "seed",
    "blur_kind", "blur_level", "content", "source_title", "reference_group",
    "is_hidden_reference", "is_smoke_test", "study",
]


def wide_matrix(df: pd.DataFrame) -> pd.DataFrame:
    """Items as rows, raters as columns, scores in cells (NaN = not rated): the layout R's irr
    package and Python's krippendorff (transposed) take."""
    if df.empty:
        return pd.DataFrame()
    return df.pivot_table(index="item", columns="rater", values="score", aggfunc="first")


def write_frame(df: pd.DataFrame, path: Path, fmt: str | None = None) -> Path:
    """Write long-format ratings as CSV, JSON Lines or Parquet (format from `fmt` or suffix)."""
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt == "json":
        fmt = "jsonl"
    if fmt not in FORMATS:
        raise ValueError(f"Unknown export format {fmt!r}; use one of {', '.join(FORMATS)}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    out = df.copy()
    if "created_at" in out:
        out["created_at"] = pd.to_datetime(out["created_at"], utc=True).map(
            lambda t: t.isoformat() if pd.notna(t) else None)
    if fmt == "csv":
        out.to_csv(path, index=False)
    elif fmt == "jsonl":
        out.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        out.to_parquet(path, index=False)
    return path
