"""Rater pools: a study's raters grouped by provider (in-house team, annotation company, crowd
platform), with what a crowd pool's link, flow and pay need.

Every study has its in-house team: reviewers whose `StudyReviewer.pool_id` is NULL, as all
reviewers of studies made before pools existed. Other pools are made by an admin. A crowd pool's
flow settings (`PoolSettings`) live in the pool's `settings` JSON, read and checked here, so a bad
value is refused when it is set, not when a participant meets it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import Participant, RaterPool, Study
from review.accounts.audit import record
from review.enums import PoolKind, PoolStatus
from review.errors import ReviewError

#: A platform's participant parameters: (the one that identifies the participant, others the
#: approve/reject and bonus exports need). "custom" takes the names from PoolSettings.
PLATFORMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "prolific": ("PROLIFIC_PID", ("STUDY_ID", "SESSION_ID")),
    "mturk": ("workerId", ("assignmentId", "hitId")),
    "plain": ("pid", ()),
}
CUSTOM = "custom"
MAX_NAME = 100
MAX_CODE = 64
IN_HOUSE_NAME = "In-house"


class PoolError(ReviewError):
    """A pool cannot be made or changed as asked; the message says why."""


@dataclass(frozen=True)
class PoolSettings:
    """A pool's participant flow. Crowd pools check viewing conditions by default."""

    items_per_session: int = 20
    viewing_check: bool = True
    min_width: int = 1024  # CSS px the window must offer (images are shown 1:1)
    contrast_check: bool = True
    max_viewing_attempts: int = 3
    training_items: int = 3
    qualification_items: int = 4
    pass_share: float = 0.8  # qualification: share of gold items right within pass_tolerance
    pass_tolerance: int = 1
    trap_rate: float = 0.1  # share of the live queue that is trapping questions
    max_joins_per_hour: int = 5  # new participants one address may start per hour
    id_param: str = ""  # custom platforms: the participant id's parameter name
    extra_params: tuple[str, ...] = ()  # custom platforms: other parameters to keep

    def check(self) -> PoolSettings:
        def whole(name: str, lo: int, hi: int) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise PoolError(f"{name.replace('_', ' ')} must be a whole number from {lo} to {hi} "
                                f"(got {v!r}).")

        def share(name: str) -> None:
            v = getattr(self, name)
            numeric = isinstance(v, int | float) and not isinstance(v, bool)
            if not numeric or not math.isfinite(v) or not 0 <= v <= 1:
                raise PoolError(f"{name.replace('_', ' ')} must be a share from 0 to 1 (got {v!r}).")

        whole("items_per_session", 1, 500)
        whole("min_width", 320, 8000)
        whole("max_viewing_attempts", 1, 20)
        whole("training_items", 0, 50)
        whole("qualification_items", 0, 50)
        whole("pass_tolerance", 0, 9)
        whole("max_joins_per_hour", 1, 10_000)
        share("pass_share")
        share("trap_rate")
        if self.trap_rate > 0.5:
            raise PoolError("trap rate above 0.5 would make most of a session traps; use at most 0.5.")
        for name in (self.id_param, *self.extra_params):
            if name and not (name.replace("_", "").isalnum() and name.isascii() and len(name) <= 40):
                raise PoolError(f"A parameter name is letters, digits and _ (at most 40): {name[:40]!r}.")
        return self

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "extra_params": list(self.extra_params)}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> PoolSettings:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in (data or {}).items() if k in known}
        if "extra_params" in values:
            values["extra_params"] = tuple(values["extra_params"])
        return cls(**values)


def pool_settings(pool: RaterPool) -> PoolSettings:
    return PoolSettings.from_json(pool.flow)


def platform_params(pool: RaterPool) -> tuple[str, tuple[str, ...]]:
    """The pool's participant id parameter and the other parameters it keeps."""
    if pool.platform == CUSTOM:
        s = pool_settings(pool)
        return s.id_param, s.extra_params
    return PLATFORMS[pool.platform]


def _check_text(label: str, value: str, limit: int) -> str:
    value = value.strip()
    if len(value) > limit or any(not c.isprintable() for c in value):
        raise PoolError(f"{label} must be printable text of at most {limit} characters.")
    return value


def _check_url(url: str) -> str:
    url = url.strip()
    if url and (urlsplit(url).scheme != "https" or not urlsplit(url).netloc or len(url) > 500):
        raise PoolError("The return link must be an https:// address (at most 500 characters), or empty.")
    return url


@dataclass(frozen=True)
class PoolSpec:
    """What an admin sets on a pool."""

    name: str
    kind: str = PoolKind.CROWD
    platform: str = "plain"
    quota: int | None = None
    pay_per_item: float = 0.0
    pay_per_session: float = 0.0
    currency: str = "USD"
    completion_code: str = ""
    screened_out_code: str = ""
    no_places_code: str = ""
    return_url: str = ""
    flow: PoolSettings = PoolSettings()


def _apply(pool: RaterPool, spec: PoolSpec) -> None:
    if spec.kind not in set(PoolKind):
        raise PoolError(f"A pool's kind is one of {', '.join(PoolKind)} (got {spec.kind!r}).")
    if spec.platform not in (*PLATFORMS, CUSTOM):
        raise PoolError(f"Unknown platform {spec.platform!r}: use one of {', '.join((*PLATFORMS, CUSTOM))}.")
    settings = spec.flow.check()
    if spec.platform == CUSTOM and not settings.id_param:
        raise PoolError("A custom platform needs the name of its participant id parameter.")
    if spec.quota is not None and (isinstance(spec.quota, bool) or spec.quota < 1):
        raise PoolError("A quota is at least 1 participant (or none for no limit).")
    for label, pay in (("Pay per item", spec.pay_per_item), ("Pay per session", spec.pay_per_session)):
        if not (math.isfinite(pay) and pay >= 0):
            raise PoolError(f"{label} must be zero or more.")
    pool.name = _check_text("A pool's name", spec.name, MAX_NAME)
    if not pool.name:
        raise PoolError("A pool needs a name.")
    pool.kind, pool.platform, pool.quota = str(spec.kind), spec.platform, spec.quota
    pool.pay_per_item, pool.pay_per_session = float(spec.pay_per_item), float(spec.pay_per_session)
    pool.currency = _check_text("The currency", spec.currency, 8) or "USD"
    pool.completion_code = _check_text("The completion code", spec.completion_code, MAX_CODE)
    pool.screened_out_code = _check_text("The screened-out code", spec.screened_out_code, MAX_CODE)
    pool.no_places_code = _check_text("The no-places code", spec.no_places_code, MAX_CODE)
    pool.return_url = _check_url(spec.return_url)
    pool.flow = settings.to_json()
    if pool.kind == PoolKind.CROWD and not pool.completion_code:
        raise PoolError("A crowd pool needs the completion code its platform expects.")


def add_pool(session: Session, study_id: int, spec: PoolSpec, *, actor_id: int | None = None) -> RaterPool:
    """A new open pool of the study (in the caller's transaction)."""
    if session.get(Study, study_id) is None:
        raise PoolError(f"No study {study_id}.")
    if session.scalar(select(RaterPool.id).where(RaterPool.study_id == study_id,
                                                 RaterPool.name == spec.name.strip())) is not None:
        raise PoolError(f"The study already has a pool named {spec.name.strip()!r}.")
    pool = RaterPool(study_id=study_id, status=PoolStatus.OPEN.value, link_version=1)
    _apply(pool, spec)
    session.add(pool)
    session.flush()
    record(session, "pool.create", actor_id=actor_id, target=f"pool {pool.id}", study=study_id,
           name=pool.name, kind=pool.kind)
    return pool


def edit_pool(session: Session, pool_id: int, spec: PoolSpec, *, actor_id: int | None = None) -> RaterPool:
    pool = get_pool(session, pool_id)
    _apply(pool, spec)
    session.flush()
    record(session, "pool.edit", actor_id=actor_id, target=f"pool {pool.id}", name=pool.name)
    return pool


def get_pool(session: Session, pool_id: int) -> RaterPool:
    pool = session.get(RaterPool, pool_id)
    if pool is None:
        raise PoolError(f"No pool {pool_id}.")
    return pool


def pools_of(session: Session, study_id: int) -> list[RaterPool]:
    query = select(RaterPool).where(RaterPool.study_id == study_id).order_by(RaterPool.id)
    return list(session.scalars(query))


def set_open(session: Session, pool_id: int, is_open: bool, *, actor_id: int | None = None) -> RaterPool:
    """Close a pool to new participants (those already in go on) or open it again."""
    pool = get_pool(session, pool_id)
    pool.status = (PoolStatus.OPEN if is_open else PoolStatus.CLOSED).value
    record(session, "pool.open" if is_open else "pool.close", actor_id=actor_id, target=f"pool {pool.id}")
    return pool


def void_links(session: Session, pool_id: int, *, actor_id: int | None = None) -> RaterPool:
    """Raise the pool's link version: every link given out so far stops admitting anyone."""
    pool = get_pool(session, pool_id)
    pool.link_version += 1
    record(session, "pool.void_links", actor_id=actor_id, target=f"pool {pool.id}", version=pool.link_version)
    return pool


def participant_count(session: Session, pool_id: int) -> int:
    return int(session.scalar(select(func.count(Participant.id)).where(Participant.pool_id == pool_id)) or 0)


def places_left(session: Session, pool: RaterPool) -> int | None:
    """How many more participants the pool admits (None: no quota)."""
    if pool.quota is None:
        return None
    return max(pool.quota - participant_count(session, pool.id), 0)
