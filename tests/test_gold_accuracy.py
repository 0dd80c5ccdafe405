"""One gold accuracy: the Studies page, the QA page and the Analysis page show the same figure for
a reviewer whose miss on a gold item QA corrected.

Gold accuracy judges the reviewer's own score (review.analysis.agreement.gold_of): the QA
correction improves the study's labels but does not rescue the reviewer's miss, nor drop it from
the count. Before one definition, the Studies page left the corrected rating out (3 of 3) while the
QA and Analysis pages credited QA's score (4 of 4); the reviewer's own record is 3 of 4.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pytest
from sqlalchemy import select

from db.models import Rating, Study, StudyItem, User
from review.accounts.users import add_user
from review.analysis.export import ratings_frame
from review.analysis.qa_stats import gold_accuracy
from review.analysis.report import build_report
from review.analysis.report_types import rows
from review.analysis.tables import gold_by_rater, report_input
from review.labeling import qa
from review.labeling.assignment import next_assignment
from review.labeling.ratings import Submission, submit
from review.labeling.settings import update_settings
from tests.support import PASSWORD, build_study
from tests.support_app import app, login

#: alice's scores on the four gold items (hidden references, expected 4..5): one miss.
ALICE_GOLD = (5, 4, 5, 2)
BOB_GOLD = (4, 4, 5, 5)


@dataclass
class CorrectedStudy:
    """A study where QA corrected alice's miss on a gold item from 2 to 5."""

    study_id: int
    corrected_rating_id: int


@pytest.fixture
def corrected(lab) -> CorrectedStudy:
    sid = build_study(lab, 8, gold_every=2, raters_per_item=2)
    with lab.sessions() as s, s.begin():
        study = s.get(Study, sid)
        update_settings(study, qa_share=1.0)  # both reviewers in the QA-on cohort
        checker = add_user(s, "checker", PASSWORD, "qa", "Checker")
        for name, gold_scores in (("alice", ALICE_GOLD), ("bob", BOB_GOLD)):
            uid = s.scalar(select(User.id).where(User.username == name))
            gold_left = list(gold_scores)
            while (lease := next_assignment(s, study, uid)) is not None:
                gold = s.get(StudyItem, lease.item_id).is_gold
                submit(s, lease.assignment_id, uid,
                       Submission(score=gold_left.pop(0) if gold else 3, time_taken_ms=1500))
            assert not gold_left
        alice = s.scalar(select(User.id).where(User.username == "alice"))
        miss = s.scalar(select(Rating.id).join(StudyItem, StudyItem.id == Rating.item_id)
                        .where(Rating.reviewer_id == alice, StudyItem.is_gold.is_(True), Rating.score == 2))
        qa.correct(s, miss, checker.id, 5, "The sharp original: fully faithful.")
    return CorrectedStudy(sid, miss)


def test_the_correction_is_in_the_data(lab, corrected):
    """The set-up the pages disagreed on: the active row of alice's miss carries QA's 5, and the
    reviewer's own 2 only as reviewer_score."""
    with lab.sessions() as s:
        df = ratings_frame(s, s.get(Study, corrected.study_id))
    row = df[df["supersedes_id"] == corrected.corrected_rating_id].iloc[0]
    assert (row["rater"], row["source"], row["score"], row["reviewer_score"]) == ("alice", "qa", 5, 2)


@pytest.mark.slow
def test_studies_qa_and_analysis_figures_agree(lab, corrected):
    with lab.sessions() as s:
        study = s.get(Study, corrected.study_id)
        studies_page = gold_accuracy(s, corrected.study_id, "reviewer").set_index("reviewer")
        qa_page = gold_accuracy(s, corrected.study_id, "qa_cohort").set_index("qa_cohort")
        report = build_report(report_input(ratings_frame(s, study)),
                              scale=(study.scale_min, study.scale_max))
    per_rater = {p["rater"]: p for p in rows(report.per_rater)}
    # alice: 3 of her own 4 gold scores in range, whatever QA did afterwards
    assert studies_page.loc["alice", ["n", "within"]].tolist() == [4, 3]
    assert (per_rater["alice"]["gold_n"], per_rater["alice"]["gold_correct"]) == (4, 3)
    assert per_rater["alice"]["gold_accuracy"] == studies_page.loc["alice", "accuracy"] == 0.75
    assert per_rater["bob"]["gold_accuracy"] == studies_page.loc["bob", "accuracy"] == 1.0
    assert per_rater["alice"]["gold_accuracy_ci95"] == pytest.approx(
        studies_page.loc["alice", ["ci_low", "ci_high"]].tolist(), abs=1e-12)
    # the QA page's cohort is alice and bob: 7 of 8, as the report's breakdown by cohort
    (cohort,) = report.breakdowns["qa_cohort"]
    assert qa_page.loc["qa", ["n", "within"]].tolist() == [8, 7]
    assert cohort.gold_accuracy is not None
    assert cohort.gold_accuracy.value == qa_page.loc["qa", "accuracy"] == 7 / 8
    # and the Analysis page's gold table reads the same report
    assert gold_by_rater(report).set_index("rater").loc["alice", "gold_accuracy"] == 0.75


def _dataframe_with(at, *columns: str) -> pd.DataFrame:
    """The one table on the page with these columns."""
    (frame,) = [d.value for d in at.dataframe if set(columns) <= set(d.value.columns)]
    return frame


@pytest.mark.slow
def test_the_three_pages_show_the_same_figure(lab, corrected):
    at = login(app().run(), "admin")
    assert at.title[0].value == "Studies"
    studies = _dataframe_with(at, "reviewer", "gold accuracy").set_index("reviewer")
    assert studies.loc["alice", ["gold rated", "gold within expected range", "gold accuracy"]].tolist() \
        == [4, 3, "75%"]

    at.switch_page("review/ui/pages/qa.py").run()
    assert not at.exception, [e.value for e in at.exception]
    cohort = _dataframe_with(at, "qa_cohort", "accuracy").set_index("qa_cohort")
    assert cohort.loc["qa", ["n", "within", "accuracy"]].tolist() == [8, 7, 7 / 8]

    at.switch_page("review/ui/pages/analysis.py").run()
    assert not at.exception, [e.value for e in at.exception]
    analysis = _dataframe_with(at, "rater", "gold_accuracy").set_index("rater")
    assert analysis.loc["alice", ["gold_n", "gold_correct", "gold_accuracy"]].tolist() == [4, 3, 0.75]
