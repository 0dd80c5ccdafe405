"""Balanced randomisation of reviewers across guideline versions and QA cohorts."""

from __future__ import annotations

from collections import Counter

import pytest

from db.models import GuidelineVersion, User
from review.labeling.cohorts import CohortError, ensure_enrolled, qa_arms
from tests.factories import make_study


def test_reviewers_are_balanced_across_guideline_versions_and_qa(lab):
    with lab.sessions() as s, s.begin():
        study, _ = make_study(s, 1, n_reviewers=0, name="c")
        v2 = GuidelineVersion(slug="g-c", version=2, title="t", body_md="b2", content_sha256="1" * 64)
        s.add(v2)
        s.flush()
        study.settings = {"guideline_version_ids": [study.guideline_version_id, v2.id],
                          "qa_share": 0.5}
        users = [User(username=f"u{i}", role="reviewer", password_hash="x") for i in range(12)]
        s.add_all(users)
        s.flush()
        members = [ensure_enrolled(s, study, u.id) for u in users]
        again = [ensure_enrolled(s, study, u.id) for u in users]
    arms = Counter((m.guideline_version_id, m.qa_enabled) for m in members)
    assert len(arms) == 4 and set(arms.values()) == {3}
    assert [m.id for m in members] == [m.id for m in again]  # enrolment is sticky


def test_qa_arms_follow_the_share():
    class S:  # a study stand-in with only the settings the function reads
        settings = {"qa_share": 0.25}
    assert qa_arms(S) == [True, False, False, False]
    S.settings = {"qa_share": 1.0}
    assert qa_arms(S) == [True]
    S.settings = {"qa_share": 1.5}
    with pytest.raises(CohortError):
        qa_arms(S)
