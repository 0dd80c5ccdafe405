"""QA: stratified sampling, the QA queue, verdicts (accept, reject, correct) that stay auditable,
reviewer feedback without QA identities, gold accuracy with Wilson intervals, the cohort summary.

Everything runs on a real migrated SQLite database with real rows; ratings are inserted as rows
(fast) or through review.labeling.ratings.submit where the interplay with the rating flow matters."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pytest
from sqlalchemy import func, select
from statsmodels.stats.proportion import proportion_confint

from db.models import (
    DegradedImage,
    GuidelineVersion,
    QAVerdict,
    Rating,
    Restoration,
    SourceImage,
    Study,
    StudyItem,
    StudyReviewer,
    User,
)
from review.analysis import qa_stats
from review.labeling import qa
from review.labeling.assignment import next_assignment
from review.labeling.qa import QAError
from review.labeling.ratings import Submission, history, submit
from review.labeling.settings import StudySettings, update_settings
from review.labeling.study import StudyConfig, add_item, ensure_study
from review.ui.common import SessionUser
from tests.support_app import page_app, page_user, texts

KINDS = ("defocus", "motion_line")
CONTENTS = ("face", "text")


def _user(s, name: str, role: str = "reviewer") -> User:
    u = User(username=name, role=role, password_hash="x")
    s.add(u)
    s.flush()
    return u


def build_world(s, *, per_stratum: int = 20, qa_on: tuple[str, ...] = ("r0", "r1", "r2"),
                qa_off: tuple[str, ...] = ("off",), seed: int = 1) -> dict:
    """A study of len(KINDS) x len(CONTENTS) x per_stratum items, every reviewer rating every item
    (rows inserted directly). Returns ids: study, gv, reviewers by name, items by stratum."""
    gv = GuidelineVersion(slug="fid", version=1, title="t", body_md="b", content_sha256="0" * 64)
    s.add(gv)
    s.flush()
    study = ensure_study(s, StudyConfig(name="qa-study", raters_per_item=5), gv)
    items: dict[tuple[str, str], list[int]] = {}
    for ci, content in enumerate(CONTENTS):
        src = SourceImage(sha256=f"{ci:064d}", path=f"s{ci}.png", width=8, height=8, content=content)
        s.add(src)
        s.flush()
        for kind in KINDS:
            deg = DegradedImage(source_id=src.id, recipe_key=kind, kind=kind, level=3.0,
                                sha256="d" * 64, path=f"d-{content}-{kind}.png")
            s.add(deg)
            s.flush()
            for i in range(per_stratum):
                res = Restoration(degraded_id=deg.id, method="wiener", params_key=f"p{i}",
                                  sha256="e" * 64, path=f"r-{content}-{kind}-{i}.png")
                s.add(res)
                s.flush()
                items.setdefault((kind, content), []).append(add_item(s, study, res).id)
    reviewers = {}
    for name in qa_on + qa_off:
        u = _user(s, name)
        reviewers[name] = u.id
        arm = "qa" if name in qa_on else "noqa"
        s.add(StudyReviewer(study_id=study.id, reviewer_id=u.id, guideline_version_id=gv.id,
                            qa_enabled=name in qa_on, cohort=f"g{gv.id}-{arm}-0"))
    rng = np.random.default_rng(seed)
    for rid in reviewers.values():
        for ids in items.values():
            for item_id in ids:
                s.add(Rating(item_id=item_id, reviewer_id=rid, author_id=rid, source="reviewer",
                             score=int(rng.integers(1, 6)), flags=["artifacts"], comment=f"c{item_id}",
                             guideline_version_id=gv.id))
    s.flush()
    return {"study": study.id, "gv": gv.id, "reviewers": reviewers, "items": items}


def _strata(s, rating_ids) -> Counter:
    rows = s.execute(
        select(Rating.reviewer_id, DegradedImage.kind, SourceImage.content)
        .join(StudyItem, StudyItem.id == Rating.item_id)
        .join(Restoration, Restoration.id == StudyItem.restoration_id)
        .join(DegradedImage, DegradedImage.id == Restoration.degraded_id)
        .join(SourceImage, SourceImage.id == DegradedImage.source_id)
        .where(Rating.id.in_(list(rating_ids)))).all()
    return Counter(tuple(r) for r in rows)


# ---------------------------------------------------------------------------------------------
# Sampling


def test_sampling_takes_the_rate_in_every_reviewer_blur_content_stratum(lab):
    with lab.sessions() as s, s.begin():
        w = build_world(s)
        study = s.get(Study, w["study"])
        sampled = qa.sample_for_qa(s, study, 0.25, seed=7)
        assert len(sampled) == 3 * 2 * 2 * 5
        counts = _strata(s, sampled)
        on = [w["reviewers"][n] for n in ("r0", "r1", "r2")]
        assert counts == Counter({(r, k, c): 5 for r in on for k in KINDS for c in CONTENTS})
        assert qa.qa_sample(s, study) == sampled
        assert qa.sample_for_qa(s, study, 0.25, seed=7) == []  # already at the rate: nothing new
        # Verdicts (a correction deactivates its rating) do not make room for extra draws.
        checker = _user(s, "qa1", "qa")
        first = s.get(Rating, sampled[0])
        qa.correct(s, first.id, checker.id, 1 if first.score > 1 else 2, "too kind")
        qa.reject(s, sampled[1], checker.id, "unclear")
        assert qa.sample_for_qa(s, study, 0.25, seed=7) == []
        assert qa.qa_progress(s, study, checker.id) == qa.QAProgress(60, 2, 58)


def test_sampling_is_reproducible_and_depends_on_the_seed(lab):
    with lab.sessions() as s, s.begin():
        w = build_world(s, per_stratum=8)
    picks = []
    for seed in (3, 3, 4):
        with lab.sessions() as s:  # never committed: each run starts from the same state
            picks.append(qa.sample_for_qa(s, s.get(Study, w["study"]), 0.25, seed=seed))
            s.rollback()
    assert picks[0] == picks[1] and len(picks[0]) == 3 * 4 * 2
    assert picks[0] != picks[2] and len(picks[2]) == len(picks[0])


def test_qa_off_reviewers_are_never_sampled_and_cannot_be_judged(lab):
    with lab.sessions() as s, s.begin():
        w = build_world(s, per_stratum=6)
        checker = _user(s, "qa1", "qa")
        study = s.get(Study, w["study"])
        sampled = qa.sample_for_qa(s, study, 1.0)
        off = w["reviewers"]["off"]
        assert sampled and all(s.get(Rating, r).reviewer_id != off for r in sampled)
        assert len(sampled) == 3 * 4 * 6  # rate 1: every QA-on rating, none of the QA-off ones
        off_rating = s.scalar(select(Rating.id).where(Rating.reviewer_id == off).limit(1))
        with pytest.raises(QAError, match="QA-off cohort"):
            qa.accept(s, off_rating, checker.id)


def test_rates_round_up_per_stratum_and_sampling_tops_up_as_ratings_arrive(lab):
    with lab.sessions() as s, s.begin():
        w = build_world(s, per_stratum=3, qa_off=())
        study = s.get(Study, w["study"])
        first = qa.sample_for_qa(s, study, 0.2)  # ceil(0.2 * 3) = 1 per stratum
        assert Counter(_strata(s, first).values()) == Counter({1: 12})
        # Seven more ratings for r0 in the (defocus, face) stratum: 10 in all -> ceil(2.0) = 2.
        r0, gv = w["reviewers"]["r0"], w["gv"]
        deg = s.scalar(select(DegradedImage).join(SourceImage).where(
            DegradedImage.kind == "defocus", SourceImage.content == "face"))
        for i in range(7):
            res = Restoration(degraded_id=deg.id, method="wiener", params_key=f"extra{i}",
                              sha256="e" * 64, path=f"x{i}.png")
            s.add(res)
            s.flush()
            item = add_item(s, study, res)
            s.add(Rating(item_id=item.id, reviewer_id=r0, author_id=r0, source="reviewer", score=3,
                         guideline_version_id=gv))
        s.flush()
        more = qa.sample_for_qa(s, study, 0.2)
        assert len(more) == 1 and _strata(s, more) == Counter({(r0, "defocus", "face"): 1})
        assert set(first) <= set(qa.qa_sample(s, study))  # nothing sampled earlier is dropped
    assert qa.stratum_quota(0.1, 30) == 3 and qa.stratum_quota(0.25, 20) == 5
    assert qa.stratum_quota(0.0, 30) == 0 and qa.stratum_quota(1.0, 7) == 7


def test_ratings_with_a_verdict_count_towards_the_quota_and_are_not_resampled(lab):
    with lab.sessions() as s, s.begin():
        w = build_world(s, per_stratum=20, qa_on=("r0",), qa_off=())
        checker = _user(s, "qa1", "qa")
        study = s.get(Study, w["study"])
        first_item = w["items"][("defocus", "face")][0]
        judged = s.scalar(select(Rating.id).where(Rating.item_id == first_item))
        qa.accept(s, judged, checker.id)  # an ad-hoc verdict before any sampling
        sampled = qa.sample_for_qa(s, study, 0.25)
        assert judged not in sampled
        counts = _strata(s, sampled)
        assert counts[(w["reviewers"]["r0"], "defocus", "face")] == 4  # 5 minus the judged one
        assert sum(counts.values()) == 4 + 3 * 5


def test_rate_is_validated_and_defaults_to_the_study_setting(lab):
    with lab.sessions() as s, s.begin():
        w = build_world(s, per_stratum=10, qa_off=())
        study = s.get(Study, w["study"])
        with pytest.raises(QAError, match="between 0 and 1"):
            qa.sample_for_qa(s, study, 1.5)
        with pytest.raises(QAError, match="between 0 and 1"):
            qa.set_qa_options(s, study, rate=-0.1)
        qa.set_qa_options(s, study, rate=0.3, show_feedback=True)
        assert StudySettings.of(study) == StudySettings(qa_rate=0.3, show_qa_feedback=True)
        assert len(qa.sample_for_qa(s, study)) == 3 * 4 * 3  # ceil(0.3 * 10) = 3


# ---------------------------------------------------------------------------------------------
# The queue and verdicts


def test_queue_serves_each_sampled_rating_once_and_never_the_qa_users_own(lab):
    with lab.sessions() as s, s.begin():
        w = build_world(s, per_stratum=4, qa_on=("r0", "boss"), qa_off=())
        boss = w["reviewers"]["boss"]
        s.get(User, boss).role = "admin"  # an admin who also rated, now doing QA
        study = s.get(Study, w["study"])
        sampled = qa.sample_for_qa(s, study, 0.5)
        assert len(sampled) == 2 * 4 * 2
        progress = qa.qa_progress(s, study, boss)
        assert (progress.sampled, progress.judged, progress.open_for_user) == (16, 0, 8)
        seen = []
        while (task := qa.next_qa_task(s, study, boss)) is not None:
            rating = s.get(Rating, task.rating_id)
            assert rating.reviewer_id != boss and rating.author_id != boss
            assert (task.score, list(task.flags), task.comment) == \
                (rating.score, rating.flags, rating.comment)
            assert task.restoration.relpath.startswith("r-") and task.blurred.relpath.startswith("d-")
            assert task.reference is not None and task.reference.relpath.startswith("s")
            assert (task.scale_min, task.scale_max, task.guideline_label) == (1, 5, "fid v1")
            assert not hasattr(task, "reviewer_id")  # QA judges the rating, not the person
            seen.append(task.rating_id)
            qa.accept(s, task.rating_id, boss)
        assert len(seen) == len(set(seen)) == 8
        assert set(seen) == {r for r in sampled if s.get(Rating, r).reviewer_id != boss}
        progress = qa.qa_progress(s, study, boss)
        assert (progress.sampled, progress.judged, progress.open_for_user) == (16, 8, 0)
        # Another QA user gets boss's own ratings.
        other = _user(s, "qa2", "qa")
        assert s.get(Rating, qa.next_qa_task(s, study, other.id).rating_id).reviewer_id == boss


@dataclass
class Rated:
    """What `rated` built (ids): the study and its guideline, the reviewers alice and bob, the QA
    users qa1 and qa2, alice's and bob's ratings (in that order) of the one item."""

    study: int
    gv: int
    alice: int
    bob: int
    qa1: int
    qa2: int
    ratings: list[int]
    item: int


@pytest.fixture
def rated(lab) -> Rated:
    """Two reviewers (QA on) rated one item each through the real rating flow; two QA users."""
    with lab.sessions() as s, s.begin():
        gv = GuidelineVersion(slug="fid", version=2, title="t", body_md="b", content_sha256="1" * 64)
        s.add(gv)
        s.flush()
        study = ensure_study(s, StudyConfig(name="flow", raters_per_item=2), gv)
        update_settings(study, qa_share=1.0)
        src = SourceImage(sha256="a" * 64, path="s.png", width=8, height=8, content="face")
        s.add(src)
        s.flush()
        deg = DegradedImage(source_id=src.id, recipe_key="k", kind="camera_shake", level=9.0,
                            sha256="b" * 64, path="d.png")
        s.add(deg)
        s.flush()
        res = Restoration(degraded_id=deg.id, method="sd15_img2img", params_key="p", sha256="c" * 64,
                          path="r.png")
        s.add(res)
        s.flush()
        add_item(s, study, res)
        alice, bob = _user(s, "alice"), _user(s, "bob")
        qa1, qa2 = _user(s, "qa-one", "qa"), _user(s, "qa-two", "qa")
        ratings = []
        for who, score in ((alice, 5), (bob, 2)):
            lease = next_assignment(s, study, who.id)
            ratings.append(submit(s, lease.assignment_id, who.id,
                                  Submission(score, ("invented_detail",), "looks fine")).id)
        assert all(m.qa_enabled for m in s.scalars(select(StudyReviewer)))
        return Rated(study=study.id, gv=gv.id, alice=alice.id, bob=bob.id, qa1=qa1.id, qa2=qa2.id,
                     ratings=ratings, item=s.get(Rating, ratings[0]).item_id)


def test_a_correction_supersedes_the_rating_and_stays_auditable(lab, rated):
    original = rated.ratings[0]
    with lab.sessions() as s, s.begin():
        verdict = qa.correct(s, original, rated.qa1, 2, "The face is a different person.",
                             flags=["identity_changed", "invented_detail"])
        verdict_id, fixed_id = verdict.id, verdict.corrected_rating_id
    with lab.sessions() as s:
        old, new = s.get(Rating, original), s.get(Rating, fixed_id)
        assert (old.active, old.score, old.source, old.author_id) == (False, 5, "reviewer", rated.alice)
        assert (new.active, new.score, new.source) == (True, 2, "qa")
        assert (new.author_id, new.reviewer_id, new.item_id) == (rated.qa1, rated.alice, rated.item)
        assert (new.supersedes_id, new.guideline_version_id) == (original, rated.gv)
        assert new.flags == ["identity_changed", "invented_detail"]
        v = s.get(QAVerdict, verdict_id)
        assert (v.rating_id, v.corrected_rating_id, v.verdict, v.qa_user_id) == \
            (original, fixed_id, "correct", rated.qa1)
        assert v.reason == "The face is a different person."
        assert [r.id for r in history(s, rated.item, rated.alice)] == [original, fixed_id]
        n_ratings = s.scalar(select(func.count()).select_from(Rating))
    # The same correction again (a double click) returns the first verdict and writes nothing.
    with lab.sessions() as s, s.begin():
        again = qa.correct(s, original, rated.qa1, 2, "The face is a different person.",
                           flags=["identity_changed", "invented_detail"])
        assert again.id == verdict_id
    # Any other verdict on the same rating is refused, by anyone.
    for call in (lambda s: qa.accept(s, original, rated.qa2),
                 lambda s: qa.reject(s, original, rated.qa1, "no"),
                 lambda s: qa.correct(s, original, rated.qa2, 3, "other")):
        with pytest.raises(QAError, match="already has a QA verdict"), lab.sessions() as s, s.begin():
            call(s)
    with lab.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Rating)) == n_ratings
        assert s.scalar(select(func.count()).select_from(QAVerdict)) == 1


def test_accept_and_reject_are_idempotent_for_the_same_user(lab, rated):
    a, b = rated.ratings
    with lab.sessions() as s, s.begin():
        first = qa.accept(s, a, rated.qa1).id
        assert qa.accept(s, a, rated.qa1).id == first
        rej = qa.reject(s, b, rated.qa2, "  Score ignores the changed text.  ")
        assert rej.reason == "Score ignores the changed text."
        assert qa.reject(s, b, rated.qa2, "Score ignores the changed text.").id == rej.id
        with pytest.raises(QAError, match="already has a QA verdict.*you"):
            qa.accept(s, b, rated.qa2)
        assert all(s.get(Rating, r).active for r in (a, b))  # accept/reject never touch ratings


@pytest.mark.parametrize("call, message", [
    (lambda r, s: qa.reject(s, r.ratings[0], r.qa1, "   "), "Give a reason"),
    (lambda r, s: qa.correct(s, r.ratings[0], r.qa1, 3, ""), "Give a reason"),
    (lambda r, s: qa.correct(s, r.ratings[0], r.qa1, 6, "why"), "from 1 to 5"),
    (lambda r, s: qa.correct(s, r.ratings[0], r.qa1, 5, "why"), "use Accept"),
    (lambda r, s: qa.correct(s, r.ratings[0], r.qa1, 4, "why", flags=["bogus"]), "Unknown flags"),
    (lambda r, s: qa.accept(s, 999_999, r.qa1), "no rating 999999"),
])
def test_invalid_verdicts_are_refused_with_a_clear_message(lab, rated, call, message):
    with pytest.raises(QAError, match=message), lab.sessions() as s, s.begin():
        call(rated, s)


def test_nobody_judges_their_own_rating_nor_a_qa_correction(lab, rated):
    with lab.sessions() as s, s.begin():
        s.get(User, rated.alice).role = "qa"
        with pytest.raises(QAError, match="your own rating"):
            qa.accept(s, rated.ratings[0], rated.alice)
        fixed = qa.correct(s, rated.ratings[1], rated.qa1, 4, "text is intact").corrected_rating_id
        with pytest.raises(QAError, match="itself a QA correction"):
            qa.accept(s, fixed, rated.qa2)


def test_withdrawn_ratings_leave_the_queue(lab, rated):
    with lab.sessions() as s, s.begin():
        study = s.get(Study, rated.study)
        assert len(qa.sample_for_qa(s, study, 1.0)) == 2
        s.get(Rating, rated.ratings[0]).active = False  # as review.labeling.ratings.undo_last does
        s.flush()
        assert qa.next_qa_task(s, study, rated.qa1).rating_id == rated.ratings[1]
        assert qa.qa_progress(s, study, rated.qa1) == qa.QAProgress(1, 0, 1)  # it no longer counts
        with pytest.raises(QAError, match="withdrawn or replaced"):
            qa.accept(s, rated.ratings[0], rated.qa1)


# ---------------------------------------------------------------------------------------------
# Feedback


def test_feedback_shows_verdicts_to_their_reviewer_only_and_hides_the_qa_reviewer(lab, rated):
    with lab.sessions() as s, s.begin():
        qa.correct(s, rated.ratings[0], rated.qa1, 2, "Different person.", flags=["identity_changed"])
        qa.reject(s, rated.ratings[1], rated.qa2, "Comment does not match the score.")
        study = s.get(Study, rated.study)
        assert qa.feedback_for(s, study, rated.alice) == []  # the study does not show feedback
        qa.set_qa_options(s, study, show_feedback=True)
        alice = qa.feedback_for(s, study, rated.alice)
        bob = qa.feedback_for(s, study, rated.bob)
        qa_names = {s.get(User, uid).username for uid in (rated.qa1, rated.qa2)}
    assert len(alice) == 1 and len(bob) == 1
    keys = ("your_score", "verdict", "reason", "corrected_score", "corrected_flags")
    assert {k: alice[0][k] for k in keys} == {
        "your_score": 5, "verdict": "correct", "reason": "Different person.", "corrected_score": 2,
        "corrected_flags": ["identity_changed"]}
    assert (bob[0]["verdict"], bob[0]["corrected_score"], bob[0]["rating_id"]) == \
        ("reject", None, rated.ratings[1])
    for entry in alice + bob:
        assert not any("qa" in key.lower() or "user" in key.lower() for key in entry)
        text = repr(entry)
        assert not any(name in text for name in qa_names)
        assert set(entry) == {"rating_id", "item_id", "your_score", "your_flags", "verdict", "reason",
                              "corrected_score", "corrected_flags", "at"}


# ---------------------------------------------------------------------------------------------
# Gold


def _wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson (1927) score interval, written out: (p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)."""
    p = k / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def test_gold_accuracy_per_reviewer_version_and_cohort_with_wilson_intervals(lab):
    with lab.sessions() as s, s.begin():
        w = build_world(s, per_stratum=5, qa_on=("r0", "r1"), qa_off=("off",))
        study = s.get(Study, w["study"])
        gold_items = w["items"][("defocus", "face")]  # 5 gold items, expected 4..5
        for item_id in gold_items:
            qa.promote_to_gold(s, item_id, 4, 5)
        # Scores on the gold items: r0 gets 4 of 5 within, r1 2 of 5, off 5 of 5.
        plan = {"r0": [5, 4, 4, 5, 2], "r1": [1, 4, 3, 5, 2], "off": [4, 4, 5, 5, 4]}
        for name, scores in plan.items():
            for item_id, score in zip(gold_items, scores, strict=True):
                r = s.scalar(select(Rating).where(Rating.item_id == item_id,
                                                  Rating.reviewer_id == w["reviewers"][name]))
                r.score = score  # test set-up only: the domain never rewrites a score
        checker = _user(s, "qa1", "qa")
        # QA corrects r1's 1 on the first gold item to 4: the study's final labels improve, but
        # gold accuracy judges r1's own score, so r1 keeps the miss.
        first = s.scalar(select(Rating.id).where(Rating.item_id == gold_items[0],
                                                 Rating.reviewer_id == w["reviewers"]["r1"]))
        qa.correct(s, first, checker.id, 4, "The reference is shown, it is faithful.")
        by_reviewer = qa_stats.gold_accuracy(s, study.id, "reviewer").set_index("reviewer")
        by_cohort = qa_stats.gold_accuracy(s, study.id, "qa_cohort").set_index("qa_cohort")
        by_version = qa_stats.gold_accuracy(s, study.id, "guideline_version")
        with pytest.raises(ValueError, match="broken down by"):
            qa_stats.gold_accuracy(s, study.id, "blur")
    assert by_reviewer.loc[["off", "r0", "r1"], ["n", "within"]].values.tolist() == [[5, 5], [5, 4], [5, 2]]
    assert by_cohort.loc[["no_qa", "qa"], ["n", "within"]].values.tolist() == [[5, 5], [10, 6]]
    assert by_version[["guideline_version", "n", "within"]].values.tolist() == [["fid v1", 15, 11]]
    assert by_cohort.loc["qa", "accuracy"] == pytest.approx(0.6)
    for frame in (by_reviewer, by_cohort):
        for _, row in frame.iterrows():
            lo, hi = proportion_confint(row["within"], row["n"], alpha=0.05, method="wilson")
            assert (row["ci_low"], row["ci_high"]) == pytest.approx((lo, hi), abs=1e-12)
            by_hand = _wilson(row["within"], row["n"])
            assert (row["ci_low"], row["ci_high"]) == pytest.approx(by_hand, abs=1e-9)
    # 6 of 10: Wilson 95% interval 0.3127 .. 0.8318.
    assert by_cohort.loc["qa", ["ci_low", "ci_high"]].tolist() == pytest.approx([0.3127, 0.8318], abs=1e-4)
    # 5 of 5: the Wilson interval's upper end is exactly 1 and its lower end 0.5655.
    assert by_reviewer.loc["off", ["ci_low", "ci_high"]].tolist() == pytest.approx([0.5655, 1.0], abs=1e-4)


def test_promote_to_gold_validates_the_range_against_the_scale(lab, rated):
    with lab.sessions() as s, s.begin():
        for lo, hi, message in ((0, 3, "must satisfy 1 <= min"), (4, 6, "must satisfy"),
                                (4, 2, "must satisfy"), (2.5, 4, "whole scores")):
            with pytest.raises(QAError, match=message):
                qa.promote_to_gold(s, rated.item, lo, hi)
        item = qa.promote_to_gold(s, rated.item, 1, 2)
        assert (item.is_gold, item.expected_min, item.expected_max) == (True, 1, 2)
        with pytest.raises(QAError, match="no study item"):
            qa.promote_to_gold(s, 424242, 1, 2)


def test_empty_gold_gives_an_empty_frame(lab, rated):
    with lab.sessions() as s:
        df = qa_stats.gold_accuracy(s, rated.study, "reviewer")
    assert df.empty and list(df.columns) == ["reviewer", "n", "within", "accuracy", "ci_low", "ci_high"]


# ---------------------------------------------------------------------------------------------
# Summary


def test_qa_summary_per_cohort(lab):
    with lab.sessions() as s, s.begin():
        w = build_world(s, per_stratum=5, qa_on=("r0", "r1"), qa_off=("off",))
        study = s.get(Study, w["study"])
        checker = _user(s, "qa1", "qa")
        sampled = qa.sample_for_qa(s, study, 0.4)  # 2 of 5 in each of 2 x 4 strata = 16
        corrections = []
        for i, rid in enumerate(sampled[:6]):
            rating = s.get(Rating, rid)
            if i % 3 == 0:
                qa.accept(s, rid, checker.id)
            elif i % 3 == 1:
                qa.reject(s, rid, checker.id, "unclear")
            else:
                new = 1 if rating.score >= 3 else 5
                corrections.append(abs(new - rating.score))
                qa.correct(s, rid, checker.id, new, "fix")
        df = qa_stats.qa_summary(s, study.id).set_index("qa_cohort")
    assert df.loc["qa", ["reviewers", "ratings", "sampled", "accepted", "rejected", "corrected"]].tolist() \
        == [2, 2 * 20 - 2, 16, 2, 2, 2]
    assert df.loc["qa", "mean_abs_correction"] == pytest.approx(np.mean(corrections))
    assert df.loc["no_qa", ["reviewers", "ratings", "sampled", "accepted"]].tolist() == [1, 20, 0, 0]
    assert math.isnan(df.loc["no_qa", "mean_abs_correction"])
    assert set(df["guideline_version"]) == {"fid v1"}


def test_qa_flow_on_postgresql(pg_url):
    """Sampling (with its row lock), verdicts with their row lock, the correction's
    deactivate-then-insert under the one-active-rating index, and the summaries, on PostgreSQL."""
    from db.engine import make_engine, make_session_factory
    from db.migrate import upgrade

    engine = make_engine(pg_url)
    upgrade(engine)
    sessions = make_session_factory(engine)
    try:
        with sessions() as s, s.begin():
            w = build_world(s, per_stratum=4, qa_on=("r0", "r1"), qa_off=("off",))
            checker = _user(s, "qa1", "qa").id
            study_id = w["study"]
        with sessions() as s, s.begin():
            sampled = qa.sample_for_qa(s, s.get(Study, study_id), 0.5, seed=2)
            assert Counter(_strata(s, sampled).values()) == Counter({2: 8})
        with sessions() as s, s.begin():
            task = qa.next_qa_task(s, s.get(Study, study_id), checker)
            original = s.get(Rating, task.rating_id).score
            new = 1 if original > 1 else 5
            fixed = qa.correct(s, task.rating_id, checker, new, "fix").corrected_rating_id
        with sessions() as s, s.begin():
            study = s.get(Study, study_id)
            assert s.get(Rating, task.rating_id).active is False and s.get(Rating, fixed).active is True
            with pytest.raises(QAError, match="already has a QA verdict"):
                qa.accept(s, task.rating_id, checker)
            summary = qa_stats.qa_summary(s, study.id).set_index("qa_cohort")
            assert summary.loc["qa", ["sampled", "corrected"]].tolist() == [16, 1]
            assert summary.loc["qa", "mean_abs_correction"] == abs(new - original)
            assert qa.qa_progress(s, study, checker).judged == 1
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------------------------
# The QA page through AppTest (a small script that calls render with a lab from REVIEW_DATA_DIR)

@dataclass
class PageWorld:
    """What page_world built: the study, its QA user and admin, and the reviewers' usernames."""

    study: int
    qa: SessionUser
    admin: SessionUser
    reviewers: list[str]


@pytest.fixture
def page_world(lab):
    """A study of 3 items with real stored images, rated by two QA-on reviewers; a QA user and an
    admin."""
    from PIL import Image

    def picture(seed: int) -> Image.Image:
        rng = np.random.default_rng(seed)
        return Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8), "RGB")

    with lab.sessions() as s, s.begin():
        gv = GuidelineVersion(slug="fid", version=1, title="t", body_md="b", content_sha256="0" * 64)
        s.add(gv)
        s.flush()
        study = ensure_study(s, StudyConfig(name="Page study", raters_per_item=2), gv)
        update_settings(study, qa_share=1.0)
        for i in range(3):
            ref, blur, out = (lab.store.put_image(picture(10 * i + k)) for k in range(3))
            src = SourceImage(sha256=ref.sha256, path=ref.relpath, width=56, height=40, content="face")
            s.add(src)
            s.flush()
            deg = DegradedImage(source_id=src.id, recipe_key="k", kind="defocus", level=4.0,
                                sha256=blur.sha256, path=blur.relpath)
            s.add(deg)
            s.flush()
            res = Restoration(degraded_id=deg.id, method="wiener", params_key="p", sha256=out.sha256,
                              path=out.relpath)
            s.add(res)
            s.flush()
            add_item(s, study, res)
        reviewers = [_user(s, "rev-ann"), _user(s, "rev-ben")]
        for n, who in enumerate(reviewers):
            while (lease := next_assignment(s, study, who.id)) is not None:
                submit(s, lease.assignment_id, who.id,
                       Submission(4 - n, ("artifacts",), f"comment-number-{n}"))
        checker, admin = _user(s, "checker", "qa"), _user(s, "boss", "admin")
        return PageWorld(study=study.id, qa=page_user("qa", checker.id, "checker"),
                         admin=page_user("admin", admin.id, "boss"),
                         reviewers=[r.username for r in reviewers])


@pytest.mark.slow
def test_qa_page_admin_samples_and_a_qa_reviewer_works_the_queue(lab, page_world):
    admin = page_app("qa_page", page_world.admin).run()
    assert not admin.exception, admin.exception
    assert "No ratings of this study are sampled" in admin.info[0].value
    admin.number_input(key=f"qa_rate_{page_world.study}").set_value(1.0)
    admin.checkbox(key=f"qa_feedback_{page_world.study}").check()
    (save,) = [b for b in admin.button if b.label == "Save QA settings"]
    save.click().run()
    assert not admin.exception, admin.exception
    assert "QA rate 1.00 saved" in admin.success[0].value
    admin.button(key=f"qa_sample_{page_world.study}").click().run()
    assert not admin.exception, admin.exception
    assert admin.success[0].value == "6 rating(s) added to the QA sample."
    assert any(df.value["sampled"].sum() == 6 for df in admin.dataframe)

    at = page_app("qa_page", page_world.qa).run()
    assert not at.exception, at.exception
    assert "0 of 6 sampled ratings reviewed · 6 waiting for you" in [c.value for c in at.caption]
    assert len(at.image) == 2 and all(url.endswith(".jpg") for img in at.image for url in img.value)
    page = texts(at)
    assert "comment-number-" in page and "Artifacts" in page
    assert not any(name in page for name in page_world.reviewers)  # the reviewer stays anonymous

    # Accept the first, reject the second (a reason is required), correct the third.
    first = at.button(key=next(b.key for b in at.button if b.key.startswith("qa_accept_")))
    first.click().run()
    assert not at.exception and at.success[0].value == "Accepted."
    (reject,) = [b for b in at.button if b.label == "Reject"]
    reject.click().run()
    assert "Give a reason" in at.error[0].value
    rid = int(next(b.key for b in at.button if b.key.startswith("qa_accept_")).rsplit("_", 1)[1])
    at.text_area(key=f"qa_reject_reason_{rid}").input("Ignores the artifacts.")
    [b for b in at.button if b.label == "Reject"][0].click().run()
    assert not at.exception and at.success[0].value == "Rejected."
    rid = int(next(b.key for b in at.button if b.key.startswith("qa_accept_")).rsplit("_", 1)[1])
    at.radio(key=f"qa_correct_score_{rid}").set_value(1)
    at.multiselect(key=f"qa_correct_flags_{rid}").set_value(["identity_changed"])
    at.text_area(key=f"qa_correct_reason_{rid}").input("Different person.")
    [b for b in at.button if b.label == "Correct"][0].click().run()
    assert not at.exception and at.success[0].value == "Corrected to 1."
    assert "3 of 6 sampled ratings reviewed · 3 waiting for you" in [c.value for c in at.caption]
    with lab.sessions() as s:
        verdicts = s.scalars(select(QAVerdict).order_by(QAVerdict.id)).all()
        assert [v.verdict for v in verdicts] == ["accept", "reject", "correct"]
        assert verdicts[1].reason == "Ignores the artifacts."
        fixed = s.get(Rating, verdicts[2].corrected_rating_id)
        assert (fixed.score, fixed.flags, fixed.source, fixed.author_id) == \
            (1, ["identity_changed"], "qa", page_world.qa.id)
        assert s.get(Rating, rid).active is False


@pytest.mark.parametrize("role", ["reviewer", "analyst"])
def test_qa_page_refuses_other_roles(lab, page_world, role):
    at = page_app("qa_page", page_user(role, 999, "someone")).run()
    assert not at.exception
    assert [e.value for e in at.error] == ["The QA page is only available to QA reviewers and admins."]
    assert not at.selectbox and not at.button


def test_qa_page_for_a_qa_user_has_no_admin_controls(lab, page_world):
    at = page_app("qa_page", page_world.qa).run()
    assert not at.exception
    assert "An admin draws the sample" in at.info[0].value
    assert not at.number_input and not [b for b in at.button if "Sample" in b.label]
