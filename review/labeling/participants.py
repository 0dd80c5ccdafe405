"""Crowd participants arriving by a pool's link: admitted, resumed or refused in one transaction.

`join` reads the link (review.accounts.links), checks the platform's parameters, the block list,
the pool's state and quota and how fast this address has been starting new participants, then
finds the participant by the keyed hash of their platform id (the same id returning resumes, and
never gets a second completion code) or makes one: an account of role participant
(review.accounts.users.participant_account) enrolled in the study under the pool, and a browser
session like a reviewer's whose token becomes the HttpOnly cookie (review/ui/server.py).
A refusal is one plain line, with the platform code to show when the pool has one.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import BlockedParticipant, LinkOpen, Participant, RaterPool, Study, User, utcnow
from review.accounts.audit import record
from review.accounts.links import LinkRefused, platform_id_hash, read_link
from review.accounts.sessions import exchange_handoff, start_session
from review.accounts.users import participant_account
from review.enums import ParticipantStage, PoolStatus
from review.labeling.cohorts import ensure_enrolled
from review.labeling.pools import platform_params, pool_settings

#: What a platform parameter may hold: ids of the common platforms fit, markup never does.
PARAM_RE = re.compile(r"^[A-Za-z0-9._:@-]{1,64}$")
MAX_ADDRESS = 64


@dataclass(frozen=True)
class Joined:
    """A participant signed in: the browser session's token (the cookie) and where they are."""

    participant_id: int
    user_id: int
    token: str
    stage: str
    resumed: bool


class JoinRefused(LinkRefused):
    """The link admits nobody now; `code` is the platform code to show (screened out, no places)."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


def clean_params(pool: RaterPool, params: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """The participant's platform id and the other ids the pool keeps, checked; JoinRefused when
    the id is missing or any kept value is not a plain id."""
    id_name, extra = platform_params(pool)
    pid = str(params.get(id_name, "")).strip()
    if not pid:
        raise JoinRefused(f"Open this study from your platform's page: the link lacks your participant id "
                          f"({id_name}).")
    kept: dict[str, str] = {}
    for name in (id_name, *extra):
        value = str(params.get(name, "")).strip()
        if value and not PARAM_RE.match(value):
            raise JoinRefused(f"The link's {name} is not a valid id (letters, digits and ._:@- only, at "
                              "most 64); open the study from your platform's page.")
        if value:
            kept[name] = value
    return pid, kept


def _recent_joins(session: Session, address: str) -> int:
    since = utcnow() - timedelta(hours=1)
    return int(session.scalar(select(func.count(LinkOpen.id)).where(
        LinkOpen.address == address, LinkOpen.admitted.is_(True), LinkOpen.created_at >= since)) or 0)


def _session_token(session: Session, user_id: int) -> str:
    _sid, code = start_session(session, user_id)
    token = exchange_handoff(session, code)
    assert token is not None  # made a moment ago in this transaction
    return token


def join(session: Session, secret: bytes, token: str, params: Mapping[str, str], address: str) -> Joined:
    """Admit or resume the participant a link and its parameters name (in the caller's
    transaction); JoinRefused (one plain line, maybe a platform code) otherwise."""
    claims = read_link(secret, token)
    pool = session.get(RaterPool, claims.pool_id)
    if pool is None or pool.study_id != claims.study_id or pool.link_version != claims.link_version:
        raise JoinRefused("This study link was withdrawn. Ask the study's organisers for a current one.")
    pid, kept = clean_params(pool, params)
    id_hash = platform_id_hash(secret, pool.platform, pid)
    address = (address or "unknown")[:MAX_ADDRESS]
    blocked = session.scalar(select(BlockedParticipant.id).where(
        BlockedParticipant.platform == pool.platform, BlockedParticipant.platform_id_hash == id_hash))
    if blocked is not None:
        raise JoinRefused("You cannot take part in this study.")
    existing = session.scalar(select(Participant).where(Participant.pool_id == pool.id,
                                                        Participant.platform_id_hash == id_hash))
    if existing is not None:
        user = session.get(User, existing.user_id)
        if user is None or not user.active:
            raise JoinRefused("You cannot take part in this study.")
        token = _session_token(session, existing.user_id)
        return Joined(existing.id, existing.user_id, token, existing.stage, resumed=True)
    if pool.status != PoolStatus.OPEN:
        raise JoinRefused("This study is closed to new participants.", pool.no_places_code)
    if pool.quota is not None:
        taken = session.scalar(select(func.count(Participant.id)).where(Participant.pool_id == pool.id)) or 0
        if taken >= pool.quota:
            raise JoinRefused("All places in this study are taken.", pool.no_places_code)
    if _recent_joins(session, address) >= pool_settings(pool).max_joins_per_hour:
        raise JoinRefused("Too many new sign-ups from this connection in the last hour; try again later.")
    study = session.get(Study, pool.study_id)
    assert study is not None  # the pool's foreign key
    user = participant_account(session, f"p{pool.id}-{secrets.token_hex(6)}")
    participant = Participant(user_id=user.id, pool_id=pool.id, platform_id_hash=id_hash, export_ids=kept,
                              stage=ParticipantStage.CONSENT.value, viewing_attempts=0, end_code="")
    session.add(participant)
    session.add(LinkOpen(pool_id=pool.id, address=address, admitted=True))
    member = ensure_enrolled(session, study, user.id)
    member.pool_id = pool.id
    session.flush()
    record(session, "participant.join", actor_id=user.id, target=f"pool {pool.id}",
           participant=participant.id)
    return Joined(participant.id, user.id, _session_token(session, user.id), participant.stage, resumed=False)


def participant_of(session: Session, user_id: int) -> Participant | None:
    return session.scalar(select(Participant).where(Participant.user_id == user_id))
