"""Studies and their items: which restorations are rated, by how many reviewers, under which
guideline version, and which items are gold (controls with an expected score range).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import GuidelineVersion, Restoration, Study, StudyItem
from db.rows import get_or_create
from review.errors import ReviewError
from review.labeling.settings import StudySettings, update_settings
from review.media.restore import CONTROL_EXPECTATIONS


class StudyError(ReviewError):
    """A study request that cannot be carried out; the message says why and what to do."""


@dataclass(frozen=True)
class StudyConfig:
    name: str
    description: str = ""
    raters_per_item: int = 3
    gold_rate: float = 0.1
    scale_min: int = 1
    scale_max: int = 5
    lease_minutes: int = 20

    def validate(self) -> None:
        if not self.name.strip():
            raise StudyError("A study needs a name.")
        if self.raters_per_item < 1:
            raise StudyError("raters_per_item must be at least 1.")
        if not 0.0 <= self.gold_rate <= 1.0:
            raise StudyError("gold_rate must be between 0 and 1.")
        if not 1 <= self.scale_min < self.scale_max <= 10:
            raise StudyError("The scale must satisfy 1 <= min < max <= 10.")
        if self.lease_minutes < 1:
            raise StudyError("lease_minutes must be at least 1.")


def draw(*parts: object) -> bytes:
    """A study's reproducible randomness: the sha256 of the parts joined by ':'. Orders, arms,
    gold positions and QA picks all draw from it, so a rerun makes the same choices."""
    return hashlib.sha256(":".join(map(str, parts)).encode()).digest()


def order_key(study_id: int, restoration_id: int) -> int:
    """The item's reproducible random position in the study's shuffled order (0 .. 2**31-1)."""
    return int.from_bytes(draw(study_id, restoration_id)[:4], "big") >> 1


def get_study(session: Session, name: str) -> Study:
    study = session.scalar(select(Study).where(Study.name == name))
    if study is None:
        names = ", ".join(session.scalars(select(Study.name).order_by(Study.name))) or "none yet"
        raise StudyError(f"No study named {name!r}. Studies: {names}.")
    return study


def study_by_id(session: Session, study_id: int) -> Study:
    """The study a page picked (by id), or a StudyError if it is gone."""
    study = session.get(Study, study_id)
    if study is None:
        raise StudyError(f"There is no study with id {study_id}.")
    return study


def list_studies(session: Session) -> list[Study]:
    """Every study, in name order (the pages' study pickers)."""
    return list(session.scalars(select(Study).order_by(Study.name)))


def ensure_study(
    session: Session, config: StudyConfig, guideline: GuidelineVersion | None
) -> Study:
    """Create the study, or return the existing one with the same name unchanged."""
    config.validate()
    study, _new = get_or_create(session, Study, {"name": config.name}, lambda: Study(
        name=config.name,
        description=config.description,
        guideline_version_id=guideline.id if guideline else None,
        raters_per_item=config.raters_per_item,
        gold_rate=config.gold_rate,
        scale_min=config.scale_min,
        scale_max=config.scale_max,
        lease_minutes=config.lease_minutes,
    ))
    return study


def find_guideline(session: Session, label: str) -> GuidelineVersion:
    """The guideline version named SLUG:VERSION (as on the command line)."""
    slug, _, version = label.partition(":")
    gv = session.scalar(select(GuidelineVersion).where(
        GuidelineVersion.slug == slug, GuidelineVersion.version == int(version or 0)))
    if gv is None:
        raise StudyError(f"No guideline version {label!r}; run `python -m review init` to "
                         "load guidelines/ and check the slug and version.")
    return gv


def create_study(session: Session, config: StudyConfig, guideline: str,
                 max_items_per_reviewer: int | None = None) -> Study:
    """A new, empty study under guideline version `guideline` (SLUG:VERSION); refused when the
    name is taken, the guideline is unknown or the settings are invalid."""
    if session.scalar(select(Study).where(Study.name == config.name)) is not None:
        raise StudyError(f"A study named {config.name!r} already exists.")
    gv = find_guideline(session, guideline)
    StudySettings(max_items_per_reviewer=max_items_per_reviewer)  # refused before anything is written
    study = ensure_study(session, config, gv)
    update_settings(study, max_items_per_reviewer=max_items_per_reviewer)
    session.flush()
    return study


def add_item(
    session: Session,
    study: Study,
    restoration: Restoration,
    *,
    is_gold: bool | None = None,
    expected: tuple[int, int] | None = None,
) -> StudyItem:
    """Put a restoration in a study (idempotent). Controls become gold with their expected range."""
    if expected is None:
        expected = CONTROL_EXPECTATIONS.get(restoration.method)
    if is_gold is None:
        is_gold = restoration.method in CONTROL_EXPECTATIONS

    def build() -> StudyItem:
        if expected is not None:
            lo, hi = expected
            if not study.scale_min <= lo <= hi <= study.scale_max:
                raise StudyError(
                    f"Expected range {lo}-{hi} lies outside the study scale "
                    f"{study.scale_min}-{study.scale_max}."
                )
        return StudyItem(
            study_id=study.id,
            order_key=order_key(study.id, restoration.id),
            restoration_id=restoration.id,
            is_gold=is_gold,
            expected_min=expected[0] if expected else None,
            expected_max=expected[1] if expected else None,
        )

    item, _new = get_or_create(
        session, StudyItem, {"study_id": study.id, "restoration_id": restoration.id}, build)
    return item


def count_items(session: Session, study: Study) -> int:
    return session.scalar(
        select(func.count()).select_from(StudyItem).where(StudyItem.study_id == study.id)
    ) or 0
