"""Pools compared (review.analysis.pools_compared): each pool's alpha is Krippendorff's (checked
against the krippendorff package on the pool's own ratings), gold and consensus accuracy count
what they say with Wilson intervals, costs divide what was paid by the used ratings, and the
guideline and QA breakdowns come per pool."""

from __future__ import annotations

import krippendorff
import numpy as np
import pandas as pd
import pytest

from review.analysis.pools_compared import PoolCosts, compare_pools, pools_frame


def _frame() -> pd.DataFrame:
    """An in-house team that agrees and a crowd pool that mostly does not, on the same 30 items."""
    rng = np.random.default_rng(5)
    truth = rng.integers(1, 6, 30)
    rows = []
    for pool, raters, noise in (("In-house", 4, 0.3), ("Prolific", 5, 1.6)):
        for r in range(raters):
            for item, t in enumerate(truth):
                score = int(np.clip(round(t + rng.normal(0, noise)), 1, 5))
                gold = item < 4
                rows.append({"pool": pool, "rater": f"{pool}-{r}", "item": item, "score": score,
                             "is_gold": gold, "expected_min": 4 if gold else np.nan,
                             "expected_max": 5 if gold else np.nan,
                             "time_taken_ms": 4000 if pool == "In-house" else 2500,
                             "guideline_version": f"v{1 + r % 2}", "qa_cohort": "qa" if r % 2 else "no_qa"})
    return pd.DataFrame(rows)


def test_each_pool_is_measured_on_its_own_ratings() -> None:
    df = _frame()
    costs = {"Prolific": PoolCosts(pay_per_item=0.10, pay_per_session=1.00, currency="GBP", submissions=6,
                                   used_submissions=5, paid_submissions=6)}
    inhouse, crowd = compare_pools(df, costs, bootstrap=100, seed=1)
    assert (inhouse.pool, crowd.pool) == ("In-house", "Prolific")
    for figures in (inhouse, crowd):
        sub = df[df["pool"] == figures.pool]
        matrix = sub.pivot_table(index="rater", columns="item", values="score").to_numpy()
        assert figures.alpha.value == pytest.approx(
            krippendorff.alpha(reliability_data=matrix, level_of_measurement="ordinal"), abs=1e-9)
        assert figures.alpha.ci95[0] < figures.alpha.value < figures.alpha.ci95[1]
        gold = sub[sub["is_gold"]]
        assert figures.gold_accuracy.n == len(gold)
        assert figures.gold_accuracy.right == int(gold["score"].between(4, 5).sum())
    assert inhouse.alpha.value > crowd.alpha.value + 0.2
    assert inhouse.consensus_accuracy.value > crowd.consensus_accuracy.value
    assert inhouse.used_share is None and crowd.used_share.value == pytest.approx(5 / 6)
    assert crowd.median_seconds == 2.5 and inhouse.cost_per_used_rating is None
    crowd_ratings = int((df["pool"] == "Prolific").sum())
    assert crowd.cost_per_used_rating == pytest.approx((0.10 * crowd_ratings + 1.00 * 6) / crowd_ratings)
    # paid items of submissions left out still cost: they count over the ratings in use
    paid = {"Prolific": PoolCosts(pay_per_item=0.10, pay_per_session=1.00, submissions=6, used_submissions=5,
                                  paid_submissions=6, paid_items=crowd_ratings + 30)}
    (_, crowd_paid) = compare_pools(df, paid, bootstrap=0)
    assert crowd_paid.cost_per_used_rating == pytest.approx((0.10 * (crowd_ratings + 30) + 6) / crowd_ratings)
    assert [g.group for g in crowd.by_guideline] == ["v1", "v2"]
    assert [g.group for g in crowd.by_qa] == ["no_qa", "qa"]
    table = pools_frame([inhouse, crowd])
    assert list(table["pool"]) == ["In-house", "Prolific"] and table.loc[1, "currency"] == "GBP"


def test_no_ratings_no_pools() -> None:
    assert compare_pools(_frame().iloc[0:0]) == []
