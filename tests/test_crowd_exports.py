"""What goes back to the platforms (review.analysis.crowd_exports), from participants who went
through the real flow on a Prolific and an MTurk pool: the recruitment links with each platform's
placeholders, the cleansing report with every criterion and who decided, the approve/reject and
bonus files in Prolific's, MTurk's and the plain shape (exact headers and rows), the block list,
formula cells neutralised, and how many more ratings the study needs after reopening."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from db.models import Participant, StudyItem, User
from review.accounts.links import read_link, sign_link
from review.analysis import crowd_cleansing as cc
from review.analysis import crowd_exports as ce
from review.database import Lab
from review.labeling import qa
from review.labeling.pools import PoolSettings, PoolSpec, add_pool, get_pool
from tests.support import build_study
from tests.support_crowd import QUICK_FLOW, crowd_session

SECRET = b"e" * 48
FEEDBACK = ("Your answers did not pass the study's attention checks. Please read each item and answer it "
            "as the instructions say.")


def _rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"))))


def _prolific(who: str) -> dict[str, str]:
    return {"PROLIFIC_PID": f"pid{who}", "STUDY_ID": "st1", "SESSION_ID": f"ses{who}"}


@pytest.fixture
def cleansed(lab: Lab) -> tuple[Lab, int, dict[str, int]]:
    """Two Prolific participants (one honest, one straight-lining) and two MTurk workers (one
    failing the traps, one an admin leaves unused), cleansed; the trap failer blocked."""
    study_id = build_study(lab, 12, raters_per_item=2)
    with lab.write() as s:
        flow = PoolSettings(**QUICK_FLOW)
        pro = add_pool(s, study_id, PoolSpec(name="Prolific A", platform="prolific", completion_code="C1",
                                             pay_per_item=0.125, currency="GBP", flow=flow))
        mt = add_pool(s, study_id, PoolSpec(name="MTurk B", platform="mturk", completion_code="C2",
                                            pay_per_item=0.05, flow=flow))
        tp, tm = (sign_link(SECRET, study_id, p.id, p.link_version) for p in (pro, mt))
        admin = s.scalar(select(User.id).where(User.username == "admin"))
    ids = {
        "good": crowd_session(lab, SECRET, tp, _prolific("A")),
        "flat": crowd_session(lab, SECRET, tp, _prolific("B"), score=lambda _i: 4),
        "spam": crowd_session(lab, SECRET, tm, {"workerId": "W1", "assignmentId": "A1", "hitId": "H1"},
                              trap_right=False),
        "rushed": crowd_session(lab, SECRET, tm, {"workerId": "W2", "assignmentId": "A2", "hitId": "H1"}),
    }
    with lab.write() as s:
        cc.run_cleansing(s, study_id)
        cc.override(s, ids["rushed"], "accept_no_use", "=Looked rushed", actor_id=admin)
        cc.block(s, ids["spam"], "failed attention checks", actor_id=admin)
    return lab, study_id, ids


def test_links_carry_each_platforms_placeholders(lab: Lab) -> None:
    study_id = build_study(lab, 2)
    with lab.write() as s:
        pools = {p: add_pool(s, study_id, PoolSpec(name=p, platform=p, completion_code="C"))
                 for p in ("prolific", "mturk", "plain")}
        links = {p: ce.pool_link(s, SECRET, pool.id, "https://lab.example.org/") for p, pool in pools.items()}
        with pytest.raises(ce.ExportError, match="http"):
            ce.pool_link(s, SECRET, pools["plain"].id, "javascript:alert(1)")
    prefix = "https://lab.example.org/_lab/join?t="
    assert all(link.startswith(prefix) for link in links.values())
    assert links["prolific"].endswith(
        "&PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}")
    assert "&" not in links["mturk"]  # MTurk appends workerId, assignmentId and hitId itself
    assert links["plain"].endswith("&pid=PARTICIPANT_ID")
    token = links["plain"][len(prefix):].split("&")[0]
    claims = read_link(SECRET, token)
    assert (claims.study_id, claims.pool_id) == (study_id, pools["plain"].id)
    with lab.read() as s:  # the page's link stays the same all day: its lifetime counts from midnight
        shown = ce.pool_link(s, SECRET, pools["plain"].id, "https://lab.example.org", today=True)
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    assert read_link(SECRET, shown.split("t=")[1].split("&")[0]).expires == midnight + timedelta(days=30)


def test_the_cleansing_report_has_every_criterion_and_who_decided(cleansed) -> None:  # noqa: ANN001
    lab, study_id, ids = cleansed
    with lab.read() as s:
        rows = _rows(ce.export_csv(s, study_id, "report"))
    assert rows[0] == ["participant", "pool", "platform", "platform_id", "live_items", "traps",
                       "trap_failures", "gold_items", "gold_accuracy", "score_variance", "others_variance",
                       "median_seconds", "bt500_rejected", "ds_accuracy", "consensus_r", "outlier_ratings",
                       "forgiven", "ratings_set_aside", "outcome",
                       "reasons", "platform_feedback", "decided_by", "decided_at"]
    by_id = {int(r[0]): dict(zip(rows[0], r, strict=True)) for r in rows[1:]}
    assert set(by_id) == set(ids.values())
    good, flat, spam, rushed = (by_id[ids[k]] for k in ("good", "flat", "spam", "rushed"))
    assert (good["pool"], good["platform"], good["platform_id"], good["outcome"], good["decided_by"]) == \
        ("Prolific A", "prolific", "pidA", "accept_use", "automatic")
    assert (good["live_items"], good["traps"], good["trap_failures"], good["median_seconds"]) == \
        ("6", "2", "0", "7.0")
    assert flat["outcome"] == "accept_no_use" and flat["score_variance"] == "0.0"
    assert flat["reasons"] == ("straight-lining: score variance 0.00 below 0.25 while the others' scores of "
                              "the same items vary by 2.22")
    assert (spam["outcome"], spam["trap_failures"], spam["reasons"], spam["platform_feedback"]) == \
        ("reject", "2", "failed 2 of 2 attention checks", FEEDBACK)
    # the admin's override, formula-like reason neutralised for spreadsheets
    assert (rushed["outcome"], rushed["decided_by"], rushed["reasons"]) == ("accept_no_use", "admin",
                                                                           "'=Looked rushed")


def test_approve_reject_files_in_each_platforms_shape(cleansed) -> None:  # noqa: ANN001
    lab, study_id, _ids = cleansed
    with lab.read() as s:
        prolific, mturk, plain = (_rows(ce.export_csv(s, study_id, "approve", p))
                                  for p in ce.EXPORT_PLATFORMS)
    assert prolific == [["participant_id", "submission_id", "status", "reason", "rejection_category"],
                        ["pidA", "sesA", "APPROVE", "", ""], ["pidB", "sesB", "APPROVE", "", ""]]
    assert mturk == [["AssignmentId", "WorkerId", "HITId", "Approve", "Reject"],
                     ["A1", "W1", "H1", "", FEEDBACK], ["A2", "W2", "H1", "x", ""]]
    assert plain == [["pid", "decision", "reason"], ["pidA", "APPROVE", ""], ["pidB", "APPROVE", ""],
                     ["W1", "REJECT", FEEDBACK], ["W2", "APPROVE", ""]]


def test_prolific_rejections_carry_the_category_prolific_asks_for(cleansed) -> None:  # noqa: ANN001
    """A failed attention check is FAILED_CHECK; an admin's rejection is OTHER."""
    lab, study_id, ids = cleansed
    with lab.write() as s:
        admin = s.scalar(select(User.id).where(User.username == "admin"))
        cc.override(s, ids["flat"], "reject", "gave 4 to everything", actor_id=admin)
    with lab.read() as s:
        rows = _rows(ce.export_csv(s, study_id, "approve", "prolific"))
    assert rows[2] == ["pidB", "sesB", "REJECT", FEEDBACK, "OTHER"]
    with lab.read() as s:
        spam = next(r for r in ce._rows(s, study_id, "mturk") if r.participant.id == ids["spam"])
    assert spam.rejection_category == "FAILED_CHECK"  # the automatic rejection of a failed trap


def test_bonus_files_pay_per_item_to_accepted_submissions(cleansed) -> None:  # noqa: ANN001
    lab, study_id, _ids = cleansed
    with lab.read() as s:
        prolific = ce.export_csv(s, study_id, "bonus", "prolific")
        mturk = _rows(ce.export_csv(s, study_id, "bonus", "mturk"))
        plain = _rows(ce.export_csv(s, study_id, "bonus", "plain"))
    # Prolific's bulk bonus: `<participant_id>,<amount>` lines, no header; 6 items x 0.125 = 0.75
    assert prolific == b"pidA,0.75\npidB,0.75\n"
    # the rejected worker gets nothing; the unused one is paid for the 5 items it rated
    assert mturk == [["WorkerId", "AssignmentId", "BonusAmount", "Reason"],
                     ["W2", "A2", "0.25", "5 items rated at 0.05 USD each"]]
    assert plain == [["pid", "amount", "currency", "items"], ["pidA", "0.75", "GBP", "6"],
                     ["pidB", "0.75", "GBP", "6"], ["W2", "0.25", "USD", "5"]]


def test_block_list_names_the_platform_id(cleansed) -> None:  # noqa: ANN001
    lab, study_id, _ids = cleansed
    with lab.read() as s:
        rows = _rows(ce.export_csv(s, study_id, "blocklist"))
    assert rows[0] == ["platform", "participant_id", "reason", "blocked_at"]
    assert [r[:3] for r in rows[1:]] == [["mturk", "W1", "failed attention checks"]]
    with pytest.raises(ce.ExportError, match="one of"), lab.read() as s:
        ce.export_csv(s, study_id, "everything")


def test_reopening_says_items_freed_and_ratings_still_needed(cleansed) -> None:  # noqa: ANN001
    lab, study_id, ids = cleansed
    with lab.read() as s:
        # 12 items x 2 raters; only the honest participant's 6 ratings are used
        assert ce.ratings_needed(s, study_id) == ce.RatingsNeeded(items_short=12, ratings_short=18)
    with lab.write() as s:
        done = ce.reopen_items(s, study_id)
    assert (done.submissions, done.items) == (3, 12)
    assert done.line() == "12 items reopened (3 submissions set aside); 18 more ratings needed on 12 items."
    with lab.write() as s:  # nothing more to reopen
        assert ce.reopen_items(s, study_id).items == 0
    with lab.read() as s:
        pool = get_pool(s, s.get(Participant, ids["good"]).pool_id)
        link = ce.pool_link(s, SECRET, pool.id, "https://lab.example.org")
    newer = crowd_session(lab, SECRET, link.split("t=")[1].split("&")[0], _prolific("C"))
    with lab.write() as s:
        cc.run_cleansing(s, study_id)
        assert cc.current_decisions(s, study_id)[newer].outcome == "accept_use"
        assert ce.ratings_needed(s, study_id).ratings_short == 12  # six more used ratings


def test_training_examples_are_marked_with_range_and_reason(lab: Lab) -> None:
    study_id = build_study(lab, 4)
    with lab.read() as s:
        items = list(s.scalars(select(StudyItem.id).where(StudyItem.study_id == study_id)
                               .order_by(StudyItem.id)))
    with lab.write() as s:
        qa.mark_training(s, items[0], 2, 3, "The face changed.", actor_id=None)
    with lab.read() as s:
        [example] = qa.training_examples(s, study_id)
        assert (example.id, example.expected_min, example.expected_max, example.training_reason) == \
            (items[0], 2, 3, "The face changed.")
    for args, message in (((items[1], 4, 9, "x"), "expected range"), ((items[1], 2, 3, " "), "reason"),
                          ((999, 2, 3, "x"), "no study item")):
        with pytest.raises(qa.QAError, match=message), lab.write() as s:
            qa.mark_training(s, *args)
    with lab.write() as s:
        qa.unmark_training(s, items[0])
        assert qa.training_examples(s, study_id) == []
