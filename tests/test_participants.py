"""Participants arriving by link (review.labeling.participants.join): admitted with a browser
session, resumed by the same platform id, refused plainly (with the platform's code where the pool
has one) for withdrawn links, closed or full pools, blocked ids, bad parameters and farming."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import select

from db.models import BlockedParticipant, Participant, StudyReviewer, User
from review.accounts.links import LinkRefused, platform_id_hash, sign_link
from review.accounts.sessions import resume
from review.database import Lab
from review.labeling.participants import JoinRefused, join
from review.labeling.pools import PoolSettings, PoolSpec, add_pool, set_open, void_links
from tests.support import make_study

SECRET = b"s" * 48
SPEC = PoolSpec(name="crowd", platform="prolific", completion_code="DONE1", no_places_code="FULL9",
                flow=PoolSettings(max_joins_per_hour=3))


def _pool(lab: Lab, spec: PoolSpec = SPEC) -> tuple[int, int, str]:
    with lab.write() as s:
        study = make_study(s, 4).study
        pool = add_pool(s, study.id, spec)
        return study.id, pool.id, sign_link(SECRET, study.id, pool.id, pool.link_version)


def _join(lab: Lab, token: str, pid: str = "5f3a9c", address: str = "10.0.0.1", **more: str):
    with lab.write() as s:
        return join(s, SECRET, token, {"PROLIFIC_PID": pid, "STUDY_ID": "st1", "SESSION_ID": "se1", **more},
                    address)


def test_a_participant_joins_with_a_session_and_returns_to_the_same_place(lab: Lab) -> None:
    study_id, pool_id, token = _pool(lab)
    first = _join(lab, token)
    assert (first.stage, first.resumed) == ("consent", False)
    with lab.read() as s:
        participant = s.get(Participant, first.participant_id)
        user = s.get(User, first.user_id)
        assert (user.role, user.password_hash) == ("participant", "!")  # no password: the link signs in
        assert participant.platform_id_hash == platform_id_hash(SECRET, "prolific", "5f3a9c")
        assert "5f3a9c" not in participant.platform_id_hash
        assert participant.export_ids == {"PROLIFIC_PID": "5f3a9c", "STUDY_ID": "st1", "SESSION_ID": "se1"}
        member = s.scalar(select(StudyReviewer).where(StudyReviewer.reviewer_id == user.id))
        assert (member.study_id, member.pool_id) == (study_id, pool_id)
        assert resume(s, first.token)[1].id == user.id  # the cookie's token opens their session
    again = _join(lab, token, address="10.9.9.9")
    assert (again.participant_id, again.resumed) == (first.participant_id, True)
    assert again.token != first.token
    with lab.read() as s:
        assert len(s.scalars(select(Participant)).all()) == 1


@pytest.mark.parametrize("params, message", [
    ({"PROLIFIC_PID": ""}, "lacks your participant id"),
    ({"PROLIFIC_PID": "<script>alert(1)</script>"}, "not a valid id"),
    ({"PROLIFIC_PID": "x" * 65}, "not a valid id"),
    ({"STUDY_ID": "a b"}, "STUDY_ID is not a valid id"),
])
def test_bad_parameters_are_refused_plainly(lab: Lab, params: dict, message: str) -> None:
    _study, _pool_id, token = _pool(lab)
    with pytest.raises(JoinRefused, match=message) as refused:
        _join(lab, token, **params)
    assert "<" not in str(refused.value)


def test_closed_full_withdrawn_and_blocked(lab: Lab) -> None:
    study_id, pool_id, token = _pool(lab, dataclasses.replace(SPEC, quota=1))
    _join(lab, token, pid="first")
    with pytest.raises(JoinRefused, match="All places") as full:
        _join(lab, token, pid="second")
    assert full.value.code == "FULL9"
    _join(lab, token, pid="first")  # a participant already in resumes whatever the quota
    with lab.write() as s:
        set_open(s, pool_id, False)
    with pytest.raises(JoinRefused, match="closed to new participants"):
        _join(lab, token, pid="third")
    _join(lab, token, pid="first")  # and whether or not the pool is still open
    with lab.write() as s:
        s.add(BlockedParticipant(platform="prolific",
                                 platform_id_hash=platform_id_hash(SECRET, "prolific", "first")))
    with pytest.raises(JoinRefused, match="cannot take part"):
        _join(lab, token, pid="first")
    with lab.write() as s:
        void_links(s, pool_id)
    with pytest.raises(JoinRefused, match="withdrawn"):
        _join(lab, token, pid="fourth")
    with pytest.raises(LinkRefused, match="not valid"):
        _join(lab, sign_link(b"x" * 48, study_id, pool_id, 2), pid="fifth")


def test_one_address_cannot_farm_new_participants(lab: Lab) -> None:
    _study, _pool_id, token = _pool(lab)
    for k in range(3):
        _join(lab, token, pid=f"id{k}")
    with pytest.raises(JoinRefused, match="Too many new sign-ups"):
        _join(lab, token, pid="id3")
    _join(lab, token, pid="id0")  # returning is not a new sign-up
    _join(lab, token, pid="id3", address="10.0.0.2")  # another address has its own count
