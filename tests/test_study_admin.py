"""Studies run from the app (issue 13): create with a guideline experiment, items and a reviewer
list; edit what may still change; close; settle disagreements; the audit log written by the
domain in the action's own transaction. Domain functions here; the pages in test_study_pages.py."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import func, select

from db.models import AuditEntry, ItemSettlement, Study, StudyItem, User
from review.accounts.audit import AuditError, audit_csv, audit_entries, count_entries, record
from review.accounts.users import LoginRefused, add_user, authenticate, reset_password, set_active
from review.analysis.export import ratings_frame
from review.errors import ReviewError
from review.labeling import qa
from review.labeling.assignment import next_assignment
from review.labeling.disagreements import SettlementError, disagreements, settle_item
from review.labeling.ratings import Submission, submit, undo_last
from review.labeling.settings import StudySettings, update_settings
from review.labeling.study import (
    StudyConfig,
    StudyEdit,
    StudyError,
    close_study,
    count_items,
    create_study,
    edit_study,
)
from review.labeling.views import ratable_studies
from tests.support import PASSWORD, build_study


def _id(s, name: str) -> int:
    return s.scalar(select(User.id).where(User.username == name))


def _actions(s) -> list[tuple[str, str, str]]:
    return [(e.actor, e.action, e.target) for e in s.scalars(select(AuditEntry).order_by(AuditEntry.id))]


def _rate(lab, study_id: int, username: str, score: int, comment: str = "") -> int:
    with lab.sessions() as s, s.begin():
        reviewer = _id(s, username)
        lease = next_assignment(s, s.get(Study, study_id), reviewer)
        assert lease is not None
        submit(s, lease.assignment_id, reviewer, Submission(score=score, comment=comment))
        return lease.item_id


@pytest.fixture
def source(lab) -> int:
    """A 4-item study (one gold control) that new studies copy; alice, bob, carol, admin exist."""
    return build_study(lab, 4, name="Source", gold_every=4, reviewers=("alice", "bob", "carol"))


def test_create_study_with_experiment_items_and_reviewer_list(lab, source):
    with lab.sessions() as s, s.begin():
        alice, bob = _id(s, "alice"), _id(s, "bob")
        study = create_study(s, StudyConfig(name="  Exp  ", raters_per_item=2, gold_rate=0.2), "fidelity:1",
                             5, arms=["fidelity:2"], qa_share=0.5, reviewer_ids=[alice, bob],
                             source_study_ids=[source], actor_id=_id(s, "admin"))
        settings = StudySettings.of(study)
        gold = list(s.scalars(select(StudyItem.is_gold).where(StudyItem.study_id == study.id)))
        assert study.name == "Exp" and count_items(s, study) == 4 and sum(gold) == 1
        assert len(settings.guideline_version_ids) == 2
        assert settings.guideline_version_ids[0] == study.guideline_version_id
        assert (settings.qa_share, settings.max_items_per_reviewer) == (0.5, 5)
        assert settings.reviewer_ids == (alice, bob)
        assert _actions(s)[-1] == ("admin", "study.create", "Exp")
        carol = _id(s, "carol")
        assert next_assignment(s, study, carol) is None  # not on the list
        assert [c.name for c in ratable_studies(s, carol)] == ["Source"]
        assert next_assignment(s, study, alice) is not None


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "Source"}, "A study named 'Source' already exists"),
    ({"name": "   "}, "A study needs a name"),
    ({"guideline": "fidelity:9"}, "No guideline version 'fidelity:9'"),
    ({"arms": ["nope:1"]}, "No guideline version 'nope:1'"),
    ({"qa_share": 1.5}, "qa_share must be a number between 0 and 1"),
    ({"reviewer_ids": [999]}, "No user with id(s) [999]"),
    ({"cap": 0}, "max_items_per_reviewer must be a whole number of at least 1"),
])
def test_create_study_refuses_bad_input_and_writes_nothing(lab, source, kwargs, message):
    def counts() -> tuple[int, int]:
        with lab.sessions() as s:
            return (s.scalar(select(func.count()).select_from(Study)),
                    s.scalar(select(func.count()).select_from(AuditEntry)))

    before = counts()
    with pytest.raises(ReviewError, match=re.escape(message)), lab.sessions() as s, s.begin():
        create_study(s, StudyConfig(name=kwargs.get("name", "New")), kwargs.get("guideline", "fidelity:1"),
                     kwargs.get("cap"), arms=kwargs.get("arms", ()), qa_share=kwargs.get("qa_share", 0.0),
                     reviewer_ids=kwargs.get("reviewer_ids", ()), source_study_ids=[source])
    assert counts() == before


def test_a_qa_account_cannot_be_listed_as_a_reviewer(lab, source):
    with lab.sessions() as s, s.begin():
        quinn = add_user(s, "quinn", PASSWORD, "qa").id
    with pytest.raises(StudyError, match="quinn cannot rate"), lab.sessions() as s, s.begin():
        create_study(s, StudyConfig(name="New"), "fidelity:1", reviewer_ids=[quinn])


def test_edit_applies_and_audits_but_refuses_fewer_raters_than_an_item_holds(lab):
    study_id = build_study(lab, 1, name="One", raters_per_item=3, reviewers=("alice", "bob"))
    _rate(lab, study_id, "alice", 2)
    _rate(lab, study_id, "bob", 5)
    with lab.sessions() as s, s.begin():
        edit_study(s, study_id, StudyEdit(" words ", 2, 0.3, 7, (_id(s, "alice"),)), actor_id=_id(s, "admin"))
    with lab.sessions() as s:
        study = s.get(Study, study_id)
        assert (study.raters_per_item, study.gold_rate, study.description) == (2, 0.3, "words")
        assert StudySettings.of(study).max_items_per_reviewer == 7
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "study.edit")).one()
        assert entry.actor == "admin"
        assert (entry.details["raters_per_item"], entry.details["gold_rate"]) == ([3, 2], [0.0, 0.3])
    with pytest.raises(StudyError, match="already has 2 reviewers .* cannot go below 2"), \
            lab.sessions() as s, s.begin():
        edit_study(s, study_id, StudyEdit("", 1, 0.3, None, ()))
    with pytest.raises(StudyError, match="gold_rate must be between 0 and 1"), lab.sessions() as s, s.begin():
        edit_study(s, study_id, StudyEdit("", 2, 1.5, None, ()))


def test_a_closed_study_hands_out_no_work_refuses_edits_and_reopens(lab, source):
    with lab.sessions() as s, s.begin():
        close_study(s, source, actor_id=_id(s, "admin"))
    with lab.sessions() as s, s.begin():
        alice = _id(s, "alice")
        assert next_assignment(s, s.get(Study, source), alice) is None
        assert ratable_studies(s, alice) == [] and len(ratable_studies(s)) == 1
    with pytest.raises(StudyError, match="is closed; reopen it"), lab.sessions() as s, s.begin():
        edit_study(s, source, StudyEdit("", 2, 0.1, None, ()))
    with pytest.raises(StudyError, match="already closed"), lab.sessions() as s, s.begin():
        close_study(s, source)
    with lab.sessions() as s, s.begin():
        close_study(s, source, closed=False)
    _rate(lab, source, "alice", 4)
    with lab.sessions() as s:
        assert [a for _who, a, _t in _actions(s) if a.startswith("study.")] == ["study.close", "study.reopen"]


def test_disagreements_widest_first_and_settlement_kept_beside_the_ratings(lab):
    study_id = build_study(lab, 3, name="D", raters_per_item=2, reviewers=("alice", "bob"))
    by_item: dict[int, list[int]] = {}
    for who, scores in (("alice", [1, 3, 4]), ("bob", [5, 3, 2])):
        for score in scores:  # in the order each reviewer receives the items
            by_item.setdefault(_rate(lab, study_id, who, score, f"{who} says {score}"), []).append(score)
    with lab.sessions() as s:
        found = disagreements(s, study_id)
        spreads = [d.spread for d in found]
        assert spreads == sorted(spreads, reverse=True) and all(x >= 1 for x in spreads)
        assert {d.item_id: sorted(r.score for r in d.scores) for d in found} == {
            i: sorted(v) for i, v in by_item.items() if max(v) - min(v) >= 1}
        assert {r.rater for r in found[0].scores} == {"alice", "bob"}
        hidden = disagreements(s, study_id, pseudonymise=True)[0]
        assert {r.rater for r in hidden.scores} == {"rater 1", "rater 2"}
        top = found[0].item_id
    with lab.sessions() as s, s.begin():
        add_user(s, "quinn", PASSWORD, "qa")
    for who, kwargs, message in [
        ("quinn", {"note": "  "}, "Write a note"),
        ("quinn", {"note": "x", "consensus_score": 6}, "Pick a consensus score from 1 to 5"),
    ]:
        with pytest.raises(SettlementError, match=message), lab.sessions() as s, s.begin():
            settle_item(s, top, _id(s, who), **kwargs)
    with lab.sessions() as s, s.begin():
        settle_item(s, top, _id(s, "quinn"), note="discussed: blur hides the face", consensus_score=3)
    with lab.sessions() as s:
        assert disagreements(s, study_id)[0].settlement.consensus_score == 3
        df = ratings_frame(s, s.get(Study, study_id))
        settled = df[df["item"] == top]
        assert list(settled["settled_score"]) == [3, 3]  # beside, not instead of, the original scores
        assert sorted(settled["score"]) == sorted(by_item[top])
        assert df[df["item"] != top]["settled_score"].isna().all()
        assert s.scalar(select(func.count()).select_from(ItemSettlement)) == 1
        assert _actions(s)[-1] == ("quinn", "study.settle", f"item {top}")


def test_audit_rows_follow_the_actions_and_roll_back_with_them(lab, source):
    with lab.sessions() as s, s.begin():
        assert _actions(s) == [("system", "user.create", n) for n in ("alice", "bob", "carol", "admin")]
        admin = _id(s, "admin")
        add_user(s, "dora", PASSWORD, "reviewer", actor_id=admin)
        reset_password(s, "dora", "another-pass", actor_id=admin)
        set_active(s, "dora", False, actor_id=admin)
    with pytest.raises(LoginRefused):
        authenticate(lab.sessions, "dora", "another-pass")
    authenticate(lab.sessions, "alice", PASSWORD)
    _rate(lab, source, "alice", 4)
    with lab.sessions() as s, s.begin():
        undo_last(s, s.get(Study, source), _id(s, "alice"))
    _rate(lab, source, "alice", 2)
    # An action that fails takes its audit row with it.
    with pytest.raises(RuntimeError), lab.sessions() as s, s.begin():
        record(s, "study.close", actor_id=_id(s, "admin"), target="Source")
        raise RuntimeError("the action failed after logging")
    with lab.sessions() as s:
        assert [(who, what) for who, what, _t in _actions(s)[4:]] == [
            ("admin", "user.create"), ("admin", "user.password_reset"), ("admin", "user.deactivate"),
            ("dora", "login_failed"), ("alice", "login"), ("alice", "rating.submit"),
            ("alice", "rating.withdraw"), ("alice", "rating.supersede")]


def test_qa_verdicts_settings_and_why_nothing_was_sampled(lab, source):
    with lab.sessions() as s, s.begin():
        quinn = add_user(s, "quinn", PASSWORD, "qa").id
        study = s.get(Study, source)
        assert qa.sample_for_qa(s, study) == []
        assert "QA share is 0" in qa.why_nothing_sampled(s, study)
        update_settings(study, qa_share=1.0)
        qa.set_qa_options(s, study, rate=1.0, actor_id=_id(s, "admin"))
    with lab.sessions() as s, s.begin():
        why = qa.why_nothing_sampled(s, s.get(Study, source))
        assert "No reviewer in the QA-on cohort has rated yet" in why
    _rate(lab, source, "alice", 4)
    _rate(lab, source, "alice", 3)
    with lab.sessions() as s, s.begin():
        study, admin = s.get(Study, source), _id(s, "admin")
        first, second = qa.sample_for_qa(s, study, actor_id=admin)
        assert qa.sample_for_qa(s, study) == []
        assert "Every stratum already holds its share (100%)" in qa.why_nothing_sampled(s, study)
        qa.accept(s, first, quinn)
        qa.correct(s, second, quinn, 1, "too generous")
    with lab.sessions() as s:
        rows = s.scalars(select(AuditEntry).where(AuditEntry.action.in_(
            ("settings.change", "qa.sample", "qa.accept", "qa.correct"))).order_by(AuditEntry.id)).all()
        assert [(r.actor, r.action) for r in rows] == [("admin", "settings.change"), ("admin", "qa.sample"),
                                                       ("quinn", "qa.accept"), ("quinn", "qa.correct")]
        assert rows[1].details == {"rate": 1.0, "added": 2} and rows[3].details["new_score"] == 1


def test_audit_filters_and_csv_neutralises_formulas(lab):
    with lab.sessions() as s, s.begin():
        admin = add_user(s, "admin", PASSWORD, "admin").id
        record(s, "study.edit", actor_id=admin, target="=cmd|' /C calc'!A0", note="@SUM(1)")
        record(s, "user.create", actor="cli", target="zed")
    with lab.sessions() as s:
        assert [r.action for r in audit_entries(s, actor="admin")] == ["study.edit"]
        assert [r.target for r in audit_entries(s, actions=("user.create",))] == ["zed", "admin"]
        today = datetime.now(UTC).date()
        assert len(audit_entries(s, since=today, until=today)) == 3
        assert audit_entries(s, until=date(2000, 1, 1)) == []
        with pytest.raises(AuditError, match="after the end day"):
            audit_entries(s, since=today, until=date(2000, 1, 1))
        data = audit_csv(audit_entries(s))
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[0] == ["at_utc", "actor", "action", "target", "details"]
    assert [r[1:4] for r in rows[1:]] == [["cli", "user.create", "zed"],
                                          ["admin", "study.edit", "'=cmd|' /C calc'!A0"],
                                          ["system", "user.create", "admin"]]
    assert rows[2][4] == "note=@SUM(1)"


def test_audit_pages_walk_every_entry_once_newest_first(lab):
    with lab.sessions() as s, s.begin():
        for i in range(25):
            record(s, "study.edit", actor="cli", target=f"study {i}")
        record(s, "user.create", actor="cli", target="zed")
    with lab.sessions() as s:
        assert count_entries(s) == 26
        assert count_entries(s, actions=("study.edit",)) == 25
        pages = [audit_entries(s, actions=("study.edit",), limit=10, offset=o) for o in (0, 10, 20)]
        assert [len(p) for p in pages] == [10, 10, 5]
        targets = [r.target for p in pages for r in p]
        assert targets == [f"study {i}" for i in range(24, -1, -1)]  # newest first, none twice
        with pytest.raises(AuditError, match="Pages start at 1"):
            audit_entries(s, offset=-1)
