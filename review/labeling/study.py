"""Studies and their items: which restorations are rated, by how many reviewers, under which
guideline version, and which items are gold (controls with an expected score range).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from db.models import Assignment, GuidelineVersion, Rating, Restoration, Study, StudyClosure, StudyItem, User
from db.rows import get_or_create
from review.accounts.audit import record
from review.errors import ReviewError
from review.labeling.settings import StudySettings, update_settings
from review.media.restore import controls
from review.policy import Action, may

#: How long a study's edit waits for the study's row while ratings are being saved (PostgreSQL).
EDIT_LOCK_WAIT_S = 10


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


def _check_reviewers(session: Session, reviewer_ids: Sequence[int]) -> tuple[int, ...]:
    """The ids of existing accounts that can rate (reviewers and admins), or a StudyError."""
    ids = tuple(int(i) for i in reviewer_ids)
    found = {u.id: u for u in session.scalars(select(User).where(User.id.in_(ids)))} if ids else {}
    missing = [i for i in ids if i not in found]
    if missing:
        raise StudyError(f"No user with id(s) {missing}; pick reviewers from the list.")
    wrong = [u.username for u in found.values() if not may(u.role, Action.RATE)]
    if wrong:
        raise StudyError(f"{', '.join(sorted(wrong))} cannot rate (QA accounts do not rate); "
                         "pick reviewers or admins.")
    return ids


def create_study(session: Session, config: StudyConfig, guideline: str,
                 max_items_per_reviewer: int | None = None, *, arms: Sequence[str] = (),
                 qa_share: float = 0.0, reviewer_ids: Sequence[int] = (),
                 source_study_ids: Sequence[int] = (), actor_id: int | None = None,
                 actor: str = "") -> Study:
    """A new study under guideline version `guideline` (SLUG:VERSION); with `arms` (more
    versions), reviewers are randomised across the versions and, with `qa_share`, QA on/off
    (review.labeling.cohorts). `reviewer_ids` limits who may join (empty: everyone);
    `source_study_ids` copies those studies' restorations in as items, gold flags included.
    Refused, with nothing written, when the name is taken, a guideline or reviewer is unknown or
    a setting is invalid."""
    config.validate()
    if session.scalar(select(Study).where(Study.name == config.name.strip())) is not None:
        raise StudyError(f"A study named {config.name.strip()!r} already exists; pick another name.")
    gv = find_guideline(session, guideline)
    extra = [find_guideline(session, label) for label in arms]
    version_ids = tuple(dict.fromkeys([gv.id] + [g.id for g in extra])) if extra else ()
    reviewers = _check_reviewers(session, reviewer_ids)
    # Refused before anything is written:
    StudySettings(max_items_per_reviewer=max_items_per_reviewer, qa_share=qa_share,
                  guideline_version_ids=version_ids, reviewer_ids=reviewers)
    study = ensure_study(session, dataclasses.replace(config, name=config.name.strip()), gv)
    update_settings(study, max_items_per_reviewer=max_items_per_reviewer, qa_share=qa_share,
                    guideline_version_ids=version_ids, reviewer_ids=reviewers)
    session.flush()
    copied = copy_items(session, study, source_study_ids)
    record(session, "study.create", actor_id=actor_id, actor=actor, target=study.name,
           guideline=guideline, arms=list(arms), qa_share=qa_share, items=copied,
           raters_per_item=config.raters_per_item, gold_rate=config.gold_rate)
    return study


def copy_items(session: Session, study: Study, source_study_ids: Sequence[int]) -> int:
    """Put the restorations of other studies into `study`, each with its gold flag and expected
    range (idempotent); returns how many items the study has afterwards."""
    for source_id in source_study_ids:
        study_by_id(session, source_id)
        for item in session.scalars(select(StudyItem).where(StudyItem.study_id == source_id)
                                    .order_by(StudyItem.id)):
            expected = ((item.expected_min, item.expected_max)
                        if item.expected_min is not None and item.expected_max is not None else None)
            add_item(session, study, item.restoration, is_gold=item.is_gold, expected=expected)
    session.flush()
    return count_items(session, study)


@dataclass(frozen=True)
class StudyEdit:
    """What may change on a running study (the form's values, all of them)."""

    description: str
    raters_per_item: int
    gold_rate: float
    max_items_per_reviewer: int | None
    reviewer_ids: tuple[int, ...]


def study_edit_of(study: Study) -> StudyEdit:
    """The study's current editable values (what the edit form starts from)."""
    settings = StudySettings.of(study)
    return StudyEdit(study.description or "", study.raters_per_item, study.gold_rate,
                     settings.max_items_per_reviewer, settings.reviewer_ids)


def _most_per_item(session: Session, study: Study) -> int:
    """The most reviewers any item holds (active ratings or live assignments): the floor for
    raters_per_item."""
    ratings = select(func.count()).select_from(Rating).join(StudyItem, StudyItem.id == Rating.item_id) \
        .where(StudyItem.study_id == study.id, Rating.active.is_(True)).group_by(Rating.item_id)
    slots = select(func.max(Assignment.slot) + 1).join(StudyItem, StudyItem.id == Assignment.item_id) \
        .where(StudyItem.study_id == study.id)
    return max([0, *session.scalars(ratings), session.scalar(slots) or 0])


def edit_study(session: Session, study_id: int, edit: StudyEdit, *, actor_id: int | None = None) -> Study:
    """Apply `edit` to an open study (audited with the old and new values). Refused with the
    reason when the study is closed or the change would break existing rows (fewer raters per
    item than an item already has). The study row is locked first (PostgreSQL): ratings and claims
    in flight finish before the count, and new ones wait for this change (migration 0012)."""
    study = study_by_id(session, study_id)
    if session.get_bind().dialect.name == "postgresql":
        # Raters holding the study FOR SHARE one after another could keep this lock waiting; after
        # EDIT_LOCK_WAIT_S the admin hears the study is busy (review.database.DatabaseBusy).
        session.execute(text(f"SET LOCAL lock_timeout = '{EDIT_LOCK_WAIT_S}s'"))
    session.get(Study, study_id, with_for_update=True, populate_existing=True)
    if closed_at(session, study_id) is not None:
        raise StudyError(f"Study {study.name!r} is closed; reopen it before changing it.")
    StudyConfig(name=study.name, raters_per_item=edit.raters_per_item, gold_rate=edit.gold_rate,
                scale_min=study.scale_min, scale_max=study.scale_max).validate()
    before = study_edit_of(study)
    if edit.raters_per_item < before.raters_per_item:
        floor = _most_per_item(session, study)
        if edit.raters_per_item < floor:
            raise StudyError(f"An item of {study.name!r} already has {floor} reviewers (ratings or "
                             f"leases), so raters per item cannot go below {floor}.")
    reviewers = _check_reviewers(session, edit.reviewer_ids)
    update_settings(study, max_items_per_reviewer=edit.max_items_per_reviewer, reviewer_ids=reviewers)
    study.description = edit.description.strip()
    study.raters_per_item, study.gold_rate = edit.raters_per_item, float(edit.gold_rate)
    changed: dict[str, Any] = {k: [v, getattr(edit, k)] for k, v in dataclasses.asdict(before).items()
                               if v != dataclasses.asdict(edit)[k]}
    session.flush()
    if changed:
        record(session, "study.edit", actor_id=actor_id, target=study.name, **changed)
    return study


def close_study(session: Session, study_id: int, *, closed: bool = True,
                actor_id: int | None = None) -> Study:
    """Close a study (no new work is handed out; every rating stays and stays analysable) or
    reopen it."""
    study = study_by_id(session, study_id)
    closure = session.scalar(select(StudyClosure).where(StudyClosure.study_id == study_id))
    if (closure is not None) == closed:
        raise StudyError(f"Study {study.name!r} is already {'closed' if closed else 'open'}.")
    if closed:
        session.add(StudyClosure(study_id=study_id, closed_by=actor_id))
    else:
        session.delete(closure)
    session.flush()
    record(session, "study.close" if closed else "study.reopen", actor_id=actor_id, target=study.name)
    return study


def closed_at(session: Session, study_id: int) -> datetime | None:
    """When the study was closed, or None while it is open."""
    return session.scalar(select(StudyClosure.closed_at).where(StudyClosure.study_id == study_id))


def listed(study: Study, reviewer_id: int) -> bool:
    """Whether the study lets this reviewer join: it lists them, or lists nobody."""
    allowed = StudySettings.of(study).reviewer_ids
    return not allowed or reviewer_id in allowed


def may_join(session: Session, study: Study, reviewer_id: int) -> bool:
    """Whether the reviewer may receive work in the study: it is open and lets them join."""
    return listed(study, reviewer_id) and closed_at(session, study.id) is None


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
        expected = controls().get(restoration.method)
    if is_gold is None:
        is_gold = restoration.method in controls()

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
