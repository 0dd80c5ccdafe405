"""What a participant's browser reported about its window (width, pixel ratio, zoom), kept until
the participant presses Check in the viewing-condition check (review.labeling.crowd_flow).

The participant page measures in the browser and POSTs the numbers to `/_lab/viewing`
(review/ui/server.py); the Streamlit page reads them on its next run. They go through the
database, not process memory, so the route and the page may run in different processes. One
row per participant (a `ParticipantProbe` of phase viewing, key "measures"), replaced by each
report: the newest window is the one the participant is looking at.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Participant, ParticipantProbe, utcnow
from review.enums import ParticipantStage, ProbePhase

MEASURES_KEY = "measures"
WIDTH_RANGE = (1, 100_000)  # CSS px
RATIO_RANGE = (0.01, 100.0)  # device pixel ratio and the visual viewport's scale


@dataclass(frozen=True)
class WindowReport:
    """The browser's window as measured by the page's script."""

    inner_width: int
    pixel_ratio: float
    viewport_scale: float | None


def parse_report(data: object) -> WindowReport | None:
    """The report from the JSON the page posts, or None when it is not one (a missing or
    out-of-range number, a wrong type): only plain numbers in plausible ranges are kept."""
    if not isinstance(data, dict):
        return None

    def number(name: str, lo: float, hi: float) -> float | None:
        v = data.get(name)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or not lo <= v <= hi:
            return None
        return float(v)

    width = number("inner_width", *WIDTH_RANGE)
    ratio = number("pixel_ratio", *RATIO_RANGE)
    scale = number("viewport_scale", *RATIO_RANGE)
    if width is None or ratio is None:
        return None
    return WindowReport(int(width), ratio, scale)


def store_report(session: Session, user_id: int, report: WindowReport) -> bool:
    """Keep the report of the participant signed in as `user_id` (in the caller's transaction);
    False when the account is no participant or is past the viewing check (nothing kept)."""
    participant = session.scalar(select(Participant).where(Participant.user_id == user_id).with_for_update())
    if participant is None or participant.stage != ParticipantStage.VIEWING:
        return False
    row = session.scalar(select(ParticipantProbe).where(
        ParticipantProbe.participant_id == participant.id, ParticipantProbe.phase == ProbePhase.VIEWING.value,
        ParticipantProbe.probe_key == MEASURES_KEY))
    if row is None:
        row = ParticipantProbe(participant_id=participant.id, phase=ProbePhase.VIEWING.value,
                               probe_key=MEASURES_KEY, position=0)
        session.add(row)
    row.details = {"inner_width": report.inner_width, "pixel_ratio": report.pixel_ratio,
                   "viewport_scale": report.viewport_scale}
    row.answered_at = utcnow()
    session.flush()
    return True


def reported(session: Session, participant_id: int) -> WindowReport | None:
    """The participant's newest report, or None when the browser has sent none."""
    row = session.scalar(select(ParticipantProbe).where(
        ParticipantProbe.participant_id == participant_id, ParticipantProbe.phase == ProbePhase.VIEWING.value,
        ParticipantProbe.probe_key == MEASURES_KEY))
    if row is None:
        return None
    d = row.details
    return WindowReport(int(d["inner_width"]), float(d["pixel_ratio"]),
                        None if d.get("viewport_scale") is None else float(d["viewport_scale"]))
