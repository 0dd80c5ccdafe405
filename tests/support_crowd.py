"""Crowd participants through the real flow (join by link, consent, live items with traps), for
the admin-side tests of pools, cleansing and exports."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from db.models import ParticipantProbe
from review.database import Lab
from review.labeling import crowd_flow as flow
from review.labeling.participants import join
from review.labeling.ratings import Submission, submit

#: A pool flow with nothing before the live items: six of them, two traps among them.
QUICK_FLOW = {"viewing_check": False, "contrast_check": False, "training_items": 0,
              "qualification_items": 0, "items_per_session": 6, "trap_rate": 0.34}


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
