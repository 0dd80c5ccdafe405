"""Data cleansing in the lab (review.analysis.crowd_cleansing) on participants who went through the
real flow: decisions stored with their criteria, an admin's override standing against automatic
reruns, unused ratings left out of "used" analyses but kept, items reopened for new participants
and taken back on an override, and the block list."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import func, select

from db.models import (
    AuditEntry,
    BlockedParticipant,
    CleansingDecision,
    Participant,
    Rating,
    Study,
    User,
)
from review.accounts.links import sign_link
from review.analysis import crowd_cleansing as cc
from review.analysis.export import default_ratings, ratings_frame, ratings_in_use
from review.database import Lab
from review.labeling.participants import JoinRefused, join
from review.labeling.pools import PoolSettings, PoolSpec, add_pool
from tests.support import build_study
from tests.support_crowd import crowd_session, honest

SECRET = b"c" * 48
FLOW = PoolSettings(viewing_check=False, contrast_check=False, training_items=0, qualification_items=0,
                    items_per_session=6, trap_rate=0.34)


def _study(lab: Lab) -> tuple[int, str]:
    study_id = build_study(lab, 12, raters_per_item=2)
    with lab.write() as s:
        pool = add_pool(s, study_id, PoolSpec(name="crowd", completion_code="OK", flow=FLOW))
        return study_id, sign_link(SECRET, study_id, pool.id, pool.link_version)


def _session(lab: Lab, token: str, pid: str, score: Callable[[int], int], trap_right: bool = True) -> int:
    """A participant through the real flow (tests/support_crowd.py): `score(item_id)` for live items."""
    return crowd_session(lab, SECRET, token, {"pid": pid}, score, trap_right)


def test_decisions_overrides_reopening_and_blocking(lab: Lab) -> None:
    study_id, token = _study(lab)
    good = _session(lab, token, "good", honest)
    flat = _session(lab, token, "flat", lambda _i: 4)  # straight-liner
    spam = _session(lab, token, "spam", honest, trap_right=False)
    late = _session(lab, token, "late", honest)  # rates what room is left, then completes
    with lab.write() as s:
        result = cc.run_cleansing(s, study_id, actor_id=None)
        decisions = {pid: (d.outcome, d.reasons) for pid, d in cc.current_decisions(s, study_id).items()}
    assert result is not None and len(result.submissions) == 4
    assert decisions[good][0] == "accept_use" and decisions[late][0] == "accept_use"
    assert decisions[flat][0] == "accept_no_use" and "straight-lining" in decisions[flat][1]
    assert decisions[spam][0] == "reject" and "attention checks" in decisions[spam][1]
    with lab.read() as s:
        costs = cc.pool_costs(s, study_id)["crowd"]
    assert (costs.submissions, costs.used_submissions, costs.paid_submissions) == (4, 2, 3)
    with lab.read() as s:
        paid = [s.get(Participant, p).user_id for p in (good, flat, late)]
        assert costs.paid_items == len(s.scalars(select(Rating).where(Rating.reviewer_id.in_(paid))).all())
    with lab.read() as s:
        flat_user = s.get(Participant, flat).user_id
        flat_ratings = set(s.scalars(select(Rating.id).where(Rating.reviewer_id == flat_user)))
        assert len(flat_ratings) == 6 and flat_ratings <= cc.unused_rating_ids(s, study_id)
    # an admin's override stands against an automatic rerun
    with lab.write() as s:
        cc.override(s, flat, "accept_use", "Checked by hand: these items really are alike.", actor_id=1)
    with lab.write() as s:
        cc.run_cleansing(s, study_id)
        assert cc.current_decisions(s, study_id)[flat].outcome == "accept_use"
        assert not flat_ratings & cc.unused_rating_ids(s, study_id)
        assert s.scalar(select(AuditEntry.action).where(AuditEntry.target == f"participant {flat}")) \
            == "cleansing.override"
    # reopening the rejected submission frees its items: a new participant rates them
    with lab.write() as s:
        reopened = cc.reopen(s, study_id)
    assert (reopened.submissions, reopened.ratings_set_aside) == (1, 6)
    with lab.read() as s:
        spam_user = s.get(Participant, spam).user_id
        kept = s.scalars(select(Rating).where(Rating.reviewer_id == spam_user)).all()
        assert len(kept) == 6 and not any(r.active for r in kept)  # kept, set aside
        frame = ratings_frame(s, s.get(Study, study_id))
    # the analyses' table: every rating with its pool; set-aside ones present but not used
    assert set(frame["pool"]) == {"crowd"}
    spam_rows = frame[frame["rating_id"].isin([r.id for r in kept])]
    assert len(spam_rows) == 6 and not spam_rows["used"].any()
    assert default_ratings(frame) == "used"
    assert set(ratings_in_use(frame, "used")["rating_id"]) == set(frame.loc[frame["used"], "rating_id"])
    assert len(ratings_in_use(frame, "all")) == len(frame)
    newer = _session(lab, token, "newer", honest)
    with lab.read() as s:
        new_user = s.get(Participant, newer).user_id
        assert len(s.scalars(select(Rating).where(Rating.reviewer_id == new_user)).all()) == 6
    # taking the set-aside ratings back: only where an item still has room; the rest stay aside
    with lab.write() as s:
        decision = cc.override(s, spam, "accept_use", "The trap image failed to load for them.", actor_id=1)
        aside = set(decision.criteria["set_aside"])
    with lab.read() as s:
        mine = s.scalars(select(Rating).where(Rating.reviewer_id == spam_user)).all()
        assert {r.id for r in mine if not r.active} == aside and 0 < len(aside) <= 6
        fullest = s.scalar(select(func.count()).select_from(Rating).where(Rating.active.is_(True))
                           .group_by(Rating.item_id).order_by(func.count().desc()).limit(1))
        assert fullest == 2  # never more active ratings on an item than raters per item
    # the block list
    with lab.write() as s:
        cc.block(s, spam, "Answered traps at random.", actor_id=1)
        assert s.scalar(select(BlockedParticipant.participant_id)) == spam
    with pytest.raises(JoinRefused, match="cannot take part"), lab.write() as s:
        join(s, SECRET, token, {"pid": "spam"}, "elsewhere")
    with lab.read() as s:
        assert s.scalar(select(User.role).where(User.id == spam_user)) == "participant"
        assert len(s.scalars(select(CleansingDecision)).all()) >= 6
