"""Crowd participants through the real flow (join by link, consent, live items with traps), for
the admin-side tests of pools, cleansing and exports."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from PIL import Image
from sqlalchemy import select

from db.models import ParticipantProbe, Study, StudyItem
from review.accounts.links import sign_link
from review.database import Lab
from review.labeling import crowd_flow as flow
from review.labeling.participants import join
from review.labeling.pools import PoolSpec, add_pool
from review.labeling.ratings import Submission, submit
from review.labeling.settings import update_settings
from tests.support import build_study

#: A pool flow with nothing before the live items: six of them, two traps among them.
QUICK_FLOW = {"viewing_check": False, "contrast_check": False, "training_items": 0,
              "qualification_items": 0, "items_per_session": 6, "trap_rate": 0.34}


#: The guideline's reason shown after a training example's answer.
TRAINING_REASON = "The face changed: a different person is not faithful."


def crowd_study(lab: Lab, secret: bytes, spec: PoolSpec, consent: str,
                pictures: list[Image.Image] | None = None) -> tuple[int, str]:
    """A 12-item study (items 0, 3, 6, 9 gold expecting 4-5; the first two others training
    examples expecting 2-3 with TRAINING_REASON) with the `consent` text and the pool `spec`;
    returns the pool id and a link token signed with `secret`."""
    study_id = build_study(lab, 12, gold_every=3, raters_per_item=3, pictures=pictures)
    with lab.write() as s:
        items = s.scalars(select(StudyItem).where(StudyItem.study_id == study_id,
                                                  StudyItem.is_gold.is_(False)).order_by(StudyItem.id)).all()
        for item in items[:2]:
            item.is_training, item.expected_min, item.expected_max = True, 2, 3
            item.training_reason = TRAINING_REASON
        update_settings(s.get(Study, study_id), consent_text=consent)
        pool = add_pool(s, study_id, spec)
        return pool.id, sign_link(secret, study_id, pool.id, pool.link_version)


def honest(item_id: int) -> int:
    return 1 + item_id % 5


def crowd_session(lab: Lab, secret: bytes, token: str, params: Mapping[str, str],
                  score: Callable[[int], int] = honest, trap_right: bool = True,
                  seconds: float = 7.0) -> int:
    """A participant joins with the platform `params`, consents and finishes the live items:
    `score(item_id)` for each, traps answered right or wrong; returns the participant id."""
    with lab.write() as s:
        joined = join(s, secret, token, dict(params), "-".join(params.values())[:60])
        flow.give_consent(s, joined.participant_id)
    while True:
        with lab.write() as s:
            step = flow.next_live(s, joined.participant_id, lab.store)
            if isinstance(step, flow.Done):
                return joined.participant_id
            if isinstance(step, flow.Trap):
                expected = s.get(ParticipantProbe, step.probe_id).expected_min
                flow.answer_trap(s, joined.participant_id, step.probe_id,
                                 expected if trap_right else expected % 5 + 1, seconds=seconds)
            else:
                submit(s, step.assignment_id, joined.user_id,
                       Submission(score=score(step.item_id), time_taken_ms=int(seconds * 1000)))
