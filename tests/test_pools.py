"""Rater pools (review.labeling.pools): made, checked and audited; a bad setting is refused when it
is set; closing and voiding links; quotas; existing reviewers stay in the in-house team."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import select

from db.models import AuditEntry, Participant, StudyReviewer, User
from review.database import Lab
from review.labeling.pools import (
    PoolError,
    PoolSettings,
    PoolSpec,
    add_pool,
    edit_pool,
    places_left,
    platform_params,
    pool_settings,
    pools_of,
    set_open,
    void_links,
)
from tests.support import make_study

CROWD = PoolSpec(name="Prolific wave 1", platform="prolific", quota=2, pay_per_item=0.05,
                 completion_code="C1A2B3", screened_out_code="SCR00", return_url="https://app.prolific.com/x")


def _study(lab: Lab) -> int:
    with lab.write() as s:
        return make_study(s, 4).study.id


def test_a_crowd_pool_is_made_with_its_platform_and_audited(lab: Lab) -> None:
    study_id = _study(lab)
    with lab.write() as s:
        pool = add_pool(s, study_id, CROWD)
        assert (pool.status, pool.link_version, pool.kind) == ("open", 1, "crowd")
        assert platform_params(pool) == ("PROLIFIC_PID", ("STUDY_ID", "SESSION_ID"))
        assert pool_settings(pool) == PoolSettings()
        entry = select(AuditEntry.action).where(AuditEntry.target == f"pool {pool.id}")
        assert s.scalar(entry) == "pool.create"
        # nothing about the study's existing reviewers changes: they are its in-house team
        assert set(s.scalars(select(StudyReviewer.pool_id))) <= {None}
    with lab.read() as s:
        assert [p.name for p in pools_of(s, study_id)] == ["Prolific wave 1"]


@pytest.mark.parametrize("change, message", [
    ({"name": "  "}, "needs a name"),
    ({"kind": "agency"}, "kind is one of"),
    ({"platform": "upwork"}, "Unknown platform"),
    ({"platform": "custom"}, "custom platform needs"),
    ({"quota": 0}, "quota is at least 1"),
    ({"pay_per_item": -1.0}, "zero or more"),
    ({"pay_per_item": float("nan")}, "zero or more"),
    ({"completion_code": ""}, "needs the completion code"),
    ({"completion_code": "x" * 65}, "at most 64"),
    ({"return_url": "javascript:alert(1)"}, "https://"),
    ({"return_url": "http://example.org"}, "https://"),
    ({"flow": PoolSettings(trap_rate=0.9)}, "at most 0.5"),
    ({"flow": PoolSettings(pass_share=1.5)}, "share from 0 to 1"),
    ({"flow": PoolSettings(items_per_session=0)}, "from 1 to 500"),
    ({"flow": PoolSettings(id_param="pid<script>")}, "letters, digits"),
])
def test_bad_pool_settings_are_refused_when_set(lab: Lab, change: dict, message: str) -> None:
    study_id = _study(lab)
    with pytest.raises(PoolError, match=message), lab.write() as s:
        add_pool(s, study_id, dataclasses.replace(CROWD, **change))
    with lab.read() as s:
        assert pools_of(s, study_id) == []


def test_names_are_unique_per_study_and_edits_are_checked_too(lab: Lab) -> None:
    study_id = _study(lab)
    with lab.write() as s:
        pool_id = add_pool(s, study_id, CROWD).id
    with pytest.raises(PoolError, match="already has a pool"), lab.write() as s:
        add_pool(s, study_id, CROWD)
    with pytest.raises(PoolError, match="https://"), lab.write() as s:
        edit_pool(s, pool_id, dataclasses.replace(CROWD, return_url="ftp://x"))
    with lab.write() as s:
        edit_pool(s, pool_id, dataclasses.replace(CROWD, flow=PoolSettings(trap_rate=0.2)))
    with lab.read() as s:
        assert pool_settings(pools_of(s, study_id)[0]).trap_rate == 0.2


def test_closing_voiding_and_quota(lab: Lab) -> None:
    study_id = _study(lab)
    with lab.write() as s:
        pool = add_pool(s, study_id, CROWD)
        set_open(s, pool.id, False)
        void_links(s, pool.id)
        assert (pool.status, pool.link_version) == ("closed", 2)
        assert places_left(s, pool) == 2
        user = User(username="p-x", role="participant", password_hash="")
        s.add(user)
        s.flush()
        s.add(Participant(user_id=user.id, pool_id=pool.id, platform_id_hash="h" * 64))
        s.flush()
        assert places_left(s, pool) == 1
        set_open(s, pool.id, True)
        assert pool.status == "open"
