"""Agreement statistics against published worked examples and second implementations.

Published sources are named next to each expected number. Second implementations: the PyPI
`krippendorff` package, statsmodels (Fleiss, Cohen, two-way ANOVA), scipy.optimize (the
P.910 likelihood), plain loops written from the standards' text (BT.500, bootstrap).
"""

from __future__ import annotations

import math
import time

import krippendorff
import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from statsmodels.stats.anova import anova_lm
from statsmodels.stats.inter_rater import cohens_kappa as sm_cohens_kappa
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss_kappa
from statsmodels.stats.proportion import proportion_confint

from review.analysis import agreement as ag

NAN = np.nan


def long_from_matrix(x: np.ndarray, item_axis: int = 1) -> pd.DataFrame:
    """Long format from a raters x items matrix (NaN = not rated)."""
    x = np.asarray(x, dtype=float)
    if item_axis == 0:
        x = x.T
    rows = [(u, o, int(x[o, u])) for o in range(x.shape[0]) for u in range(x.shape[1])
            if not np.isnan(x[o, u])]
    return pd.DataFrame(rows, columns=["item", "rater", "score"])


def random_reliability(rng: np.random.Generator, raters: int, items: int, missing: float,
                       values: np.ndarray) -> np.ndarray:
    x = rng.choice(values, size=(raters, items)).astype(float)
    # correlated component so alpha is not ~0
    truth = rng.choice(values, size=items)
    agree = rng.random((raters, items)) < 0.5
    x[agree] = np.broadcast_to(truth, x.shape)[agree]
    x[rng.random(x.shape) < missing] = NAN
    return x


# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C (4 observers x
# 12 units, ordinal example data); the paper reports alpha nominal 0.743, ordinal 0.815,
# interval 0.849 (and ratio 0.797); the `krippendorff` package's doctest reproduces 0.743/0.815.
K2011 = np.array([
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
    [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
])


@pytest.mark.parametrize("level,expected", [("nominal", 0.743), ("ordinal", 0.815),
                                            ("interval", 0.849), ("ratio", 0.797)])
def test_alpha_krippendorff_2011_published(level: str, expected: float) -> None:
    df = long_from_matrix(K2011)
    ours = ag.krippendorff_alpha(df, level)
    assert round(ours, 3) == expected
    ref = krippendorff.alpha(reliability_data=K2011, level_of_measurement=level)
    assert abs(ours - ref) < 1e-12


def test_alpha_2011_coincidence_matrix_published() -> None:
    # Counted by hand from the table above: unit 12 has one value (unpairable); the other
    # 40 pairable values are nine 1s, thirteen 2s, ten 3s, five 4s, three 5s. o_11 = 7:
    # unit 1 (three 1s) 3*2/2 + unit 8 (three 1s of 4) 3*2/3 + unit 11 (two 1s) 2*1/1;
    # o_12 = 4/3: unit 8 3*1/3 + unit 6 1*1/3.
    r = ag.encode_ratings(long_from_matrix(K2011))
    o = ag.coincidence_matrix(r.counts)
    assert np.allclose(o.sum(axis=0), [9, 13, 10, 5, 3])
    assert np.allclose(o, o.T)
    assert o[0, 0] == pytest.approx(7.0) and o[0, 1] == pytest.approx(4 / 3)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval", "ratio"])
def test_alpha_equals_krippendorff_package_on_random_data(seed: int, level: str) -> None:
    rng = np.random.default_rng(seed)
    values = [np.arange(1, 6), np.array([1, 3, 5]), np.arange(1, 8)][seed % 3]
    x = random_reliability(rng, raters=int(rng.integers(2, 9)), items=int(rng.integers(5, 300)),
                           missing=float(rng.uniform(0, 0.6)), values=values)
    scale = (1, int(values.max()))
    ours = ag.krippendorff_alpha(long_from_matrix(x), level, scale=scale)
    ref = krippendorff.alpha(reliability_data=x, level_of_measurement=level)
    assert abs(ours - ref) < 1e-9


def test_alpha_value_counts_path_and_string_ids() -> None:
    rng = np.random.default_rng(7)
    x = random_reliability(rng, 5, 120, 0.3, np.arange(1, 6))
    df = long_from_matrix(x)
    df["item"] = "img-" + df["item"].astype(str)
    df["rater"] = "rev-" + df["rater"].astype(str)
    r = ag.encode_ratings(df)
    ref = krippendorff.alpha(value_counts=r.counts, level_of_measurement="ordinal")
    assert abs(ag.alpha_from_counts(r.counts, "ordinal", r.values) - ref) < 1e-12


def test_alpha_not_enough_data() -> None:
    one_each = pd.DataFrame({"item": [1, 2, 3], "rater": ["a", "b", "c"], "score": [1, 2, 3]})
    with pytest.raises(ag.NotEnoughData, match="two or more ratings"):
        ag.krippendorff_alpha(one_each)
    constant = pd.DataFrame({"item": [1, 1, 2, 2], "rater": ["a", "b"] * 2, "score": [3] * 4})
    with pytest.raises(ag.NotEnoughData, match="no variation"):
        ag.krippendorff_alpha(constant)


def test_duplicate_rating_keeps_last_row() -> None:
    df = pd.DataFrame({"item": [1, 1, 1, 2, 2], "rater": ["a", "b", "a", "a", "b"],
                       "score": [1, 4, 4, 2, 2]})
    r = ag.encode_ratings(df)
    assert r.n_duplicates == 1 and r.n_ratings == 4
    assert sorted(r.score.tolist()) == [2, 2, 4, 4]  # the superseded 1 is gone


# ---------------------------------------------------------------------------------- Fleiss

# Fleiss (1971) via Wikipedia "Fleiss' kappa" worked example: 10 subjects, 14 raters,
# 5 categories -> kappa = 0.210.
FLEISS_WIKI = np.array([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0],
                        [2, 2, 8, 1, 1], [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2],
                        [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])


def test_fleiss_published_example() -> None:
    kappa, n, k, excluded = ag.fleiss_kappa_from_counts(FLEISS_WIKI)
    assert round(kappa, 3) == 0.210 and (n, k, excluded) == (10, 14, 0)


def test_fleiss_1971_diagnoses_from_long_format() -> None:
    # Fleiss (1971) psychiatric diagnoses, 30 patients x 6 raters; R irr::kappam.fleiss gives
    # 0.4302445 (statsmodels' test suite records the same figure).
    diagnoses = np.array([
        [4, 4, 4, 4, 4, 4], [2, 2, 2, 5, 5, 5], [2, 3, 3, 3, 3, 5], [5, 5, 5, 5, 5, 5],
        [2, 2, 2, 4, 4, 4], [1, 1, 3, 3, 3, 3], [3, 3, 3, 3, 5, 5], [1, 1, 3, 3, 3, 4],
        [1, 1, 4, 4, 4, 4], [5, 5, 5, 5, 5, 5], [1, 4, 4, 4, 4, 4], [1, 2, 4, 4, 4, 4],
        [2, 2, 2, 3, 3, 3], [1, 4, 4, 4, 4, 4], [2, 2, 4, 4, 4, 5], [3, 3, 3, 3, 3, 5],
        [1, 1, 1, 4, 5, 5], [1, 1, 1, 1, 1, 2], [2, 2, 4, 4, 4, 4], [1, 3, 3, 5, 5, 5],
        [5, 5, 5, 5, 5, 5], [2, 4, 4, 4, 4, 4], [2, 2, 4, 5, 5, 5], [1, 1, 4, 4, 4, 4],
        [1, 4, 4, 4, 4, 5], [2, 2, 2, 2, 2, 4], [1, 1, 1, 1, 5, 5], [2, 2, 4, 4, 4, 4],
        [1, 3, 3, 3, 3, 3], [5, 5, 5, 5, 5, 5]])
    r = ag.encode_ratings(long_from_matrix(diagnoses, item_axis=0))
    kappa, n, k, _ = ag.fleiss_kappa_from_counts(r.counts)
    assert kappa == pytest.approx(0.4302445, abs=1e-7) and (n, k) == (30, 6)


def test_fleiss_varying_counts_uses_modal_count() -> None:
    counts = np.array([[3, 0, 0], [0, 3, 0], [1, 1, 1], [2, 0, 0], [0, 0, 1], [1, 1, 0]])
    kappa, n, k, excluded = ag.fleiss_kappa_from_counts(counts)
    assert (n, k, excluded) == (3, 3, 2)  # two items of count 2 left out, count-1 item unpairable
    assert kappa == pytest.approx(sm_fleiss_kappa(counts[:3]))
    # ties between counts go to the larger count
    mask, k, _ = ag.fleiss_subset(np.array([[2, 0], [0, 2], [3, 0], [1, 2]]))
    assert k == 3 and mask.tolist() == [False, False, True, True]


def test_percent_agreement_by_hand() -> None:
    # item 1: 3 raters all agree (1.0); item 2: values 1,1,2 -> 1 of 3 pairs agree; item 3
    # has one rating (unpairable)
    counts = np.array([[3, 0], [2, 1], [1, 0]])
    value, n = ag.percent_agreement_from_counts(counts)
    assert n == 2 and value == pytest.approx((1 + 1 / 3) / 2)


# ----------------------------------------------------------------------------------- Cohen


def test_cohen_published_examples() -> None:
    # SAS/STAT PROC FREQ agreement example (as in statsmodels' test suite): simple kappa
    # 0.4842, weighted kappa (Cicchetti-Allison = linear weights) 0.4701.
    table10 = np.array([[0, 4, 1], [0, 8, 0], [0, 1, 5]])
    assert float(ag.kappa_from_tables(table10)) == pytest.approx(0.4842, abs=5e-5)
    assert float(ag.kappa_from_tables(table10, "linear")) == pytest.approx(0.4701, abs=5e-5)
    # Wikipedia "Cohen's kappa" example: 50 proposals, yes/yes 20, yes/no 5, no/yes 10,
    # no/no 15 -> p_o 0.7, p_e 0.5, kappa 0.4
    assert float(ag.kappa_from_tables(np.array([[20, 5], [10, 15]]))) == pytest.approx(0.4)


def test_cohen_r_irr_anxiety() -> None:
    # R irr::kappa2 on the `anxiety` data, raters 2 and 3 (values recorded in statsmodels'
    # test suite): unweighted -0.006289308, "equal" (linear) 0.1459075, "squared" 0.2520325.
    # irr weights by position among the observed levels, our default for cohen_kappa.
    anxiety = np.array([
        3, 3, 3, 4, 5, 5, 2, 3, 5, 2, 2, 6, 1, 5, 2, 2, 1, 2, 4, 3, 3, 6, 4,
        6, 2, 4, 2, 4, 3, 3, 2, 3, 3, 3, 2, 2, 1, 3, 3, 4, 2, 1, 4, 4, 3, 2,
        1, 6, 1, 1, 1, 2, 3, 3, 1, 1, 3, 3, 2, 2]).reshape(20, 3, order="F")
    a, b = anxiety[:, 1], anxiety[:, 2]
    assert ag.cohen_kappa(a, b) == pytest.approx(-0.006289308, abs=1e-8)
    assert ag.cohen_kappa(a, b, "linear") == pytest.approx(0.1459075, abs=1e-7)
    assert ag.cohen_kappa(a, b, "quadratic") == pytest.approx(0.2520325, abs=1e-7)


@pytest.mark.parametrize("seed", range(5))
def test_cohen_equals_statsmodels_on_random_tables(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 7))
    table = rng.integers(0, 15, size=(k, k)) + np.diag(rng.integers(0, 20, size=k))
    for ours, wt in (("unweighted", None), ("linear", "linear"), ("quadratic", "quadratic")):
        ref = sm_cohens_kappa(table, wt=wt, return_results=False)
        assert float(ag.kappa_from_tables(table, ours)) == pytest.approx(ref, abs=1e-12)


def test_pairwise_tables_match_per_pair_cohen() -> None:
    rng = np.random.default_rng(3)
    x = random_reliability(rng, 4, 80, 0.25, np.arange(1, 6))
    r = ag.encode_ratings(long_from_matrix(x))
    pt = ag.pair_tables(r)
    assert pt.tables.shape[0] == 6  # all 4*3/2 pairs share items
    for j in range(6):
        a, b = int(pt.rater_a[j]), int(pt.rater_b[j])
        both = ~np.isnan(x[a]) & ~np.isnan(x[b])
        assert pt.tables[j].sum() == both.sum()
        for wt in ("unweighted", "linear", "quadratic"):
            ref = ag.cohen_kappa(x[a][both], x[b][both], wt, categories=[1, 2, 3, 4, 5])
            assert float(ag.kappa_from_tables(pt.tables[j], wt)) == pytest.approx(ref)


def test_pair_tables_same_from_the_product_and_from_the_rating_pairs(monkeypatch) -> None:
    """Few raters: one sparse product; many: the list of rating pairs. Same tables, same cuts."""
    rng = np.random.default_rng(8)
    r = ag.encode_ratings(long_from_matrix(random_reliability(rng, 12, 90, 0.3, np.arange(1, 6))))
    product = [ag.pair_tables(r, m, max_cells=c) for m in (1, 5, 40) for c in (10**6, 20 * 25)]
    monkeypatch.setattr(ag, "MAX_PAIR_PRODUCT_CELLS", 0)
    listed = [ag.pair_tables(r, m, max_cells=c) for m in (1, 5, 40) for c in (10**6, 20 * 25)]
    for a, b in zip(product, listed, strict=True):
        assert a.tables.shape[0] > 0 or a.n_fewer_items == a.n_rater_pairs
        assert (a.tables == b.tables).all() and (a.rater_a == b.rater_a).all()
        assert (a.rater_b == b.rater_b).all() and a.n_over_budget == b.n_over_budget
        assert a.n_fewer_items == b.n_fewer_items


def test_cohen_undefined_when_both_constant() -> None:
    with pytest.raises(ag.NotEnoughData):
        ag.cohen_kappa([3, 3, 3], [3, 3, 3])


# ------------------------------------------------------------------------------------- ICC

# Shrout & Fleiss (1979), Table 2: 6 targets x 4 judges; Table 4 gives ICC(1,1) .17,
# ICC(2,1) .29, ICC(3,1) .71, ICC(1,4) .44, ICC(2,4) .62, ICC(3,4) .91. The 95% bounds are
# R psych::ICC's output for the same data (its documentation example).
SF = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9],
               [6, 2, 4, 7]], dtype=float)
SF_EXPECTED = {"ICC1": (0.17, -0.133, 0.72), "ICC2": (0.29, 0.019, 0.76),
               "ICC3": (0.71, 0.342, 0.95), "ICC1k": (0.44, -0.884, 0.91),
               "ICC2k": (0.62, 0.071, 0.93), "ICC3k": (0.91, 0.676, 0.99)}


def test_icc_shrout_fleiss_published() -> None:
    out = ag.icc(SF)
    for form, (value, lo, hi) in SF_EXPECTED.items():
        assert round(out[form].value, 2) == value, form
        assert out[form].ci95[0] == pytest.approx(lo, abs=5e-4 if lo != 0.72 else 5e-3), form
        assert out[form].ci95[1] == pytest.approx(hi, abs=5e-3), form
        assert out[form].n_items == 6


def test_icc_r_irr_anxiety_agreement() -> None:
    # R irr::icc(anxiety, model="twoway", type="agreement"): ICC(A,1) = 0.198,
    # 95% CI -0.039 < ICC < 0.494, F(19, 39.7) = 1.83.
    anxiety = np.array([
        3, 3, 3, 4, 5, 5, 2, 3, 5, 2, 2, 6, 1, 5, 2, 2, 1, 2, 4, 3, 3, 6, 4,
        6, 2, 4, 2, 4, 3, 3, 2, 3, 3, 3, 2, 2, 1, 3, 3, 4, 2, 1, 4, 4, 3, 2,
        1, 6, 1, 1, 1, 2, 3, 3, 1, 1, 3, 3, 2, 2]).reshape(20, 3, order="F")
    c = ag.icc(anxiety)["ICC2"]
    assert round(c.value, 3) == 0.198
    assert c.ci95[0] == pytest.approx(-0.039, abs=5e-4)
    assert c.ci95[1] == pytest.approx(0.494, abs=5e-4)


def test_icc_equals_statsmodels_anova_on_random_data() -> None:
    rng = np.random.default_rng(11)
    n, k = 25, 4
    y = rng.normal(size=(n, 1)) * 1.5 + rng.normal(size=(1, k)) * 0.7 + rng.normal(size=(n, k))
    d = pd.DataFrame({"y": y.ravel(), "item": np.repeat(np.arange(n), k),
                      "rater": np.tile(np.arange(k), n)})
    table = anova_lm(smf.ols("y ~ C(item) + C(rater)", data=d).fit())
    msb, msj, mse = table["mean_sq"].to_numpy()[:3]
    msw = (table["sum_sq"].iloc[1] + table["sum_sq"].iloc[2]) / (n * (k - 1))
    expected = {
        "ICC1": (msb - msw) / (msb + (k - 1) * msw),
        "ICC2": (msb - mse) / (msb + (k - 1) * mse + k * (msj - mse) / n),
        "ICC3": (msb - mse) / (msb + (k - 1) * mse),
        "ICC1k": (msb - msw) / msb,
        "ICC2k": (msb - mse) / (msb + (msj - mse) / n),
        "ICC3k": (msb - mse) / msb,
    }
    out = ag.icc(y)
    for form, value in expected.items():
        assert out[form].value == pytest.approx(value, abs=1e-10)
        lo, hi = out[form].ci95
        assert lo < out[form].value < hi


def test_icc_subset_with_missing_ratings() -> None:
    rng = np.random.default_rng(5)
    x = rng.integers(1, 6, size=(4, 40)).astype(float)
    x[3, :30] = NAN  # rater 3 rated only 10 items
    x[0, 5] = NAN
    r = ag.encode_ratings(long_from_matrix(x))
    sub = ag.icc_subset(r)
    # 3 raters x 39 items (117 cells) beats 4 raters x 9 items (36 cells)
    assert sub.matrix.shape == (39, 3)
    assert sorted(sub.rater_codes.tolist()) == [0, 1, 2]
    # columns follow sub.rater_codes (raters with most ratings first)
    expected = x[sub.rater_codes][:, ~np.isnan(x[:3]).any(axis=0)].T
    assert np.array_equal(sub.matrix, expected)
    assert "39 of 40 items x 3 of 4 raters" in sub.description


def test_icc_degenerate_tables() -> None:
    out = ag.icc(np.full((5, 3), 4.0))
    assert all(c.value is None and "no variance" in c.reason for c in out.values())
    assert ag.icc(np.ones((1, 3)))["ICC2"].value is None
    with pytest.raises(ag.NotEnoughData):
        ag.icc_subset(ag.encode_ratings(pd.DataFrame(
            {"item": [1, 2], "rater": ["a", "b"], "score": [1, 2]})))


# ------------------------------------------------------------------------------ MOS, DMOS


def test_mos_matches_pandas_and_sureal_ci() -> None:
    rng = np.random.default_rng(2)
    df = long_from_matrix(random_reliability(rng, 6, 50, 0.3, np.arange(1, 6)))
    r = ag.encode_ratings(df)
    mos = ag.item_mos(r)
    g = df.groupby("item")["score"]
    ref_mean, ref_std, ref_n = g.mean().to_numpy(), g.std(ddof=1).to_numpy(), g.size()
    assert np.allclose(mos["mos"], ref_mean)
    assert np.allclose(mos["mos_std"], ref_std, equal_nan=True)
    half = 1.96 * ref_std / np.sqrt(ref_n.to_numpy())
    assert np.allclose(mos["mos_ci95_half"], half, equal_nan=True)


def test_dmos_acr_hr_by_hand() -> None:
    # P.910 ACR-HR: DV = V(PVS) - V(REF) + 5, per rater, then averaged.
    df = pd.DataFrame({
        "item": ["ref", "ref", "x", "x", "y", "other"],
        "rater": ["a", "b", "a", "b", "a", "a"],
        "score": [5, 4, 3, 4, 2, 3],
        "reference_group": ["s1", "s1", "s1", "s1", "s1", "s2"],
        "is_hidden_reference": [True, True, False, False, False, False],
    })
    r = ag.encode_ratings(df)
    d = ag.item_dmos(r, r.column(df, "reference_group"), r.column(df, "is_hidden_reference"), 5)
    by_item = dict(zip(r.items.tolist(), d.itertuples(index=False), strict=True))
    assert by_item["x"].dmos == pytest.approx(((3 - 5 + 5) + (4 - 4 + 5)) / 2)  # 4.0
    assert by_item["x"].dmos_n == 2
    assert by_item["y"].dmos == pytest.approx(2.0) and by_item["y"].dmos_n == 1
    assert np.isnan(by_item["ref"].dmos) and np.isnan(by_item["other"].dmos)


# ------------------------------------------------------------------ P.910 subject model


def _sureal_style_mle(r: ag.Ratings, floor: float, refresh: float = 0.1,
                      thr: float = 1e-10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Second implementation: the update equations of Netflix sureal's content-oblivious MLE
    (damped steps from a MOS start: weighted-mean bias, Newton step on nu, weighted-mean psi;
    zero-mean bias imposed at the end), with the same floor on nu."""
    it, rt, o = r.item, r.rater, r.score
    ni, nr = r.n_items, r.n_raters
    x = np.bincount(it, weights=o, minlength=ni) / np.bincount(it, minlength=ni)
    res = o - x[it]
    n_r = np.bincount(rt, minlength=nr)
    v = np.sqrt(np.bincount(rt, weights=(res - (np.bincount(rt, weights=res, minlength=nr)
                                                / n_r)[rt]) ** 2, minlength=nr) / n_r)
    b = np.zeros(nr)
    for _ in range(100_000):
        x_prev = x
        w = 1 / v**2
        b_new = (np.bincount(rt, weights=(o - x[it]) * w[rt], minlength=nr)
                 / np.bincount(rt, weights=w[rt], minlength=nr))
        b = b * (1 - refresh) + b_new * refresh
        a = o - x[it] - b[rt]
        num = np.bincount(rt, weights=-1 / v[rt] + a**2 / v[rt] ** 3, minlength=nr)
        den = np.bincount(rt, weights=1 / v[rt] ** 2 - 3 * a**2 / v[rt] ** 4, minlength=nr)
        v = np.maximum(v * (1 - refresh) + (v - num / den) * refresh, floor)
        w = 1 / v**2
        x_new = (np.bincount(it, weights=w[rt] * (o - b[rt]), minlength=ni)
                 / np.bincount(it, weights=w[rt], minlength=ni))
        x = x * (1 - refresh) + x_new * refresh
        if np.linalg.norm(x_prev - x) < thr:
            break
    return x + b.mean(), b - b.mean(), v


def _model_data(seed: int, n_items: int, noise: np.ndarray, missing: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_raters = noise.size
    q = rng.uniform(1, 5, n_items)
    bias = np.linspace(-0.5, 0.5, n_raters)
    x = q[None, :] + bias[:, None] + noise[:, None] * rng.standard_normal((n_raters, n_items))
    x = np.clip(np.rint(x), 1, 5)
    x[rng.random(x.shape) < missing] = NAN
    return long_from_matrix(x)


def test_subject_model_equals_sureal_style_iteration() -> None:
    # raters of similar consistency: every nu has an interior maximum (see the next test)
    df = _model_data(4, 200, np.linspace(0.7, 1.0, 8), missing=0.15)
    r = ag.encode_ratings(df)
    model = ag.subject_model(r, tol=1e-11)
    assert model.converged and not model.at_floor.any()
    psi, b, v = _sureal_style_mle(r, ag.MIN_INCONSISTENCY)
    assert np.allclose(model.bias, b, atol=1e-6)
    assert np.allclose(model.inconsistency, v, atol=1e-6)
    assert np.allclose(model.quality, psi, atol=1e-6)
    # the likelihood's stationary equations hold at the solution
    res = r.score - model.quality[r.item] - model.bias[r.rater]
    n_r = np.bincount(r.rater)
    assert np.allclose(np.bincount(r.rater, weights=res), 0, atol=1e-7)
    assert np.allclose(np.sqrt(np.bincount(r.rater, weights=res**2) / n_r),
                       model.inconsistency, atol=1e-7)
    assert abs(np.mean(model.bias)) < 1e-12
    # CIs as sureal: psi +- 1.96/sqrt(sum 1/nu^2); nu from the chi-square quantiles
    w = 1 / model.inconsistency**2
    assert np.allclose(model.quality_ci95_half,
                       1.959964 / np.sqrt(np.bincount(r.item, weights=w[r.rater])), atol=1e-6)
    lo, hi = model.inconsistency_ci95.T
    assert np.all((lo < model.inconsistency) & (model.inconsistency < hi))


def test_subject_model_consistent_rater_hits_the_floor() -> None:
    # One rater much more consistent than the others combined (nu_i^2 * sum_k!=i 1/nu_k^2 < 3):
    # the likelihood then has no interior maximum in nu_i, whatever the number of items;
    # sureal's update equations collapse its nu to 0 too. We stop at the floor and say so.
    df = _model_data(1, 200, np.array([0.4, 0.8, 0.9, 1.0, 1.1]), missing=0.15)
    r = ag.encode_ratings(df)
    model = ag.subject_model(r)
    _, _, v = _sureal_style_mle(r, floor=0.0, thr=1e-8)
    assert v.min() < 1e-3  # the unconstrained iteration degenerates
    assert model.at_floor.sum() == 1
    assert model.inconsistency[model.at_floor][0] == pytest.approx(ag.MIN_INCONSISTENCY)
    assert np.all(np.isfinite(model.quality))


def test_subject_model_recovers_generating_bias() -> None:
    rng = np.random.default_rng(8)
    n_items, n_raters = 600, 6
    q = rng.uniform(1.5, 4.5, n_items)
    bias = np.array([-0.5, -0.25, 0.0, 0.0, 0.25, 0.5])
    noise = np.array([0.3, 0.5, 0.5, 0.8, 0.5, 1.0])
    x = np.clip(np.rint(q[None, :] + bias[:, None]
                        + noise[:, None] * rng.standard_normal((n_raters, n_items))), 1, 5)
    model = ag.subject_model(ag.encode_ratings(long_from_matrix(x)))
    assert np.allclose(model.bias, bias, atol=0.08)
    assert np.argmax(model.inconsistency) == 5 and np.argmin(model.inconsistency) == 0
    half = model.bias_ci95_half
    assert np.all((half > 0) & (half < 0.15))


def test_subject_model_excludes_single_rating_raters() -> None:
    df = pd.DataFrame({"item": [1, 1, 2, 2, 3, 3, 3], "rater": ["a", "b", "a", "b", "a", "b", "c"],
                       "score": [4, 3, 5, 3, 2, 1, 5]})
    r = ag.encode_ratings(df)
    model = ag.subject_model(r)
    c = int(np.flatnonzero(r.raters == "c")[0])
    assert np.isnan(model.bias[c]) and np.isnan(model.inconsistency[c])
    assert np.isfinite(model.bias).sum() == 2


# -------------------------------------------------------------------------------- BT.500


def _bt500_loop(x: np.ndarray) -> tuple[list[int], list[int], list[bool]]:
    """BT.500 A1-2.3.1 written as in the text, on a complete raters x items matrix."""
    n_obs, n_items = x.shape
    p, q = [0] * n_obs, [0] * n_obs
    for j in range(n_items):
        u = x[:, j]
        mean = u.mean()
        m2 = ((u - mean) ** 2).sum() / n_obs
        m4 = ((u - mean) ** 4).sum() / n_obs
        s = np.sqrt(((u - mean) ** 2).sum() / (n_obs - 1))
        if s == 0:
            continue
        b2 = m4 / m2**2
        width = 2 * s if 2 <= b2 <= 4 else np.sqrt(20) * s
        for i in range(n_obs):
            if u[i] >= mean + width:
                p[i] += 1
            if u[i] <= mean - width:
                q[i] += 1
    reject = [((p[i] + q[i]) / n_items > 0.05) and (p[i] + q[i] > 0)
              and abs((p[i] - q[i]) / (p[i] + q[i])) < 0.3 for i in range(n_obs)]
    return p, q, reject


def test_bt500_screening_matches_loop_and_rejects_erratic_observer() -> None:
    rng = np.random.default_rng(9)
    n_obs, n_items = 16, 40
    q = rng.integers(2, 5, n_items)
    x = np.clip(q[None, :] + rng.choice([-1, 0, 0, 0, 1], size=(n_obs, n_items)), 1, 5)
    x[0] = np.where(np.arange(n_items) % 2 == 0, 5, 1)  # erratic in both directions
    x[1] = np.clip(q + 3, 1, 5)  # always far too high (a bias, not erratic)
    x = x.astype(float)
    out = ag.bt500_screening(ag.encode_ratings(long_from_matrix(x)))
    p, qq, reject = _bt500_loop(x)
    assert out["bt500_p"].tolist() == p and out["bt500_q"].tolist() == qq
    assert out["bt500_rejected"].tolist() == reject
    assert reject[0] and not reject[1] and sum(reject) == 1


# ---------------------------------------------------------------------------------- gold


def test_gold_accuracy_and_wilson_ci() -> None:
    df = pd.DataFrame({"item": [1, 1, 2, 2, 3], "rater": ["a", "b", "a", "b", "a"],
                       "score": [5, 3, 1, 2, 4], "is_gold": [True, True, True, True, False],
                       "expected_min": [4, 4, 1, 1, None], "expected_max": [5, 5, 1, 1, None]})
    r = ag.encode_ratings(df)
    g = ag.gold_correct(r, r.column(df, "is_gold"), r.column(df, "expected_min"),
                        r.column(df, "expected_max"))
    a, b = int(np.flatnonzero(r.raters == "a")[0]), int(np.flatnonzero(r.raters == "b")[0])
    assert (g.per_rater_n[a], g.per_rater_correct[a]) == (2, 2)
    assert (g.per_rater_n[b], g.per_rater_correct[b]) == (2, 0)
    assert ag.wilson_ci(7, 10) == pytest.approx(proportion_confint(7, 10, method="wilson"))
    diff = ag.compare_proportions(40, 50, 30, 50)
    assert diff.value == pytest.approx(0.2) and diff.ci95[0] < 0.2 < diff.ci95[1]


@pytest.mark.parametrize("k, n, lo, hi", [
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718),
])
def test_wilson_interval_matches_newcombe_1998(k, n, lo, hi) -> None:
    """Newcombe, "Two-sided confidence intervals for the single proportion", Stat Med 1998,
    Table I, method 3 (Wilson score interval without continuity correction)."""
    assert ag.wilson_ci(k, n) == pytest.approx((lo, hi), abs=5e-5)
    assert ag.wilson_ci(k, n) == pytest.approx(proportion_confint(k, n, method="wilson"), abs=1e-12)


def test_scipy_stats_and_statsmodels_formulas_are_bit_identical() -> None:
    """agreement.py computes the F and chi-square quantiles, Fleiss' kappa, the Wilson and the
    Newcombe intervals without importing scipy.stats or statsmodels (~0.4 s of every `stats`
    run); the numbers must stay exactly the libraries'."""
    from scipy import stats as sps
    from statsmodels.stats.proportion import confint_proportions_2indep

    rng = np.random.default_rng(11)
    for q in (0.025, 0.975):
        dfn = np.r_[rng.integers(1, 10**5, 300), rng.uniform(0.1, 500, 300), 0, -1, NAN, np.inf]
        dfd = np.r_[rng.uniform(0.5, 10**4, 300), rng.integers(1, 100, 300), 5, 5, 5, 5]
        np.testing.assert_array_equal(ag._f_ppf(q, dfn, dfd), sps.f.ppf(q, dfn, dfd))
        np.testing.assert_array_equal(ag._chi2_ppf(q, dfn), sps.chi2.ppf(q, dfn))
    for _ in range(500):
        n, n2 = (int(x) for x in rng.integers(1, 3000, 2))
        k, k2 = int(rng.integers(0, n + 1)), int(rng.integers(0, n2 + 1))
        assert ag.wilson_ci(k, n) == proportion_confint(k, n, alpha=0.05, method="wilson")
        lo, hi = confint_proportions_2indep(k, n, k2, n2, method="newcomb", compare="diff")
        assert ag.compare_proportions(k, n, k2, n2).ci95 == (float(lo), float(hi))
        counts = rng.multinomial(int(rng.integers(2, 9)), rng.dirichlet(np.ones(5)), size=40)
        assert ag.fleiss_kappa_from_counts(counts)[0] == float(sm_fleiss_kappa(counts))


def test_stats_command_imports_neither_scipy_stats_nor_statsmodels() -> None:
    import subprocess
    import sys

    code = ("import sys, review.cli, review.analysis.report, review.analysis.markdown_report; "
            "print([m for m in sys.modules if m.startswith(('scipy.stats', 'statsmodels', 'sklearn'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_wilson_interval_of_no_trials_is_none() -> None:
    """A share of nothing is undefined: no interval (shown as "—", null in JSON), never NaN."""
    assert ag.wilson_ci(0, 0) is None


def test_gold_judges_the_raters_own_score_when_the_table_has_it() -> None:
    """A QA correction's row carries QA's score in `score` and the reviewer's in
    `reviewer_score`: gold accuracy judges the reviewer's (review.analysis.agreement.gold_of)."""
    df = pd.DataFrame({"item": [1, 2], "rater": ["a", "a"], "score": [5, 5], "reviewer_score": [2, 5],
                       "is_gold": [True, True], "expected_min": [4, 4], "expected_max": [5, 5]})
    r = ag.encode_ratings(df)
    assert ag.gold_of(df, r).per_rater_correct.tolist() == [1]
    assert ag.gold_of(df.drop(columns="reviewer_score"), r).per_rater_correct.tolist() == [2]
    assert ag.gold_of(df.drop(columns=["expected_min", "expected_max"]), r) is None


# --------------------------------------------------------------------------- Dawid-Skene


def test_dawid_skene_beats_majority_vote_with_adversarial_rater() -> None:
    rng = np.random.default_rng(12)
    n, k = 600, 5
    truth = rng.integers(0, k, n)

    def noisy(acc: float) -> np.ndarray:
        wrong = (truth + rng.integers(1, k, n)) % k  # a uniformly random other class
        return np.where(rng.random(n) < acc, truth, wrong)

    good1, good2 = noisy(0.7), noisy(0.7)
    adversarial = np.where(rng.random(n) < 0.9, k - 1 - truth, rng.integers(0, k, n))
    x = np.vstack([good1, good2, adversarial]).astype(float) + 1
    r = ag.encode_ratings(long_from_matrix(x))
    ds = ag.dawid_skene(r)
    assert ds.converged
    mv_acc = (ag.majority_vote(r.counts) == truth).mean()
    ds_acc = (ds.labels == truth).mean()
    assert ds_acc > mv_acc + 0.15, (ds_acc, mv_acc)
    # generating confusion matrices: good raters 0.7 on the diagonal, 0.075 elsewhere;
    # the adversary mirrors the scale (0.9 + 0.02 on the anti-diagonal)
    expected_good = np.full((k, k), 0.3 / (k - 1)) + np.eye(k) * (0.7 - 0.3 / (k - 1))
    expected_adv = np.full((k, k), 0.1 / k) + np.fliplr(np.eye(k)) * 0.9
    assert np.abs(ds.confusion[0] - expected_good).max() < 0.12
    assert np.abs(ds.confusion[1] - expected_good).max() < 0.12
    assert np.abs(ds.confusion[2] - expected_adv).max() < 0.12
    acc = ds.rater_accuracy()
    # the mirror keeps the middle score: its accuracy is (4 * 0.02 + 0.92) / 5 = 0.2
    assert acc[2] < 0.25 < 0.6 < acc[0]


def test_dawid_skene_is_deterministic() -> None:
    rng = np.random.default_rng(1)
    r = ag.encode_ratings(long_from_matrix(random_reliability(rng, 4, 50, 0.2,
                                                              np.arange(1, 6))))
    a, b = ag.dawid_skene(r), ag.dawid_skene(r)
    assert np.array_equal(a.labels, b.labels) and np.allclose(a.confusion, b.confusion)


# ----------------------------------------------------------------------------- bootstrap


def test_bootstrap_equals_loop_over_resamples() -> None:
    """The vectorised bootstrap equals recomputing each figure per resample with the
    reference libraries, on the very same resampled items."""
    rng = np.random.default_rng(21)
    x = random_reliability(rng, 4, 60, 0.2, np.arange(1, 6))
    r = ag.encode_ratings(long_from_matrix(x)).sorted()
    n_boot, seed = 150, 3
    pt = ag.pair_tables(r)
    boot = ag.bootstrap_agreement(r, n_boot, seed, pt)
    # replay the same draws
    draws = ag.derived_rng(seed, "agreement").integers(0, r.n_items, size=(n_boot, r.n_items))
    xs = x[:, r.items.astype(int)]  # columns in item-code order
    fmask, _, _ = ag.fleiss_subset(r.counts)
    alphas, fleiss, kap = [], [], []
    for idx in draws:
        alphas.append(krippendorff.alpha(reliability_data=xs[:, idx],
                                         level_of_measurement="ordinal"))
        fleiss.append(sm_fleiss_kappa(r.counts[idx][fmask[idx]]))
        a, b = int(pt.rater_a[0]), int(pt.rater_b[0])
        xa, xb = xs[a, idx], xs[b, idx]
        both = ~np.isnan(xa) & ~np.isnan(xb)
        table = np.zeros((5, 5))
        np.add.at(table, (xa[both].astype(int) - 1, xb[both].astype(int) - 1), 1)
        kap.append(sm_cohens_kappa(table, wt="linear", return_results=False))
    assert boot.alpha["ordinal"] == pytest.approx(tuple(np.percentile(alphas, [2.5, 97.5])))
    assert boot.fleiss == pytest.approx(tuple(np.percentile(fleiss, [2.5, 97.5])))
    assert boot.kappa["linear"][0] == pytest.approx(tuple(np.percentile(kap, [2.5, 97.5])))


def test_bootstrap_is_fast_and_seeded() -> None:
    rng = np.random.default_rng(0)
    r = ag.encode_ratings(long_from_matrix(random_reliability(rng, 8, 1000, 0.1,
                                                              np.arange(1, 6)))).sorted()
    pt = ag.pair_tables(r)
    t0 = time.perf_counter()
    b1 = ag.bootstrap_agreement(r, 1000, 5, pt)
    elapsed = time.perf_counter() - t0
    assert elapsed < 5.0, f"1000 resamples of 1k items took {elapsed:.2f}s"
    b2 = ag.bootstrap_agreement(r, 1000, 5, pt)
    assert b1.alpha == b2.alpha and b1.kappa == b2.kappa
    value = ag.alpha_from_counts(r.counts, "ordinal", r.values)
    lo, hi = b1.alpha["ordinal"]
    assert lo < value < hi and hi - lo < 0.1


def test_compare_alpha_detects_a_real_difference() -> None:
    rng = np.random.default_rng(6)

    def study(noise: float, n: int = 300) -> ag.Ratings:
        q = rng.uniform(1, 5, n)
        x = np.clip(np.rint(q[None, :] + noise * rng.standard_normal((4, n))), 1, 5)
        return ag.encode_ratings(long_from_matrix(x))

    clear, vague, vague2 = study(0.5), study(1.2), study(1.2)
    diff = ag.compare_alpha(clear, vague, "ordinal", n_boot=300, seed=1)
    assert diff.value > 0 and diff.ci95[0] > 0
    same = ag.compare_alpha(vague, vague2, "ordinal", n_boot=300, seed=1)
    assert same.ci95[0] < 0 < same.ci95[1]
    assert ag.compare_alpha(clear, vague).ci95 is None  # no resamples, no interval


def test_coef_never_reports_nan() -> None:
    assert ag.Coef(float("nan"), 3).to_dict() == {"value": None,
                                                  "reason": "not computable from these data"}
    assert ag.Coef(0.5, 3, (float("nan"), 0.7)).to_dict()["ci95"] is None


def test_pair_tables_bounded_by_shared_items_and_budget() -> None:
    """Pairs below min_items and beyond the co-rating budget are counted, not enumerated, and
    every rater pair is accounted for exactly once."""
    rng = np.random.default_rng(3)
    n_items, n_raters = 30, 40
    item = np.repeat(np.arange(n_items), n_raters)
    rater = np.tile(np.arange(n_raters), n_items)
    keep = (rater < 10) | (item < 3)  # raters 10.. rate 3 items only: below min_items
    df = pd.DataFrame({"item": item[keep], "rater": rater[keep],
                       "score": rng.integers(1, 6, int(keep.sum()))})
    r = ag.encode_ratings(df).sorted()
    pt = ag.pair_tables(r, 5)
    assert pt.tables.shape[0] == math.comb(10, 2) and pt.n_over_budget == 0
    assert pt.n_fewer_items == math.comb(40, 2) - math.comb(10, 2) == pt.n_rater_pairs - 45
    assert (pt.tables.sum(axis=(1, 2)) == 30).all()
    full = ag.pair_tables(r)  # min 1 item: every pair shares items 0..2
    assert full.tables.shape[0] == math.comb(40, 2)
    same = {(a, b): t for a, b, t in zip(full.rater_a, full.rater_b, full.tables, strict=True)}
    for a, b, t in zip(pt.rater_a, pt.rater_b, pt.tables, strict=True):
        assert (same[(a, b)] == t).all()
    small = ag.pair_tables(r, 5, max_co_ratings=30 * 15)  # room for the 6 most active raters
    assert small.n_raters_scanned == 6 and small.n_raters_eligible == 10
    assert small.tables.shape[0] == 15 and small.n_over_budget == 45 - 15
    capped = ag.pair_tables(r, 5, max_cells=7 * 25)
    assert capped.tables.shape[0] == 7 and capped.n_over_budget == 45 - 7
