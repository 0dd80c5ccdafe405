"""Balanced randomisation of reviewers across guideline versions and QA cohorts."""

from __future__ import annotations

from collections import Counter

import pytest

from db.models import GuidelineVersion, Study, User
from review.labeling.assignment import next_assignment
from review.labeling.cohorts import CohortError, ensure_enrolled, joined_counts, qa_arms
from review.labeling.settings import SettingsError, update_settings
from review.labeling.study import study_by_id
from review.labeling.views import guideline_for
from tests.support import make_study


def test_reviewers_are_balanced_across_guideline_versions_and_qa(lab):
    with lab.sessions() as s, s.begin():
        study = make_study(s, 1, n_reviewers=0, name="c").study
        v2 = GuidelineVersion(slug="g-c", version=2, title="t", body_md="b2", content_sha256="1" * 64)
        s.add(v2)
        s.flush()
        update_settings(study, guideline_version_ids=(study.guideline_version_id, v2.id), qa_share=0.5)
        users = [User(username=f"u{i}", role="reviewer", password_hash="x") for i in range(12)]
        s.add_all(users)
        s.flush()
        members = [ensure_enrolled(s, study, u.id) for u in users]
        again = [ensure_enrolled(s, study, u.id) for u in users]
    arms = Counter((m.guideline_version_id, m.qa_enabled) for m in members)
    assert len(arms) == 4 and set(arms.values()) == {3}
    assert [m.id for m in members] == [m.id for m in again]  # enrolment is sticky


def test_qa_arms_follow_the_share():
    study = Study(name="arms", scale_min=1, scale_max=5, settings={})  # never stored
    update_settings(study, qa_share=0.25)
    assert qa_arms(study) == [True, False, False, False]
    update_settings(study, qa_share=1.0)
    assert qa_arms(study) == [True]
    with pytest.raises(SettingsError, match="qa_share must be a number between 0 and 1"):
        update_settings(study, qa_share=1.5)
    assert qa_arms(study) == [True]  # a refused change leaves the stored settings alone


def test_the_guideline_read_model_writes_nothing_and_work_handed_out_enrols(lab):
    """guideline_for only reads: before the first item it refuses (and enrols no one); the claim
    of the first item enrols, and then the reviewer sees their cohort's version."""
    with lab.sessions() as s, s.begin():
        built = make_study(s, 2, n_reviewers=1, name="gf")
        study_id, reviewer_id = built.study.id, built.reviewers[0].id
    with lab.sessions() as s, s.begin():
        with pytest.raises(CohortError, match="not joined"):
            guideline_for(s, study_id, reviewer_id)
        assert joined_counts(s).get(study_id, 0) == 0
        next_assignment(s, study_by_id(s, study_id), reviewer_id)
        view = guideline_for(s, study_id, reviewer_id)
        member = ensure_enrolled(s, study_by_id(s, study_id), reviewer_id)
        assert joined_counts(s)[study_id] == 1
    assert view.id == member.guideline_version_id and view.label == "g-gf v1"
