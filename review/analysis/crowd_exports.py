"""What goes back to a crowd platform after data cleansing, and a pool's recruitment link.

The decisions themselves are review.analysis.crowd_cleansing's; this module turns the current
ones into the files an admin uploads or pastes on the platform:

- the **cleansing report**: one row per submission with every criterion, the outcome, the
  reasons, who decided (automatic or the admin's username) and when;
- the **approve/reject** file: Prolific (participant_id, submission_id, status APPROVE/REJECT,
  reason, rejection_category: FAILED_CHECK for a failed attention check, OTHER for an admin's
  rejection, as Prolific's reject action asks for a category), MTurk's batch-results columns
  (AssignmentId, WorkerId, HITId, Approve "x", Reject =
  the reason), or plain (pid, decision, reason);
- the **bonus** file: pool.pay_per_item for each live item a submission rated, paid to accepted
  submissions (accept-and-use and accept-but-do-not-use alike: the participant did the work);
  Prolific's bulk bonus takes `<participant_id>,<amount>` lines without a header, MTurk's
  GrantBonus takes WorkerId, AssignmentId, BonusAmount, Reason;
- the **block list**: platform, the participant id as the platform knows it, reason, when.

Every text cell goes through review.analysis.export's formula neutralisation. A participant's
platform id is only what the join stored for the exports (`Participant.export_ids`); the lab
keeps no other copy of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import (
    BlockedParticipant,
    CleansingDecision,
    Participant,
    RaterPool,
    Rating,
    Study,
    StudyItem,
    User,
)
from review.accounts.links import DEFAULT_LIFETIME, sign_link
from review.analysis.cleansing import CleansingRules
from review.analysis.crowd_cleansing import (
    CRITERIA,
    current_decisions,
    reopen,
    unused_rating_ids,
)
from review.analysis.export import frame_csv, neutralise_frame
from review.enums import CleansingOutcome
from review.errors import ReviewError
from review.labeling.pools import PLATFORMS, get_pool, platform_params

#: Export shapes: the two common platforms' and a plain one for any other.
EXPORT_PLATFORMS = ("prolific", "mturk", "plain")
REPORT_COLUMNS = ("participant", "pool", "platform", "platform_id", *CRITERIA, "ratings_set_aside",
                  "outcome", "reasons", "platform_feedback", "decided_by", "decided_at")
AUTOMATIC = "automatic"
#: What each platform's link carries for its participant parameters: Prolific fills
#: {{%NAME%}} placeholders in a study URL; MTurk appends workerId, assignmentId and hitId (and
#: turkSubmitTo) to an ExternalQuestion's URL itself; elsewhere the sender fills the value in.
FILL_IN = "PARTICIPANT_ID"


def prolific_placeholder(name: str) -> str:
    """Prolific's study-URL placeholder for a parameter: {{%PROLIFIC_PID%}}."""
    return "{{%" + name + "%}}"


class ExportError(ReviewError):
    """An export cannot be made as asked; the message says why."""


def _check_platform(platform: str) -> str:
    if platform not in EXPORT_PLATFORMS:
        raise ExportError(f"Export for one of {', '.join(EXPORT_PLATFORMS)} (got {platform!r}).")
    return platform


# --------------------------------------------------------------------------------------------
# The recruitment link
# --------------------------------------------------------------------------------------------


def link_params(pool: RaterPool) -> dict[str, str]:
    """The query parameters the pool's link shows, as the platform's placeholders."""
    id_name, extra = platform_params(pool)
    if pool.platform == "prolific":
        return {n: prolific_placeholder(n) for n in (id_name, *extra)}
    if pool.platform == "mturk":
        return {}  # MTurk appends workerId, assignmentId and hitId to the URL itself
    return {id_name: FILL_IN}


def recruitment_link(base_url: str, token: str, pool: RaterPool) -> str:
    """`<base URL>/_lab/join?t=<token>&<the platform's parameters as its placeholders>`."""
    base = base_url.strip().rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ExportError("The lab's address is its http(s) address as participants reach it, e.g. "
                          "https://lab.example.org (no query).")
    query = urlencode({"t": token}) + "".join(f"&{k}={v}" for k, v in link_params(pool).items())
    return f"{base}/_lab/join?{query}"


def pool_link(session: Session, secret: bytes, pool_id: int, base_url: str,
              lifetime: timedelta = DEFAULT_LIFETIME, *, today: bool = False) -> str:
    """A signed link for the pool, valid for `lifetime` (until its links are voided). With
    `today`, the lifetime counts from the start of the UTC day, so the link a page shows stays
    the same all day instead of changing at every rerun."""
    pool = get_pool(session, pool_id)
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) if today else None
    return recruitment_link(base_url, sign_link(secret, pool.study_id, pool.id, pool.link_version,
                                                lifetime, now=start), pool)


def link_note(pool: RaterPool) -> str:
    """How to use the pool's link on its platform (one line)."""
    id_name, extra = platform_params(pool)
    if pool.platform == "prolific":
        return ("Paste it as the study URL; Prolific fills in PROLIFIC_PID, STUDY_ID and SESSION_ID "
                "for each participant.")
    if pool.platform == "mturk":
        return ("Use it as the ExternalQuestion URL (write & as &amp; in the XML); MTurk adds workerId, "
                "assignmentId and hitId for each worker.")
    kept = f" (also kept: {', '.join(extra)})" if extra else ""
    return f"Replace {FILL_IN} with each participant's id in {id_name}{kept} before sending the link."


# --------------------------------------------------------------------------------------------
# Rows per submission
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Row:
    participant: Participant
    pool: RaterPool
    decision: CleansingDecision

    @property
    def criteria(self) -> dict[str, Any]:
        return dict(self.decision.criteria or {})

    def export_id(self, name: str) -> str:
        return str((self.participant.export_ids or {}).get(name, ""))

    @property
    def platform_id(self) -> str:
        return self.export_id(platform_params(self.pool)[0])

    @property
    def approved(self) -> bool:
        return self.decision.outcome != CleansingOutcome.REJECT

    @property
    def rejection_category(self) -> str:
        """Prolific's rejection category: FAILED_CHECK for an automatic rejection (only a failed
        attention check rejects), OTHER for an admin's; empty when approved."""
        if self.approved:
            return ""
        return "FAILED_CHECK" if self.decision.decided_by is None else "OTHER"

    @property
    def feedback(self) -> str:
        """The platform-facing reason of a rejection: the cleansing run's, else the rules' text
        (an admin's override reason is for the lab, not for the participant)."""
        if self.approved:
            return ""
        c = self.criteria
        rules = c.get("rules")
        run_text = rules.get("rejection_feedback") if isinstance(rules, dict) else None
        return str(c.get("platform_feedback") or run_text or CleansingRules().rejection_feedback)


def _rows(session: Session, study_id: int, platform: str | None = None) -> list[_Row]:
    if session.get(Study, study_id) is None:
        raise ExportError(f"No study {study_id}.")
    out = []
    for pid, decision in sorted(current_decisions(session, study_id).items()):
        p = session.get(Participant, pid)
        assert p is not None
        pool = session.get(RaterPool, p.pool_id)
        assert pool is not None
        if platform in (None, "plain") or pool.platform == platform:
            out.append(_Row(p, pool, decision))
    return out


def cleansing_report(session: Session, study_id: int) -> pd.DataFrame:
    """One row per cleansed submission: every criterion, outcome, reasons, who decided, when."""
    names = dict(session.execute(select(User.id, User.username)).all())
    records = []
    for r in _rows(session, study_id):
        c = r.criteria
        records.append({
            "participant": r.participant.id, "pool": r.pool.name, "platform": r.pool.platform,
            "platform_id": r.platform_id, **{k: c.get(k) for k in CRITERIA},
            "ratings_set_aside": len(c.get("set_aside") or []), "outcome": r.decision.outcome,
            "reasons": r.decision.reasons, "platform_feedback": r.feedback,
            "decided_by": (AUTOMATIC if r.decision.decided_by is None
                           else names.get(r.decision.decided_by, "")),
            "decided_at": r.decision.created_at,
        })
    return pd.DataFrame(records, columns=list(REPORT_COLUMNS))


def approve_reject(session: Session, study_id: int, platform: str) -> pd.DataFrame:
    """The approve/reject table in the platform's shape (see the module note)."""
    _check_platform(platform)
    rows = _rows(session, study_id, platform)
    if platform == "prolific":
        sid = PLATFORMS["prolific"][1][1]  # SESSION_ID: Prolific's submission id
        return pd.DataFrame([{"participant_id": r.platform_id, "submission_id": r.export_id(sid),
                              "status": "APPROVE" if r.approved else "REJECT", "reason": r.feedback,
                              "rejection_category": r.rejection_category} for r in rows],
                            columns=["participant_id", "submission_id", "status", "reason",
                                     "rejection_category"])
    if platform == "mturk":
        return pd.DataFrame([{"AssignmentId": r.export_id("assignmentId"), "WorkerId": r.platform_id,
                              "HITId": r.export_id("hitId"), "Approve": "x" if r.approved else "",
                              "Reject": r.feedback} for r in rows],
                            columns=["AssignmentId", "WorkerId", "HITId", "Approve", "Reject"])
    return pd.DataFrame([{"pid": r.platform_id or f"participant-{r.participant.id}",
                          "decision": "APPROVE" if r.approved else "REJECT", "reason": r.feedback}
                         for r in rows], columns=["pid", "decision", "reason"])


def _items_rated(session: Session, study_id: int, user_id: int) -> int:
    """Live items the participant rated in the study (set-aside ratings count: the work was done)."""
    return int(session.scalar(
        select(func.count(func.distinct(Rating.item_id))).join(StudyItem, StudyItem.id == Rating.item_id)
        .where(StudyItem.study_id == study_id, StudyItem.is_training.is_(False),
               Rating.reviewer_id == user_id)) or 0)


def bonus(session: Session, study_id: int, platform: str) -> pd.DataFrame:
    """Bonus per accepted submission: the pool's pay per item x live items rated (rounded to the
    cent); rejected submissions and zero amounts get no row."""
    _check_platform(platform)
    out = []
    for r in _rows(session, study_id, platform):
        if not r.approved or not r.pool.pay_per_item:
            continue
        n = _items_rated(session, study_id, r.participant.user_id)
        amount = round(r.pool.pay_per_item * n + 1e-9, 2)
        if amount > 0 and math.isfinite(amount):
            out.append((r, n, amount))
    if platform == "prolific":
        return pd.DataFrame([{"participant_id": r.platform_id, "amount": f"{a:.2f}"} for r, _n, a in out],
                            columns=["participant_id", "amount"])
    if platform == "mturk":
        return pd.DataFrame([{"WorkerId": r.platform_id, "AssignmentId": r.export_id("assignmentId"),
                              "BonusAmount": f"{a:.2f}",
                              "Reason": f"{n} items rated at {r.pool.pay_per_item:g} {r.pool.currency} each"}
                             for r, n, a in out],
                            columns=["WorkerId", "AssignmentId", "BonusAmount", "Reason"])
    return pd.DataFrame([{"pid": r.platform_id or f"participant-{r.participant.id}", "amount": f"{a:.2f}",
                          "currency": r.pool.currency, "items": n} for r, n, a in out],
                        columns=["pid", "amount", "currency", "items"])


def blocklist(session: Session, study_id: int) -> pd.DataFrame:
    """The block list entries of the study's participants: the platform, the id it knows them by
    (where the join kept it), the reason and when."""
    rows = session.execute(
        select(BlockedParticipant, Participant, RaterPool)
        .join(Participant, Participant.id == BlockedParticipant.participant_id)
        .join(RaterPool, RaterPool.id == Participant.pool_id)
        .where(RaterPool.study_id == study_id).order_by(BlockedParticipant.id)).all()
    return pd.DataFrame([{"platform": b.platform,
                          "participant_id": str((p.export_ids or {}).get(platform_params(pool)[0], "")),
                          "reason": b.reason, "blocked_at": b.created_at} for b, p, pool in rows],
                        columns=["platform", "participant_id", "reason", "blocked_at"])


EXPORTS = ("report", "approve", "bonus", "blocklist")


def export_csv(session: Session, study_id: int, which: str, platform: str = "plain") -> bytes:
    """One export as CSV bytes. Prolific's bonus is `<participant_id>,<amount>` lines without a
    header (what its bulk bonus box and API take); every other file has a header row."""
    if which == "report":
        return frame_csv(cleansing_report(session, study_id))
    if which == "approve":
        return frame_csv(approve_reject(session, study_id, platform))
    if which == "bonus":
        frame = bonus(session, study_id, platform)
        if platform == "prolific":
            return neutralise_frame(frame).to_csv(index=False, header=False, lineterminator="\n").encode()
        return frame_csv(frame)
    if which == "blocklist":
        return frame_csv(blocklist(session, study_id))
    raise ExportError(f"Export one of {', '.join(EXPORTS)} (got {which!r}).")


def file_name(study_name: str, which: str, platform: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in study_name)[:60] or "study"
    return f"{safe}_{which}.csv" if which in ("report", "blocklist") else f"{safe}_{which}_{platform}.csv"


# --------------------------------------------------------------------------------------------
# More ratings needed, and reopening
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RatingsNeeded:
    """How far the study is from raters-per-item used ratings on every live item."""

    items_short: int
    ratings_short: int


def ratings_needed(session: Session, study_id: int) -> RatingsNeeded:
    """Per live item (not training), raters-per-item minus its used ratings (active ratings that
    cleansing does not leave out), summed: the places to add on the platform."""
    study = session.get(Study, study_id)
    if study is None:
        raise ExportError(f"No study {study_id}.")
    unused = unused_rating_ids(session, study_id)
    items = list(session.scalars(select(StudyItem.id).where(StudyItem.study_id == study_id,
                                                            StudyItem.is_training.is_(False))))
    used: dict[int, int] = dict.fromkeys(items, 0)
    for rid, item_id in session.execute(select(Rating.id, Rating.item_id).join(
            StudyItem, StudyItem.id == Rating.item_id).where(StudyItem.study_id == study_id,
                                                             StudyItem.is_training.is_(False),
                                                             Rating.active.is_(True))):
        if rid not in unused:
            used[item_id] += 1
    short = [max(study.raters_per_item - n, 0) for n in used.values()]
    return RatingsNeeded(sum(1 for s in short if s), sum(short))


@dataclass(frozen=True)
class Reopening:
    submissions: int
    items: int
    needed: RatingsNeeded

    def line(self) -> str:
        subs = "submission" if self.submissions == 1 else "submissions"
        return (f"{self.items} items reopened ({self.submissions} {subs} set aside); "
                f"{self.needed.ratings_short} more ratings needed on {self.needed.items_short} items.")


def reopen_items(session: Session, study_id: int, *, actor_id: int | None = None) -> Reopening:
    """Reopen the items of every not-used submission (crowd_cleansing.reopen) and say how many
    items that freed and how many more ratings the study needs."""
    done = reopen(session, study_id, actor_id=actor_id)
    new = done.rating_ids
    items = set(session.scalars(select(Rating.item_id).where(Rating.id.in_(new)))) if new else set()
    return Reopening(done.submissions, len(items), ratings_needed(session, study_id))
