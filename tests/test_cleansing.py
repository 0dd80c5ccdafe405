"""Crowd data cleansing (review.analysis.cleansing): each criterion on a submission built to fail
it alone, the outcomes, P.808's rating outliers, and the simulated crowd's bad kinds caught."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from review.analysis.cleansing import (
    ACCEPT_NO_USE,
    ACCEPT_USE,
    REJECT,
    CleansingError,
    CleansingRules,
    cleanse,
)
from review.labeling.simulated_crowd import CrowdMix, simulate_crowd, true_boundary
from review.labeling.simulated_panel import TruthShape

LIVE_SCORES = [1, 2, 3, 4, 5, 2, 3, 4, 5, 1]


def session(name: str, scores: list[int], *, seconds: float = 8.0, trap_answers: tuple[int, int] = (2, 4),
            gold_answers: tuple[int, int] = (5, 1)) -> pd.DataFrame:
    """One submission: live items i0.., a hidden reference (expected 4-5), a blurred input
    (expected 1-2) and two traps asking for 2 and 4."""
    n = len(scores)
    return pd.DataFrame({
        "submission": name, "rater": name,
        "item": [f"i{k}" for k in range(n)] + ["ref", "blurred", f"trap-{name}-a", f"trap-{name}-b"],
        "kind": ["live"] * n + ["gold", "gold", "trap", "trap"],
        "score": [*scores, *gold_answers, *trap_answers],
        "seconds": seconds,
        "expected_min": [math.nan] * n + [4, 1, 2, 4],
        "expected_max": [math.nan] * n + [5, 2, 2, 4],
    })


def outcome(df: pd.DataFrame, name: str, rules: CleansingRules | None = None) -> pd.Series:
    return cleanse(df, rules or CleansingRules()).submissions.set_index("submission").loc[name]


def crowd(*bad: pd.DataFrame) -> pd.DataFrame:
    """Six honest submissions (varied scores, slow enough, right on gold and traps) plus `bad`."""
    rng = np.random.default_rng(3)
    good = [session(f"good{k}", list(np.clip(np.array(LIVE_SCORES) + rng.integers(-1, 2, 10), 1, 5)))
            for k in range(6)]
    return pd.concat([*good, *bad], ignore_index=True)


def test_an_honest_submission_is_accepted_and_used() -> None:
    row = outcome(crowd(), "good0")
    assert row["outcome"] == ACCEPT_USE and row["reasons"] == "" and row["platform_feedback"] == ""
    assert row["trap_failures"] == 0 and row["gold_accuracy"] == 1.0


def test_a_failed_trap_rejects_with_the_platform_facing_reason_and_blocks() -> None:
    """Scores against everyone else's (r < 0): one failed trap is not forgiven."""
    df = crowd(session("bad", [6 - s for s in LIVE_SCORES], trap_answers=(3, 4)))
    c = cleanse(df)
    row = c.submissions.set_index("submission").loc["bad"]
    assert row["outcome"] == REJECT and row["trap_failures"] == 1
    assert "failed 1 of 2 attention checks" in row["reasons"]
    assert row["platform_feedback"] == CleansingRules().rejection_feedback
    assert c.block_list() == ["bad"]
    assert not c.used[df["submission"] == "bad"].any()  # kept in the table, never used


@pytest.mark.parametrize("bad, reason", [
    (session("bad", [4] * 10), "straight-lining: score variance 0.00"),
    (session("bad", LIVE_SCORES, seconds=1.0), "speeding: median 1.0 s per item"),
    (session("bad", LIVE_SCORES, gold_answers=(1, 5)), "gold accuracy 0% below 80%"),
])
def test_each_use_criterion_alone_leaves_the_submission_paid_but_unused(bad: pd.DataFrame,
                                                                       reason: str) -> None:
    df = crowd(bad)
    row = outcome(df, "bad")
    assert row["outcome"] == ACCEPT_NO_USE and reason in row["reasons"], row["reasons"]
    assert row["platform_feedback"] == ""
    # the same submission passes with that criterion turned off
    off = {"straight": {"min_variance": None}, "speeding": {"min_median_seconds": None},
           "gold": {"gold_min": None}}[reason.split(" ")[0].split(":")[0].split("-")[0]]
    assert outcome(df, "bad", CleansingRules(**off))["outcome"] == ACCEPT_USE


def test_one_slip_is_forgiven_only_when_the_scores_agree_with_the_others() -> None:
    """One trap or one gold answer too many, in a session whose scores follow the crowd's
    (r >= 0.5): accepted and used, and the `forgiven` column says why; two slips, or the rule off,
    or scores unrelated to the crowd's: not forgiven."""
    df = crowd(session("trap", LIVE_SCORES, trap_answers=(3, 4)),
               session("gold", LIVE_SCORES, gold_answers=(1, 1)),
               session("both", LIVE_SCORES, trap_answers=(3, 4), gold_answers=(1, 1)),
               session("two", LIVE_SCORES, trap_answers=(3, 3)))
    trap, gold = outcome(df, "trap"), outcome(df, "gold")
    assert trap["outcome"] == ACCEPT_USE and trap["reasons"] == "" and trap["consensus_r"] >= 0.5
    assert trap["forgiven"].startswith("missed 1 of 2 attention checks, forgiven: scores agree")
    assert gold["outcome"] == ACCEPT_USE and gold["forgiven"].startswith("missed 1 of 2 gold answers")
    assert outcome(df, "both")["outcome"] == REJECT and outcome(df, "two")["outcome"] == REJECT
    strict = outcome(df, "trap", CleansingRules(forgive_r=None))
    assert strict["outcome"] == REJECT and strict["forgiven"] == ""
    assert outcome(df, "gold", CleansingRules(forgive_r=None))["outcome"] == ACCEPT_NO_USE
    contrary = crowd(session("contrary", [6 - s for s in LIVE_SCORES], gold_answers=(1, 1)))
    assert outcome(contrary, "contrary")["outcome"] == ACCEPT_NO_USE


def test_straight_lining_is_judged_against_how_much_the_items_differ() -> None:
    """A low variance on items that everyone scores alike is not straight-lining; the same
    variance where the others' scores of the items vary is."""
    plateau = [4, 5, 4, 4, 5, 4, 4, 4, 5, 4]  # variance 0.21: below 0.25
    alike = pd.concat([session(f"p{k}", [4, 5, 4, 4, 5, 4, 4, 4, 5, 4][k:] + plateau[:k])
                       for k in range(6)], ignore_index=True)
    row = outcome(alike, "p0")
    assert row["score_variance"] < 0.25 and row["others_variance"] < 0.1
    assert row["outcome"] == ACCEPT_USE
    varied = outcome(crowd(session("flat", plateau)), "flat")
    assert varied["outcome"] == ACCEPT_NO_USE and "straight-lining" in varied["reasons"]
    assert "while the others' scores of the same items vary by" in varied["reasons"]
    assert outcome(alike, "p0", CleansingRules(straight_ratio=None))["outcome"] == ACCEPT_NO_USE


def test_gold_tolerance_is_one_scale_step_by_default() -> None:
    df = crowd(session("near", LIVE_SCORES, gold_answers=(3, 3)))  # one step outside 4-5 and 1-2
    assert outcome(df, "near")["gold_accuracy"] == 1.0
    assert outcome(df, "near", CleansingRules(gold_tolerance=0))["gold_accuracy"] == 0.0


def test_p808_outlier_removal_drops_single_ratings_not_the_submission() -> None:
    """15 submissions rate item i0; one gives 1 where fourteen give 5: z = 3.61 >= 3.29."""
    subs = [session(f"s{k}", [5, *LIVE_SCORES[1:]]) for k in range(14)]
    subs.append(session("odd", [1, *LIVE_SCORES[1:]]))
    df = pd.concat(subs, ignore_index=True)
    c = cleanse(df)
    row = c.submissions.set_index("submission").loc["odd"]
    assert row["outcome"] == ACCEPT_USE and row["outlier_ratings"] == 1
    odd_i0 = (df["submission"] == "odd") & (df["item"] == "i0")
    assert not c.used[odd_i0].any()
    assert c.used[(df["submission"] == "odd") & (df["kind"] == "live")].sum() == 9
    # 14 ratings: the largest possible z of one outlier is 13 / sqrt(14) = 3.47; 13 gives 3.33
    assert outcome(df, "odd", CleansingRules(outlier_z=3.7))["outlier_ratings"] == 0


def test_only_live_ratings_of_used_submissions_are_used() -> None:
    df = crowd(session("bad", [4] * 10))
    c = cleanse(df)
    assert not c.used[df["kind"] != "live"].any()
    assert c.used.sum() == 6 * 10


def test_agreement_with_the_crowd_is_reported_and_judged_when_asked() -> None:
    """consensus_r: a session that scores the items against everyone else's is far below r = 0.3."""
    contrary = [6 - s for s in LIVE_SCORES]
    df = crowd(session("contrary", contrary))
    row = outcome(df, "contrary")
    assert row["consensus_r"] < -0.5 and row["outcome"] == ACCEPT_USE  # reported, off by default
    judged = outcome(df, "contrary", CleansingRules(min_consensus_r=0.3))
    assert judged["outcome"] == ACCEPT_NO_USE and "unrelated to the other participants'" in judged["reasons"]
    assert outcome(df, "good0")["consensus_r"] > 0.5


@pytest.mark.parametrize("rule, value, said", [
    ("gold_min", 1.5, "gold_min must be between 0 and 1 (got 1.5)"),
    ("forgive_r", -2.0, "forgive_r must be between -1 and 1 (got -2)"),
    ("min_variance", -0.1, "min_variance must be at least 0 (got -0.1)"),
    ("max_trap_failures", -1, "max_trap_failures must be at least 0 (got -1)"),
])
def test_a_rule_out_of_its_range_is_refused_in_one_line(rule: str, value: float, said: str) -> None:
    with pytest.raises(CleansingError, match=re.escape(said)):
        CleansingRules(**{rule: value})


def test_missing_columns_and_unknown_kinds_are_refused_plainly() -> None:
    df = crowd()
    with pytest.raises(CleansingError, match="seconds"):
        cleanse(df.drop(columns="seconds"))
    with pytest.raises(CleansingError, match="Unknown item kind"):
        cleanse(df.assign(kind="bonus"))


def test_the_simulated_crowd_spammers_and_straight_liners_are_caught() -> None:
    """On a simulated crowd study with 30 % bad participants, the defaults catch every spammer and
    straight-liner of this seed and leave at most 1 in 10 honest participants out."""
    rng = np.random.default_rng(7)
    shape = TruthShape("logistic", 12.0, width=2.0)
    df = simulate_crowd(shape, np.arange(2.0, 26.0, 2.0), rng)
    kept = cleanse(df).submissions.set_index("rater")["outcome"] == ACCEPT_USE
    behaviour = df.groupby("rater")["behaviour"].first()
    assert not kept[behaviour.isin(["spammer", "straight_liner"])].any()
    at_p808 = cleanse(df, CleansingRules(min_variance=0.1)).submissions.set_index("rater")["outcome"]
    assert (at_p808[behaviour == "straight_liner"] == ACCEPT_USE).sum() == 1
    assert kept[behaviour.isin(["careful", "noisy"])].mean() >= 0.9
    assert 6.0 < true_boundary(shape, CrowdMix(), 2.0, 24.0) < 18.0
