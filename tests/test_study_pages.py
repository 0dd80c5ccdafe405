"""The issue-13 pages with AppTest: Study setup (create, bad input, edit refused with the reason,
close), Disagreements (settle; QA sees no names), Audit log (filter, CSV), and "Sample now" saying
why it added nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from db.models import AuditEntry, GenerationJob, ItemSettlement, Study, StudyItem, User
from review.accounts.users import add_user
from review.labeling.assignment import next_assignment
from review.labeling.ratings import Submission, submit
from review.labeling.settings import StudySettings
from review.labeling.study import closed_at
from review.media import catalog
from tests.support import PASSWORD, build_study, wait_until
from tests.support_app import page_app, page_user, texts

pytestmark = pytest.mark.slow


def _user(lab, name: str):
    with lab.sessions() as s:
        u = s.scalar(select(User).where(User.username == name))
        return page_user(u.role, u.id, u.username)


def _rate(lab, study_id: int, username: str, score: int) -> int:
    with lab.sessions() as s, s.begin():
        reviewer = s.scalar(select(User.id).where(User.username == username))
        lease = next_assignment(s, s.get(Study, study_id), reviewer)
        submit(s, lease.assignment_id, reviewer, Submission(score=score, comment=f"gives {score}"))
        return lease.item_id


def _click(at, label: str):
    (button,) = [b for b in at.button if b.label == label]
    button.click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture
def one_item(lab) -> int:
    """One item rated 1 by alice and 5 by bob (raters per item 3)."""
    study_id = build_study(lab, 1, name="One", raters_per_item=3, reviewers=("alice", "bob", "carol"))
    _rate(lab, study_id, "alice", 1)
    _rate(lab, study_id, "bob", 5)
    return study_id


def test_admin_creates_a_study_from_the_page(lab, one_item):
    at = page_app("studies_page", _user(lab, "admin")).run()
    assert not at.exception
    at.text_input(key="studies_name").input("From the app")
    at.multiselect(key="studies_sources").select(one_item)
    at.multiselect(key="studies_guidelines").set_value(["fidelity:1", "fidelity:2"])
    at.number_input(key="studies_qa_share").set_value(0.5)
    at.number_input(key="studies_raters").set_value(2)
    at.number_input(key="studies_cap").set_value(4)
    with lab.sessions() as s:
        alice, bob = (s.scalar(select(User.id).where(User.username == n)) for n in ("alice", "bob"))
    at.multiselect(key="studies_reviewers").set_value([alice, bob])
    _click(at, "Create study")
    assert at.success[0].value == "Study 'From the app' created."
    with lab.sessions() as s:
        study = s.scalar(select(Study).where(Study.name == "From the app"))
        settings = StudySettings.of(study)
        assert (study.raters_per_item, settings.qa_share, settings.max_items_per_reviewer) == (2, 0.5, 4)
        assert len(settings.guideline_version_ids) == 2 and settings.reviewer_ids == (alice, bob)
        assert s.scalars(select(AuditEntry.actor).where(AuditEntry.action == "study.create")).one() == "admin"


@pytest.mark.parametrize(("name", "guidelines", "message"), [
    ("", ["fidelity:1"], "A study needs a name."),
    ("One", ["fidelity:1"], "A study named 'One' already exists; pick another name."),
    ("Fine", [], "Pick at least one guideline version."),
])
def test_create_form_bad_input_says_what_to_fix(lab, one_item, name, guidelines, message):
    at = page_app("studies_page", _user(lab, "admin")).run()
    at.text_input(key="studies_name").input(name)
    at.multiselect(key="studies_guidelines").set_value(guidelines)
    _click(at, "Create study")
    assert [e.value for e in at.error] == [message]
    with lab.sessions() as s:
        assert list(s.scalars(select(Study.name))) == ["One"]


def _plan_form(lab, name: str):
    """The create form with 'a generation plan' chosen: one new 48x64 photo, defocus 2 and 4,
    restorers wiener and blurred (2 blurs x 2 restorers = 4 units)."""
    import numpy as np
    from PIL import Image

    arr = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)
    with lab.sessions() as s, s.begin():
        photo = catalog.add_source(s, lab.store, Image.fromarray(arr), title="noise", content="object").id
    at = page_app("studies_page", _user(lab, "admin")).run()
    at.radio(key="studies_items_from").set_value("a generation plan").run()
    assert not at.exception, [e.value for e in at.exception]
    at.text_input(key="studies_name").input(name)
    at.multiselect(key="studies_plan_sources").set_value([photo])
    at.text_input(key="studies_lv_defocus").input("2, 4")
    at.multiselect(key="studies_plan_restorers").set_value(["wiener", "blurred"])
    return at


def _counts(lab) -> tuple[list[str], int]:
    with lab.sessions() as s:
        jobs = s.scalar(select(func.count()).select_from(GenerationJob))
        return sorted(s.scalars(select(Study.name))), jobs


def test_create_a_study_from_a_generation_plan_queues_its_job(lab, one_item):
    at = _plan_form(lab, "Generated")
    # no SD1.5 weights here: not in the default plan, labelled with what it needs
    assert "sd15_img2img (needs SD1.5 weights or the tiny smoke test)" in \
        at.multiselect(key="studies_plan_restorers").options
    _click(at, "Create study")
    with lab.sessions() as s:
        study_id = s.scalar(select(Study.id).where(Study.name == "Generated"))
        job = s.scalars(select(GenerationJob)).one()
        assert (job.study_id, job.progress_total) == (study_id, 4)
    assert at.success[0].value.startswith(
        f"Study 'Generated' created; job {job.id} started in the background (4 restorations)")

    def finished() -> str | None:
        with lab.sessions() as s:
            status = s.scalar(select(GenerationJob.status))
        return status if status in ("done", "failed", "cancelled") else None

    assert wait_until(finished, timeout=90, what="the background job to finish") == "done"
    with lab.sessions() as s:
        items = select(func.count()).select_from(StudyItem).where(StudyItem.study_id == study_id)
        assert s.scalar(items) == 4


@pytest.mark.parametrize(("name", "defocus", "message"), [
    ("Fine", "5, xyz", "The plan cannot run; nothing was created.\n\n- defocus: 'xyz' is not a number; "
     "write numbers separated by commas, e.g. 4, 8."),
    ("Fine", "", "The plan cannot run; nothing was created.\n\n- A plan needs at least one source image, "
     "one blur and one restorer."),
    ("One", "2", "A study named 'One' already exists; pick another name."),  # valid plan, no job either
])
def test_bad_plan_or_study_input_writes_nothing(lab, one_item, name, defocus, message):
    at = _plan_form(lab, name)
    at.text_input(key="studies_lv_defocus").input(defocus)
    _click(at, "Create study")
    assert [e.value for e in at.error] == [message] and not at.success
    assert _counts(lab) == (["One"], 0)


def test_edit_refused_with_the_reason_then_close_and_reopen(lab, one_item):
    at = page_app("studies_page", _user(lab, "admin")).run()
    at.number_input(key=f"studies_edit_raters_{one_item}").set_value(1)
    _click(at, "Save changes")
    assert [e.value for e in at.error] == [
        "An item of 'One' already has 2 reviewers (ratings or leases), so raters per item cannot go below 2."]
    at.number_input(key=f"studies_edit_raters_{one_item}").set_value(2)
    at.number_input(key=f"studies_edit_gold_{one_item}").set_value(0.25)
    _click(at, "Save changes")
    assert at.success[0].value == "Study 'One' saved."
    _click(at, "Close study")
    assert at.success[0].value == "Study 'One' closed."
    assert "closed" in at.caption[0].value
    with lab.sessions() as s:
        study = s.get(Study, one_item)
        assert (study.raters_per_item, study.gold_rate, closed_at(s, one_item) is not None) == (2, 0.25, True)
    _click(at, "Reopen study")
    assert at.success[0].value == "Study 'One' reopened."


def test_settle_a_disagreement_and_qa_sees_no_names(lab, one_item):
    with lab.sessions() as s, s.begin():
        add_user(s, "quinn", PASSWORD, "qa")
    admin = page_app("disagreements_page", _user(lab, "admin")).run()
    assert not admin.exception
    assert "spread 4" in admin.markdown[0].value
    (table,) = admin.dataframe
    assert sorted(zip(table.value["rater"], table.value["score"], strict=True)) == [("alice", 1), ("bob", 5)]

    qa = page_app("disagreements_page", _user(lab, "quinn")).run()
    page = texts(qa)
    assert "alice" not in page and "bob" not in page and "rater 1" in page
    item = int(next(f.key for f in qa.text_input if f.key.startswith("dis_note_")).rsplit("_", 1)[1])
    _click(qa, "Settle")
    assert [e.value for e in qa.error] == ["Write a note saying how the item was settled."]
    qa.selectbox(key=f"dis_score_{item}").set_value(2)
    qa.text_input(key=f"dis_note_{item}").input("alice followed the guideline")
    _click(qa, "Settle")
    assert qa.success[0].value == f"Item {item} settled."
    assert "Settled by quinn: consensus 2" in qa.info[0].value
    with lab.sessions() as s:
        row = s.scalars(select(ItemSettlement)).one()
        assert (row.item_id, row.consensus_score, row.note) == (item, 2, "alice followed the guideline")


def test_audit_page_filters_and_downloads_csv(lab, one_item):
    at = page_app("audit_page", _user(lab, "admin")).run()
    assert not at.exception
    # 4 accounts created by build_study, 2 ratings
    assert at.caption[0].value == "6 entries, newest first."
    at.selectbox(key="audit_actor").set_value("alice").run()
    (table,) = at.dataframe
    assert list(table.value["action"]) == ["rating.submit"]
    at.multiselect(key="audit_actions").set_value(["login"]).run()
    assert at.info[0].value == "No entries match these filters."
    at.multiselect(key="audit_actions").set_value(["rating.submit"]).run()
    (download,) = at.get("download_button")
    assert download.proto.label == "Download CSV"


def test_audit_page_pages_through_a_long_log(lab):
    from review.accounts.audit import PAGE_ROWS, record

    with lab.sessions() as s, s.begin():
        add_user(s, "admin", PASSWORD, "admin")  # recorded as the oldest entry ("user.create admin")
    with lab.sessions() as s, s.begin():
        for i in range(PAGE_ROWS + 5):
            record(s, "study.edit", actor="cli", target=f"study {i}")
    at = page_app("audit_page", _user(lab, "admin")).run()
    total = PAGE_ROWS + 5 + 1  # and the admin account's creation
    assert at.caption[0].value == f"{total:,} entries, newest first; showing 1-{PAGE_ROWS:,}."
    assert len(at.dataframe[0].value) == PAGE_ROWS
    at.number_input(key=f"audit_page_{total}").set_value(2).run()
    assert not at.exception
    assert at.caption[0].value == f"{total:,} entries, newest first; showing {PAGE_ROWS + 1:,}-{total:,}."
    assert list(at.dataframe[0].value["what"])[-1] == "admin"  # the oldest entry is on the last page


def test_sample_now_with_nothing_eligible_says_why(lab, one_item):
    at = page_app("qa_page", _user(lab, "admin")).run()
    at.button(key=f"qa_sample_{one_item}").click().run()
    assert not at.exception
    assert at.success[0].value.startswith("No rating added to the QA sample. The study's QA share is 0")
