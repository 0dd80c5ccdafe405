"""The Crowd page (review/ui/crowd_page.py) in AppTest: an admin creates a Prolific pool and sees
its link with Prolific's placeholders, marks a training example and sets the consent text, runs
cleansing on participants who went through the real flow, reads each decision and overrides one;
reopening says how many more ratings are needed; the page refuses non-admins."""

from __future__ import annotations

from sqlalchemy import select

from db.models import Study, User
from review.accounts.links import lab_secret, read_link, sign_link
from review.analysis import crowd_cleansing as cc
from review.database import Lab
from review.labeling import qa
from review.labeling.pools import PoolSettings, PoolSpec, add_pool, pools_of
from review.labeling.settings import StudySettings
from tests.support import build_study
from tests.support_app import page_app, page_user, texts
from tests.support_crowd import QUICK_FLOW, crowd_session


def _admin(lab: Lab):  # noqa: ANN202 - SessionUser
    with lab.read() as s:
        uid = s.scalar(select(User.id).where(User.username == "admin"))
    return page_user("admin", uid=uid, username="admin")


def _click(at, label: str):  # noqa: ANN001, ANN202
    (button,) = [b for b in at.button if b.label == label]
    return button.click().run()


def test_an_admin_creates_a_pool_and_copies_its_link(lab: Lab) -> None:
    study_id = build_study(lab, 4)
    at = page_app("crowd_page", _admin(lab)).run()
    assert not at.exception, [e.value for e in at.exception]
    assert "no pools yet" in texts(at)
    at.text_input(key="crowd_base_url").input("https://lab.example.org")
    at.text_input(key="crowd_new_name").input("Prolific *wave* 1")
    at.selectbox(key="crowd_new_platform").set_value("prolific")
    at.text_input(key="crowd_new_completion").input("C0DE77")
    at.number_input(key="crowd_new_per_item").set_value(0.1)
    at = _click(at, "Save pool")
    assert not at.exception, [e.value for e in at.exception]
    assert [e.value for e in at.success] == ["Pool Prolific \\*wave\\* 1 added; its link is below."]
    with lab.read() as s:
        [pool] = pools_of(s, study_id)
        assert (pool.name, pool.platform, pool.completion_code, pool.pay_per_item) == \
            ("Prolific *wave* 1", "prolific", "C0DE77", 0.1)
    [link] = [c.value for c in at.code]
    assert link.startswith("https://lab.example.org/_lab/join?t=")
    assert link.endswith("&PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}"
                         "&SESSION_ID={{%SESSION_ID%}}")
    assert read_link(lab_secret(lab.settings), link.split("t=")[1].split("&")[0]).pool_id == pool.id
    assert "Prolific \\*wave\\* 1" in [e.label for e in at.expander][-1]  # the name shown as text
    # closing it and voiding its links
    at = _click(at, "Close to new participants")
    assert "Reopen" in [b.label for b in at.button]
    at = _click(at, "Void links")
    with lab.read() as s:
        [pool] = pools_of(s, study_id)
        assert (pool.status, pool.link_version) == ("closed", 2)
    # a refused pool says why on the page and adds nothing
    at.text_input(key="crowd_new_name").input("no code")
    at.text_input(key="crowd_new_completion").input("")
    at = _click(at, "Save pool")
    assert any("completion code" in e.value for e in at.error)
    with lab.read() as s:
        assert len(pools_of(s, study_id)) == 1


def test_training_examples_and_the_consent_text(lab: Lab) -> None:
    study_id = build_study(lab, 4)
    at = page_app("crowd_page", _admin(lab)).run()
    at.radio(key="crowd_section").set_value("Training and consent").run()
    at.number_input(key="crowd_train_item").set_value(1)
    at.number_input(key="crowd_train_min").set_value(2)
    at.number_input(key="crowd_train_max").set_value(3)
    at.text_area(key="crowd_train_reason").input("The face changed: not faithful.")
    at = _click(at, "Mark as training example")
    at.text_area(key="crowd_consent_text").input("I agree to rate images.")
    at = _click(at, "Save consent text")
    assert not at.exception, [e.value for e in at.exception]
    assert at.radio(key="crowd_section").value == "Training and consent"  # still there after saving
    with lab.read() as s:
        [example] = qa.training_examples(s, study_id)
        assert (example.id, example.expected_min, example.expected_max) == (1, 2, 3)
        assert StudySettings.of(s.get(Study, study_id)).consent_text == "I agree to rate images."


def test_running_cleansing_and_overriding_a_decision(lab: Lab) -> None:
    study_id = build_study(lab, 12, raters_per_item=2)
    secret = lab_secret(lab.settings)
    with lab.write() as s:
        pool = add_pool(s, study_id, PoolSpec(name="crowd", completion_code="OK", pay_per_item=0.5,
                                              flow=PoolSettings(**QUICK_FLOW)))
        token = sign_link(secret, study_id, pool.id, pool.link_version)
    crowd_session(lab, secret, token, {"pid": "good"})
    flat = crowd_session(lab, secret, token, {"pid": "flat"}, score=lambda _i: 4)
    crowd_session(lab, secret, token, {"pid": "spam"}, trap_right=False)
    at = page_app("crowd_page", _admin(lab)).run()
    at.radio(key="crowd_section").set_value("Data cleansing").run()
    assert "No cleansing decisions yet" in texts(at)
    at = _click(at, "Run cleansing")
    assert not at.exception, [e.value for e in at.exception]
    assert any("3 submissions cleansed: 1 accept and use, 1 accept but do not use, 1 reject." in e.value
               for e in at.success)
    [report] = [d.value for d in at.dataframe if "outcome" in d.value.columns]
    assert list(report["outcome"]) == ["accept and use", "accept, do not use", "reject"]
    assert "straight-lining" in report.loc[report["participant"] == flat, "reasons"].iloc[0]
    assert "12 more ratings needed" not in texts(at) and "More ratings needed" in texts(at)
    # the admin overrides the straight-liner's decision, with a reason
    at.selectbox(key="crowd_o_pid").set_value(flat)
    at.radio(key="crowd_o_outcome").set_value("accept_use")
    at.text_input(key="crowd_o_reason").input("Checked by hand: these items really are alike.")
    at = _click(at, "Override")
    assert not at.exception, [e.value for e in at.exception]
    with lab.read() as s:
        decision = cc.current_decisions(s, study_id)[flat]
        assert (decision.outcome, decision.decided_by) == ("accept_use", _admin(lab).id)
    [report] = [d.value for d in at.dataframe if "outcome" in d.value.columns]
    assert report.loc[report["participant"] == flat, "decided_by"].iloc[0] == "admin"
    at = _click(at, "Reopen items of not-used submissions")
    assert any("items reopened (1 submission set aside)" in e.value for e in at.success)
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["Cleansing report", "Approve / reject", "Bonus", "Block list"]


def test_the_page_refuses_a_reviewer(lab: Lab) -> None:
    build_study(lab, 2)
    at = page_app("crowd_page", page_user("reviewer", uid=1, username="alice")).run()
    assert [e.value for e in at.error] == ["The Crowd page is only available to admins."]
