"""A crowd participant's way through a study, one stage after another:

consent -> viewing-condition check -> training -> qualification -> live items (with traps) ->
completed (the pool's completion code), or screened out (the pool's screened-out code) after a
failed qualification or too many failed viewing checks. A stage with nothing to do (no training
examples, no viewing check for the pool) is passed over. Each function runs in the caller's
transaction and moves the participant on only when its stage is the one they are in, so a
second tab or a replayed click cannot skip a stage or answer one twice.

Training, qualification, viewing and trap answers are `ParticipantProbe` rows, never ratings: a
screened-out participant leaves nothing in the analysis. Live items are ordinary assignments and
ratings (review.labeling.assignment, review.labeling.ratings) in the participant's study, with
traps mixed in at the pool's rate at positions drawn per participant.
"""

from __future__ import annotations

import hashlib
import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from db.models import (
    Assignment,
    Participant,
    ParticipantProbe,
    RaterPool,
    Rating,
    Study,
    StudyItem,
    StudyReviewer,
    utcnow,
)
from review.enums import AssignmentStatus, ParticipantStage, ProbePhase
from review.errors import ReviewError
from review.labeling.assignment import Lease, next_assignment
from review.labeling.pools import PoolSettings, pool_settings
from review.labeling.settings import StudySettings
from review.labeling.views import ImageRef, ItemView, item_view
from review.media.store import ImageStore, load_rgb
from review.media.traps import trap_image

ORDER = (ParticipantStage.CONSENT, ParticipantStage.VIEWING, ParticipantStage.TRAINING,
         ParticipantStage.QUALIFICATION, ParticipantStage.LIVE, ParticipantStage.COMPLETED)
#: The contrast check: digits drawn this many grey levels (of 255) off a mid-grey background.
#: The first three must be read (P.910's brightness matrix asks for the steps a normal display
#: and viewer resolve); the faint last one is shown but not required.
CONTRAST_STEPS = (48, 24, 12, 4)
CONTRAST_REQUIRED = 3
MIN_PIXEL_RATIO = 1.0  # below 1: the page is zoomed out, images are not shown 1:1


class FlowError(ReviewError):
    """The participant's answer does not fit where they are in the flow (another tab moved on)."""

    level = "warning"


def _hash01(*parts: object) -> float:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _participant(session: Session, participant_id: int, *, lock: bool = False) -> Participant:
    query = select(Participant).where(Participant.id == participant_id)
    found = session.scalar(query.with_for_update() if lock else query)
    if found is None:
        raise FlowError("This participant is not known; open the study link again.")
    return found


def _pool(session: Session, participant: Participant) -> RaterPool:
    pool = session.get(RaterPool, participant.pool_id)
    assert pool is not None  # the participant's foreign key
    return pool


def _expect(participant: Participant, stage: ParticipantStage) -> None:
    if participant.stage != stage:
        raise FlowError("This step was already answered (perhaps in another tab); here is where you are now.")


# --------------------------------------------------------------------------------------------
# Moving on
# --------------------------------------------------------------------------------------------


def _has_work(session: Session, participant: Participant, stage: ParticipantStage, s: PoolSettings) -> bool:
    if stage == ParticipantStage.VIEWING:
        return s.viewing_check or s.contrast_check
    if stage == ParticipantStage.TRAINING:
        return bool(training_items(session, participant, s))
    if stage == ParticipantStage.QUALIFICATION:
        return bool(qualification_items(session, participant, s))
    return True


def _advance(session: Session, participant: Participant) -> None:
    """Move to the next stage that has something to do."""
    s = pool_settings(_pool(session, participant))
    at = ORDER.index(ParticipantStage(participant.stage))
    for stage in ORDER[at + 1:]:
        if _has_work(session, participant, stage, s):
            participant.stage = stage.value
            return


def _end(session: Session, participant: Participant, stage: ParticipantStage, code: str) -> None:
    participant.stage, participant.finished_at = stage.value, utcnow()
    participant.end_code = participant.end_code or code  # shown again, never a second one


def give_consent(session: Session, participant_id: int) -> None:
    """The participant accepted the study's consent text."""
    p = _participant(session, participant_id, lock=True)
    _expect(p, ParticipantStage.CONSENT)
    p.consent_at = utcnow()
    _advance(session, p)


def consent_text(session: Session, participant_id: int) -> str:
    p = _participant(session, participant_id)
    study = session.get(Study, _pool(session, p).study_id)
    assert study is not None
    return StudySettings.of(study).consent_text


# --------------------------------------------------------------------------------------------
# Viewing conditions
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ViewingMeasures:
    """What the participant's browser reported, and what they read in the contrast check."""

    inner_width: int | None
    pixel_ratio: float | None
    viewport_scale: float | None
    contrast_answer: str = ""


@dataclass(frozen=True)
class ViewingVerdict:
    passed: bool
    problems: tuple[str, ...]  # what to change, one sentence each
    attempts_left: int


def contrast_digits(participant_id: int) -> tuple[int, ...]:
    """The digits of the participant's contrast check, one per CONTRAST_STEPS (distinct, 1-9)."""
    pool = list(range(1, 10))
    out = []
    for k in range(len(CONTRAST_STEPS)):
        out.append(pool.pop(int(_hash01("contrast", participant_id, k) * len(pool))))
    return tuple(out)


def check_viewing(session: Session, participant_id: int, m: ViewingMeasures) -> ViewingVerdict:
    """Judge the viewing conditions against the pool's settings; a fail explains what to change
    and counts an attempt; the last allowed failure screens the participant out."""
    p = _participant(session, participant_id, lock=True)
    _expect(p, ParticipantStage.VIEWING)
    pool = _pool(session, p)
    s = pool_settings(pool)
    problems: list[str] = []
    if s.viewing_check:
        if m.inner_width is None or m.pixel_ratio is None:
            problems.append("Your browser did not report its window size: allow the page's script and "
                            "press Check again.")
        else:
            if m.inner_width < s.min_width:
                problems.append(f"Your browser window is {m.inner_width} px wide; this study needs at least "
                                f"{s.min_width} px. Make the window larger (or use a larger screen).")
            if m.pixel_ratio < MIN_PIXEL_RATIO - 1e-6 or (m.viewport_scale or 1.0) < 1.0 - 1e-6:
                problems.append("Your browser is zoomed out: set the zoom to 100 % (Ctrl+0 or Cmd+0).")
    if s.contrast_check:
        needed = "".join(map(str, contrast_digits(p.id)[:CONTRAST_REQUIRED]))
        typed = "".join(ch for ch in m.contrast_answer if ch.isdigit())
        if not typed.startswith(needed):
            problems.append("The digits you typed do not match the grey squares: raise your screen's "
                            "brightness, avoid glare, and type the digits you see from left to right.")
    p.viewing_attempts += 1
    session.add(ParticipantProbe(participant_id=p.id, phase=ProbePhase.VIEWING.value,
                                 probe_key=f"attempt-{p.viewing_attempts}", position=p.viewing_attempts,
                                 correct=not problems, answered_at=utcnow(),
                                 details={"inner_width": m.inner_width, "pixel_ratio": m.pixel_ratio,
                                          "viewport_scale": m.viewport_scale,
                                          "contrast_answer": m.contrast_answer[:20], "problems": problems}))
    left = max(s.max_viewing_attempts - p.viewing_attempts, 0)
    if not problems:
        _advance(session, p)
    elif left == 0:
        _end(session, p, ParticipantStage.SCREENED_OUT, pool.screened_out_code)
    return ViewingVerdict(not problems, tuple(problems), left)


# --------------------------------------------------------------------------------------------
# Training and qualification
# --------------------------------------------------------------------------------------------


def _drawn(session: Session, participant: Participant, where: ColumnElement[bool], n: int,
           salt: str) -> list[int]:
    pool = _pool(session, participant)
    ids = list(session.scalars(select(StudyItem.id).where(StudyItem.study_id == pool.study_id, where)
                               .order_by(StudyItem.id)))
    ids.sort(key=lambda i: _hash01(salt, participant.id, i))
    return ids[:n]


def training_items(session: Session, participant: Participant, s: PoolSettings | None = None) -> list[int]:
    """The participant's training examples, in order (the study's items marked for training)."""
    s = s or pool_settings(_pool(session, participant))
    return _drawn(session, participant, StudyItem.is_training.is_(True), s.training_items, "training")


def qualification_items(session: Session, participant: Participant,
                        s: PoolSettings | None = None) -> list[int]:
    """The participant's qualification items: gold items with a known range, never training ones."""
    s = s or pool_settings(_pool(session, participant))
    where = (StudyItem.is_gold.is_(True) & StudyItem.is_training.is_(False)
             & StudyItem.expected_min.is_not(None))
    return _drawn(session, participant, where, s.qualification_items, "qualification")


def _answered(session: Session, participant_id: int, phase: ProbePhase) -> dict[str, ParticipantProbe]:
    rows = session.scalars(select(ParticipantProbe).where(ParticipantProbe.participant_id == participant_id,
                                                          ParticipantProbe.phase == phase.value))
    return {r.probe_key: r for r in rows}


def next_probe_item(session: Session, participant_id: int) -> int | None:
    """The training or qualification item to show now (None when the stage is neither)."""
    p = _participant(session, participant_id)
    if p.stage == ParticipantStage.TRAINING:
        items, phase = training_items(session, p), ProbePhase.TRAINING
    elif p.stage == ParticipantStage.QUALIFICATION:
        items, phase = qualification_items(session, p), ProbePhase.QUALIFICATION
    else:
        return None
    done = _answered(session, p.id, phase)
    return next((i for i in items if str(i) not in done), None)


@dataclass(frozen=True)
class Feedback:
    """After a training answer: whether it was right and the guideline's reason."""

    right: bool
    expected_min: int
    expected_max: int
    reason: str


def _record_probe(session: Session, p: Participant, phase: ProbePhase, item: StudyItem, score: int,
                  tolerance: int, seconds: float | None) -> bool:
    lo, hi = item.expected_min, item.expected_max
    if lo is None or hi is None:
        raise FlowError("This example has no expected answer; ask the study's organisers.")
    right = lo - tolerance <= score <= hi + tolerance
    session.add(ParticipantProbe(participant_id=p.id, phase=phase.value, probe_key=str(item.id), answer=score,
                                 expected_min=lo, expected_max=hi, correct=right, answered_at=utcnow(),
                                 details={"seconds": seconds}))
    return right


def answer_training(session: Session, participant_id: int, item_id: int, score: int,
                    seconds: float | None = None) -> Feedback:
    """Record a training answer and return the expected answer with the guideline's reason."""
    p = _participant(session, participant_id, lock=True)
    _expect(p, ParticipantStage.TRAINING)
    if next_probe_item(session, p.id) != item_id:
        raise FlowError("This example was already answered (perhaps in another tab).")
    item = session.get(StudyItem, item_id)
    assert item is not None
    right = _record_probe(session, p, ProbePhase.TRAINING, item, score, 0, seconds)
    session.flush()
    if next_probe_item(session, p.id) is None:
        _advance(session, p)
    assert item.expected_min is not None and item.expected_max is not None
    return Feedback(right, item.expected_min, item.expected_max, item.training_reason)


def answer_qualification(session: Session, participant_id: int, item_id: int, score: int,
                         seconds: float | None = None) -> None:
    """Record a qualification answer; after the last one, pass (live items) or screen out."""
    p = _participant(session, participant_id, lock=True)
    _expect(p, ParticipantStage.QUALIFICATION)
    if next_probe_item(session, p.id) != item_id:
        raise FlowError("This item was already answered (perhaps in another tab).")
    pool = _pool(session, p)
    s = pool_settings(pool)
    item = session.get(StudyItem, item_id)
    assert item is not None
    _record_probe(session, p, ProbePhase.QUALIFICATION, item, score, s.pass_tolerance, seconds)
    session.flush()
    if next_probe_item(session, p.id) is not None:
        return
    answers = list(_answered(session, p.id, ProbePhase.QUALIFICATION).values())
    share = sum(bool(a.correct) for a in answers) / len(answers)
    if share >= s.pass_share:
        _advance(session, p)
    else:
        _end(session, p, ParticipantStage.SCREENED_OUT, pool.screened_out_code)


def qualification_score(session: Session, participant_id: int) -> tuple[int, int]:
    """(right, answered) of the participant's qualification."""
    answers = list(_answered(session, participant_id, ProbePhase.QUALIFICATION).values())
    return sum(bool(a.correct) for a in answers), len(answers)


# --------------------------------------------------------------------------------------------
# Live items and traps
# --------------------------------------------------------------------------------------------


def trap_positions(participant_id: int, items: int, rate: float) -> tuple[int, ...]:
    """Before which live items (0-based counts of items done) a trap comes: round(items * rate)
    of them (at least one when the rate is above zero), never before the first item."""
    if rate <= 0 or items < 2:
        return ()
    k = min(max(round(items * rate), 1), items - 1)
    slots = sorted(range(1, items), key=lambda i: _hash01("trap", participant_id, i))
    return tuple(sorted(slots[:k]))


@dataclass(frozen=True)
class Trap:
    """A trapping question shown like an item: the trap image in place of the restoration."""

    probe_id: int
    view: ItemView
    position: int


@dataclass(frozen=True)
class Done:
    """The session is over: the code to enter on the platform and the link back, if any."""

    stage: str
    code: str
    return_url: str


def live_done(session: Session, participant: Participant) -> int:
    """Live items the participant finished (rated or skipped) in their study."""
    pool = _pool(session, participant)
    return int(session.scalar(select(StudyReviewer.finished_items).where(
        StudyReviewer.study_id == pool.study_id, StudyReviewer.reviewer_id == participant.user_id)) or 0)


def _open_trap(session: Session, p: Participant, position: int, store: ImageStore) -> Trap | None:
    key = f"trap-{position}"
    probe = session.scalar(select(ParticipantProbe).where(
        ParticipantProbe.participant_id == p.id, ParticipantProbe.phase == ProbePhase.TRAP.value,
        ParticipantProbe.probe_key == key))
    if probe is not None and probe.answered_at is not None:
        return None
    if probe is None:
        pool = _pool(session, p)
        base_ids = list(session.scalars(select(StudyItem.id).where(
            StudyItem.study_id == pool.study_id, StudyItem.is_training.is_(False)).order_by(StudyItem.id)))
        if not base_ids:
            return None
        base = base_ids[int(_hash01("trap-base", p.id, position) * len(base_ids))]
        answer = 1 + int(_hash01("trap-answer", p.id, position) * 5)
        view = item_view(session, base)
        stored = store.put_image(trap_image(load_rgb(store.root, view.restoration.relpath), answer))
        probe = ParticipantProbe(participant_id=p.id, phase=ProbePhase.TRAP.value, probe_key=key,
                                 position=position,
                                 expected_min=answer, expected_max=answer,
                                 details={"base_item": base, "path": stored.relpath, "sha256": stored.sha256})
        session.add(probe)
        session.flush()
    view = item_view(session, int(probe.details["base_item"]))  # the trap stands in for its restoration
    trap_view = ItemView(view.item_id, ImageRef(probe.details["path"], probe.details["sha256"]), view.blurred,
                         view.reference)
    return Trap(probe.id, trap_view, position)


def next_live(session: Session, participant_id: int, store: ImageStore,
              now: datetime | None = None) -> Trap | Lease | Done:
    """What the participant sees next in the live stage: a trap, an item's lease, or the end
    (the completion code) once the pool's session length is reached or nothing is left."""
    p = _participant(session, participant_id, lock=True)
    pool = _pool(session, p)
    if p.stage in (ParticipantStage.COMPLETED, ParticipantStage.SCREENED_OUT):
        return Done(p.stage, p.end_code, pool.return_url)
    _expect(p, ParticipantStage.LIVE)
    s = pool_settings(pool)
    done = live_done(session, p)
    if done < s.items_per_session:
        if done in trap_positions(p.id, s.items_per_session, s.trap_rate):
            trap = _open_trap(session, p, done, store)
            if trap is not None:
                return trap
        study = session.get(Study, pool.study_id)
        assert study is not None
        lease = next_assignment(session, study, p.user_id, now)
        if lease is not None:
            return lease
    _end(session, p, ParticipantStage.COMPLETED, pool.completion_code)
    return Done(p.stage, p.end_code, pool.return_url)


def answer_trap(session: Session, participant_id: int, probe_id: int, answer: int,
                seconds: float | None = None) -> None:
    """Record the participant's answer to a trap (right or wrong, they move on alike)."""
    p = _participant(session, participant_id, lock=True)
    _expect(p, ParticipantStage.LIVE)
    probe = session.get(ParticipantProbe, probe_id)
    if probe is None or probe.participant_id != p.id or probe.phase != ProbePhase.TRAP:
        raise FlowError("This question is not yours; here is your next item.")
    if probe.answered_at is not None:
        raise FlowError("This question was already answered (perhaps in another tab).")
    probe.answer, probe.answered_at = answer, utcnow()
    probe.correct = probe.expected_min == answer
    probe.details = {**probe.details, "seconds": seconds}


# --------------------------------------------------------------------------------------------
# What admins see
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParticipantState:
    """One participant's live state for the pool's admin view."""

    participant_id: int
    stage: str
    items_done: int
    traps_right: int
    traps_answered: int
    gold_right: int
    gold_rated: int
    median_seconds: float | None
    qualification: tuple[int, int]
    joined_at: datetime


def live_state(session: Session, pool_id: int) -> list[ParticipantState]:
    """Every participant of the pool: stage, items done, traps passed, gold accuracy (live gold
    items within their expected range), median seconds per live item; four queries for the
    whole pool, however many participants it has."""
    participants = list(session.scalars(select(Participant).where(Participant.pool_id == pool_id)
                                        .order_by(Participant.id)))
    in_pool = select(Participant.user_id).where(Participant.pool_id == pool_id)
    probes: dict[tuple[int, str], list[bool]] = defaultdict(list)
    for pid, phase, correct in session.execute(
            select(ParticipantProbe.participant_id, ParticipantProbe.phase, ParticipantProbe.correct)
            .join(Participant, Participant.id == ParticipantProbe.participant_id)
            .where(Participant.pool_id == pool_id,
                   ParticipantProbe.phase.in_((ProbePhase.TRAP.value, ProbePhase.QUALIFICATION.value)),
                   or_(ParticipantProbe.phase != ProbePhase.TRAP.value,
                       ParticipantProbe.answered_at.is_not(None)))):
        probes[(pid, phase)].append(bool(correct))
    gold: dict[int, list[bool]] = defaultdict(list)
    times: dict[int, list[float]] = defaultdict(list)
    for user_id, score, ms, is_gold, lo, hi in session.execute(
            select(Rating.reviewer_id, Rating.score, Rating.time_taken_ms, StudyItem.is_gold,
                   StudyItem.expected_min, StudyItem.expected_max)
            .join(StudyItem, StudyItem.id == Rating.item_id)
            .where(Rating.reviewer_id.in_(in_pool), Rating.active.is_(True))):
        if is_gold and lo is not None and hi is not None:
            gold[user_id].append(lo <= score <= hi)
        if ms is not None:
            times[user_id].append(ms / 1000)
    done = dict(session.execute(
        select(Assignment.reviewer_id, func.count(Assignment.id))
        .where(Assignment.reviewer_id.in_(in_pool),
               Assignment.status.in_((AssignmentStatus.DONE, AssignmentStatus.SKIPPED)))
        .group_by(Assignment.reviewer_id)).all())
    out = []
    for p in participants:
        traps, qual = probes[(p.id, ProbePhase.TRAP.value)], probes[(p.id, ProbePhase.QUALIFICATION.value)]
        t = times[p.user_id]
        out.append(ParticipantState(
            p.id, p.stage, int(done.get(p.user_id, 0)), sum(traps), len(traps),
            sum(gold[p.user_id]), len(gold[p.user_id]), statistics.median(t) if t else None,
            (sum(qual), len(qual)), p.joined_at))
    return out
