"""Import long-format ratings collected elsewhere (or exported from another lab database) as a
study of external items, so they can be analysed, compared and exported like native ratings.

Each distinct `item` becomes a study item backed by a placeholder catalog entry (no image:
`origin` says "imported"); each `rater` becomes an inactive reviewer account that cannot log in
(review.accounts.users.rater_account, under every account's name and length rules).
Optional columns carried over: flags, comment, guideline_version ("slug vN"), time_taken_ms,
created_at, is_gold, expected_min, expected_max, restorer, restorer_params (a JSON object, as
exports write it), strength, seed, blur_kind, blur_level, content.
Importing into an existing study name is refused, so nothing is ever merged by accident.

An imported restoration's parameters are the file's `restorer_params` (plus `strength` and
`seed` where given as columns), never the item's key: items of one restorer at one setting and
blur kind form one curve across blur levels in the answer (review.answer.boundary.curves_of),
as generated ones do.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from functools import partial
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import (
    DegradedImage,
    GuidelineVersion,
    Rating,
    Restoration,
    SourceImage,
    Study,
    StudyItem,
    StudyReviewer,
    User,
)
from db.rows import get_or_create
from review.accounts.users import UserError, rater_account
from review.enums import BlurKind, RatingSource
from review.labeling.study import StudyConfig, StudyError, ensure_study, order_key
from review.media.catalog import CONTENT_TYPES

#: "fidelity v4" (the label exports write) or "fidelity-v4" (files exported before it changed).
_GV = re.compile(r"^(?P<slug>[A-Za-z0-9_.-]+?)[ -]v(?P<version>\d+)$")


def _val(row: dict[str, Any], key: str, default: Any = None) -> Any:
    v = row.get(key, default)
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return default
    return v


def _guideline(session: Session, label: str | None) -> GuidelineVersion:
    slug, version = "imported", 1
    if label and (m := _GV.match(str(label))):
        slug, version = m["slug"], int(m["version"])
    body = "Imported ratings: the guideline text was not part of the import."
    gv, _new = get_or_create(
        session, GuidelineVersion, {"slug": slug, "version": version}, lambda: GuidelineVersion(
            slug=slug, version=version, title=f"{slug} v{version} (imported)", body_md=body,
            change_note="imported", content_sha256=hashlib.sha256(body.encode()).hexdigest()))
    return gv


def import_ratings(session: Session, df: pd.DataFrame, study_name: str,
                   scale: tuple[int, int] = (1, 5)) -> Study:
    """Create study `study_name` holding the ratings of `df` (validated long format)."""
    if session.scalar(select(Study).where(Study.name == study_name)) is not None:
        raise StudyError(f"A study named {study_name!r} already exists; import under a new name.")
    rows = [{str(k): v for k, v in r.items()} for r in df.to_dict("records")]  # keyed by column name
    if not rows:
        raise StudyError("The ratings file has no rows.")
    per_item = df.groupby("item")["rater"].nunique()
    study = ensure_study(session, StudyConfig(
        name=study_name, description=f"Imported: {len(rows)} ratings.",
        raters_per_item=max(1, int(per_item.max())), gold_rate=0.0,
        scale_min=scale[0], scale_max=scale[1]), None)
    items: dict[str, StudyItem] = {}
    users: dict[str, User] = {}
    for row in rows:
        item_key, rater = str(row["item"]), str(row["rater"])
        if item_key not in items:
            items[item_key] = _external_item(session, study, item_key, row)
        if rater not in users:
            users[rater] = _external_user(session, study, rater)
        gv = _guideline(session, _val(row, "guideline_version"))
        if study.guideline_version_id is None:
            study.guideline_version_id = gv.id
        user = users[rater]
        get_or_create(session, StudyReviewer, {"study_id": study.id, "reviewer_id": user.id},
                      partial(StudyReviewer, study_id=study.id, reviewer_id=user.id,
                              guideline_version_id=gv.id,
                              qa_enabled=str(_val(row, "qa_cohort", "no_qa")) == "qa",
                              cohort=str(_val(row, "cohort", "imported"))))
        flags = _val(row, "flags", "")
        created = _val(row, "created_at")
        # A repeated (item, rater) pair: the later row supersedes the earlier one.
        previous = session.scalar(select(Rating).where(
            Rating.item_id == items[item_key].id, Rating.reviewer_id == user.id,
            Rating.active.is_(True)))
        if previous is not None:
            previous.active = False
            session.flush()
        session.add(Rating(
            item_id=items[item_key].id, reviewer_id=user.id, author_id=user.id, source=RatingSource.REVIEWER,
            score=int(row["score"]),
            flags=[f for f in str(flags).split(",") if f] if flags else [],
            comment=str(_val(row, "comment", "")),
            guideline_version_id=gv.id,
            time_taken_ms=int(_val(row, "time_taken_ms")) if _val(row, "time_taken_ms") is not None
            else None,
            supersedes_id=previous.id if previous is not None else None,
            created_at=pd.Timestamp(created).to_pydatetime() if created else None,
        ))
        session.flush()
    return study


def _external_item(session: Session, study: Study, key: str, row: dict[str, Any]) -> StudyItem:
    ident = hashlib.sha256(f"imported:{study.name}:{key}".encode()).hexdigest()
    content = str(_val(row, "content", "scene"))
    source = SourceImage(sha256=ident, path="", width=0, height=0, title=f"imported item {key}",
                         origin="imported", content=content if content in CONTENT_TYPES else "scene",
                         is_reference=False)
    session.add(source)
    session.flush()
    kind = str(_val(row, "blur_kind", "none"))
    level = _val(row, "blur_level")
    if level is not None:
        try:
            level = float(level)
        except (TypeError, ValueError):
            raise StudyError(f"Item {key!r}: blur_level {level!r} is not a number; give the blur "
                             "level in pixels or leave it empty.") from None
    degraded = DegradedImage(source_id=source.id, recipe_key="imported",
                             kind=kind if kind in tuple(BlurKind) else BlurKind.NONE,
                             level=float(level) if level is not None else None,
                             sha256=ident, path="")
    session.add(degraded)
    session.flush()
    restoration = Restoration(degraded_id=degraded.id, method=str(_val(row, "restorer", "external")),
                              params=_params(row), params_key=ident, sha256=ident,
                              path="", provenance={"imported": True})
    session.add(restoration)
    session.flush()
    emin, emax = _val(row, "expected_min"), _val(row, "expected_max")
    item = StudyItem(study_id=study.id, restoration_id=restoration.id,
                     order_key=order_key(study.id, restoration.id),
                     is_gold=bool(_val(row, "is_gold", False)),
                     expected_min=int(emin) if emin is not None else None,
                     expected_max=int(emax) if emax is not None else None)
    session.add(item)
    session.flush()
    return item


def _params(row: dict[str, Any]) -> dict[str, Any]:
    """The restorer's parameters of a row: `restorer_params` (a JSON object or a mapping), with
    `strength` and `seed` columns filled in where the parameters lack them."""
    raw = _val(row, "restorer_params")
    params: dict[str, Any] = {}
    if isinstance(raw, dict):
        params = dict(raw)
    elif isinstance(raw, str) and raw.strip():
        try:
            parsed = json.loads(raw)
        except ValueError as exc:
            raise StudyError(f"Item {row['item']!r}: restorer_params is not a JSON object "
                             f"({raw[:60]!r}); write it as exports do, e.g. {{\"balance\": 0.1}}, "
                             "or leave it empty.") from exc
        if not isinstance(parsed, dict):
            raise StudyError(f"Item {row['item']!r}: restorer_params is not a JSON object "
                             f"({raw[:60]!r}); write it as exports do, e.g. {{\"balance\": 0.1}}, "
                             "or leave it empty.")
        params = parsed
    for column in ("strength", "seed"):
        value = _val(row, column)
        if value is not None and column not in params:
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise StudyError(f"Item {row['item']!r}: {column} {value!r} is not a number; give a "
                                 "number or leave it empty.") from None
            params[column] = int(number) if column == "seed" else number
    return params


def _external_user(session: Session, study: Study, rater: str) -> User:
    name = re.sub(r"[^a-z0-9_.-]", "-", rater.lower())[:40] or "rater"
    username = f"ext-{study.id}-{name}"
    try:  # inactive, without a password: it can never log in
        return rater_account(session, username, rater, kind="imported")
    except UserError as exc:
        raise StudyError(f"Rater {rater!r}: {exc}") from exc
