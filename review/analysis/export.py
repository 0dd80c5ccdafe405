"""Exports: every rating in long format with its context, the wide item x rater matrix, and the
files analysts and other tools read (CSV, JSON Lines, Parquet; the report as JSON).

Long format is one row per rating row (active ones by default; `include_history=True` adds the
superseded rows). Columns: item, rater, score, reviewer_score, flags, comment, guideline_version,
qa_verdict, qa_cohort, cohort, time_taken_ms, created_at, rating_id, supersedes_id, active, source,
is_gold, expected_min, expected_max, restorer, restorer_params, model_identity (the content
identity of the weights that made the restoration, '' for restorers without a model), strength,
seed, blur_kind,
blur_level, content, source_title, reference_group, is_hidden_reference, is_smoke_test, study,
settled_score and settlement_note (the item's settlement, review.labeling.disagreements),
simulated (the rater belongs to a simulated panel, review.labeling.simulated_panel).

CSV cells of text columns (and text headers and row labels) that a spreadsheet would run as a
formula, those beginning with =, +, -, @, a tab or a carriage return, are written with a leading
single quote, as OWASP advises against CSV injection; numeric columns (-1.5) are left as numbers.
`ratings_import` takes the quote off again, so an export imports back unchanged.

`score` is the rating as the study ends up with it (a QA correction's score on a corrected
rating); `reviewer_score` is what the rater gave themselves (on a QA correction's row, the score
of the rating it replaced), the score gold accuracy judges (review.analysis.agreement.gold_of).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pandas as pd
from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from db.models import (
    CleansingDecision,
    DegradedImage,
    GuidelineVersion,
    QAVerdict,
    RaterPool,
    Rating,
    Restoration,
    SourceImage,
    Study,
    StudyItem,
    StudyReviewer,
    User,
)
from review.analysis.crowd_cleansing import current_decisions, set_aside_rating_ids, unused_rating_ids
from review.analysis.formatting import neutralise_cell
from review.analysis.report_types import RatingsRead
from review.enums import RatingSource
from review.labeling.disagreements import latest_settlements
from review.labeling.guidelines.files import GUIDELINE_LABEL
from review.labeling.pools import IN_HOUSE_NAME
from review.media.restore.controls import HiddenReference

FORMATS = ("csv", "jsonl", "parquet")
MIME = {"csv": "text/csv", "jsonl": "application/x-ndjson", "parquet": "application/vnd.apache.parquet",
        "json": "application/json", "md": "text/markdown", "html": "text/html"}


def ratings_frame(session: Session, study: Study, *, include_history: bool = False,
                  gold_only: bool = False) -> pd.DataFrame:
    """All ratings of a study (of its gold items only with `gold_only`) with item, rater,
    guideline, QA and image characteristics, the rater's pool and whether data cleansing uses
    the rating (`used`; review.analysis.crowd_cleansing). Ratings cleansing set aside to reopen
    their items are inactive but still the study's: they are here, not used."""
    q = (
        select(
            Rating.id.label("rating_id"),
            StudyItem.id.label("item"),
            User.username.label("rater"),
            User.id.label("reviewer_id"),
            User.simulated,
            Rating.score,
            Rating.flags,
            Rating.comment,
            GUIDELINE_LABEL.label("guideline_version"),
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
            Restoration.model_identity,
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
    decisions = current_decisions(session, study.id)  # read once for both sets
    unused = unused_rating_ids(session, study.id, decisions)
    if not include_history:
        q = q.where(or_(Rating.active.is_(True),
                        Rating.id.in_(set_aside_rating_ids(session, study.id, decisions))))
    if gold_only:
        q = q.where(StudyItem.is_gold.is_(True))
    df = pd.DataFrame(session.execute(q).mappings().all())
    if df.empty:
        return pd.DataFrame(columns=_COLUMNS)
    replaced = pd.to_numeric(df["supersedes_id"].where(df["source"] == RatingSource.QA), errors="coerce")
    own = dict(session.execute(select(Rating.id, Rating.score)
                               .where(Rating.id.in_(replaced.dropna().astype(int).tolist()))).all())
    df["reviewer_score"] = replaced.map(own).fillna(df["score"]).astype(int)
    of_study = (select(QAVerdict).join(Rating, Rating.id == QAVerdict.rating_id)
                .join(StudyItem, StudyItem.id == Rating.item_id).where(StudyItem.study_id == study.id)
                .subquery())
    verdicts = dict(session.execute(select(of_study.c.rating_id, of_study.c.verdict)).all())
    corrected_from = dict(session.execute(
        select(of_study.c.corrected_rating_id, of_study.c.verdict)
        .where(of_study.c.corrected_rating_id.is_not(None))).all())
    df["qa_verdict"] = [verdicts.get(r, corrected_from.get(r)) for r in df["rating_id"]]
    df["qa_cohort"] = df["qa_enabled"].map({True: "qa", False: "no_qa"}).fillna("no_qa")
    df["is_hidden_reference"] = df["restorer"] == HiddenReference.name
    df["strength"] = [p.get("strength") if isinstance(p, dict) else None for p in df["restorer_params"]]
    df["seed"] = [p.get("seed") if isinstance(p, dict) else None for p in df["restorer_params"]]
    df["flags"] = [",".join(f or []) for f in df["flags"]]
    df["restorer_params"] = [json.dumps(p or {}, sort_keys=True) for p in df["restorer_params"]]
    df["study"] = study.name
    settled = latest_settlements(session, study.id)  # beside the scores, never in their place
    df["settled_score"] = pd.array([getattr(settled.get(i), "consensus_score", None) for i in df["item"]],
                                   dtype="Int64")
    df["settlement_note"] = [getattr(settled.get(i), "note", "") for i in df["item"]]
    pools = dict(session.execute(select(StudyReviewer.reviewer_id, RaterPool.name)
                                 .join(RaterPool, RaterPool.id == StudyReviewer.pool_id)
                                 .where(StudyReviewer.study_id == study.id)).all())
    df["pool"] = [pools.get(u, IN_HOUSE_NAME) for u in df["reviewer_id"]]
    df["used"] = ~df["rating_id"].isin(unused)
    return df[_COLUMNS]


#: Which ratings an analysis reads: those data cleansing uses, or every one.
RATINGS_CHOICES = ("used", "all")
RATINGS_WORDS = {"used": "used ratings only (data cleansing applied)", "all": "all ratings"}


def default_ratings(df: pd.DataFrame) -> str:
    """"used" once the study has cleansing decisions that leave ratings out, else "all"."""
    return "used" if "used" in df and not df["used"].all() else "all"


def ratings_read(df: pd.DataFrame, which: str) -> RatingsRead | None:
    """What a page, report or answer says about the ratings it read from `df` (a study's whole
    ratings frame): None where data cleansing leaves nothing out (nothing to say then)."""
    if which not in RATINGS_CHOICES:
        raise ValueError(f"ratings must be one of {', '.join(RATINGS_CHOICES)} (got {which!r})")
    if "used" not in df or df["used"].all():
        return None
    out = df[~df["used"].astype(bool)]
    return RatingsRead(which, len(out), int(out["rater"].nunique()))


def ratings_in_use(df: pd.DataFrame, which: str) -> pd.DataFrame:
    """The frame an analysis reads: the used ratings, or all of them."""
    if which not in RATINGS_CHOICES:
        raise ValueError(f"ratings must be one of {', '.join(RATINGS_CHOICES)} (got {which!r})")
    return df[df["used"]].reset_index(drop=True) if which == "used" and "used" in df else df


_COLUMNS = [
    "item", "rater", "score", "reviewer_score", "flags", "comment", "guideline_version", "qa_verdict",
    "qa_cohort", "cohort", "time_taken_ms", "created_at", "rating_id", "supersedes_id", "active", "source",
    "is_gold", "expected_min", "expected_max", "restorer", "restorer_params", "model_identity", "strength",
    "seed", "blur_kind", "blur_level", "content", "source_title", "reference_group",
    "is_hidden_reference", "is_smoke_test", "study", "settled_score", "settlement_note", "simulated",
    "pool", "used",
]


#: RFC 4180's line end; with it the writer also quotes a lone carriage return inside a comment,
#: which would otherwise split the row for every reader.
CSV_EOL = "\r\n"
def neutralise_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of the table safe to open in a spreadsheet: `neutralise_cell` on every text cell,
    the column headers and the row labels; numeric columns are untouched."""
    out = frame.copy()
    for c in out.columns:
        if not pd.api.types.is_numeric_dtype(out[c]) and not pd.api.types.is_datetime64_any_dtype(out[c]):
            out[c] = out[c].map(neutralise_cell)
    out.columns = out.columns.map(neutralise_cell)
    out.index = out.index.map(neutralise_cell)
    out.index.name = neutralise_cell(frame.index.name)
    out.columns.name = neutralise_cell(frame.columns.name)
    return out


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
        neutralise_frame(out).to_csv(path, index=False, lineterminator=CSV_EOL)
    elif fmt == "jsonl":
        out.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        out.to_parquet(path, index=False)
    return path


def ratings_bytes(df: pd.DataFrame, fmt: str) -> bytes:
    """Long-format ratings as CSV, JSON Lines or Parquet bytes, exactly as `write_frame` writes
    them (the Analyst page's downloads match the CLI export)."""
    with tempfile.TemporaryDirectory(prefix="review-export-") as tmp:
        path = write_frame(df, Path(tmp) / f"ratings.{fmt}", fmt)
        return path.read_bytes()


def frame_csv(frame: pd.DataFrame, *, index: bool = False) -> bytes:
    """A table as UTF-8 CSV (missing numbers as empty cells; formula-like text neutralised)."""
    return neutralise_frame(frame).to_csv(index=index, lineterminator=CSV_EOL).encode("utf-8")


def matrix_csv(df: pd.DataFrame) -> bytes:
    """The wide item x rater score matrix as CSV (empty cell = not rated)."""
    return frame_csv(wide_matrix(df), index=True)


def ratings_fingerprint(session: Session, study_id: int) -> tuple[int, ...]:
    """Changes whenever a rating of the study is added, undone or superseded, a QA verdict is
    given, a reviewer joins (their cohort is part of `ratings_frame`) or a cleansing decision is
    made (it decides `used`): a cache key for it."""
    n, max_id, n_active = session.execute(
        select(func.count(Rating.id), func.max(Rating.id),
               func.sum(case((Rating.active.is_(True), 1), else_=0)))
        .join(StudyItem, StudyItem.id == Rating.item_id)
        .where(StudyItem.study_id == study_id)).one()
    qa = session.scalar(select(func.max(QAVerdict.id)))
    members = session.scalar(select(func.count(StudyReviewer.id))
                             .where(StudyReviewer.study_id == study_id))
    decided = session.scalar(select(func.max(CleansingDecision.id)))
    return (int(n or 0), int(max_id or 0), int(n_active or 0), int(qa or 0), int(members or 0),
            int(decided or 0))
