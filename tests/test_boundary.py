"""The usable-blur boundary (review.analysis.boundary) and its plain-words answer: checked against
an analytic curve, against scikit-learn's GaussianProcessRegressor fitted directly, and on a
study's long-format ratings."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern

from review.analysis.agreement import wilson_ci
from review.analysis.answer import answer_dict, answer_markdown, curves_frame, study_answer
from review.analysis.boundary import (
    PRIOR_MEAN,
    Options,
    boundary_of,
    classify,
    curves_of,
    first_crossing,
    fit_share,
    propose,
    straddle,
)
from review.analysis.export import answer_csv, answer_json
from review.labeling.simulated_panel import PanelSpec, TrueCurve, item_quality, rate, sample_faithful

LEVELS = np.arange(2.0, 32.0, 2.0)
GRID = np.linspace(2.0, 30.0, 281)


def logistic(x: np.ndarray, mid: float = 15.0, width: float = 2.0) -> np.ndarray:
    return 0.02 + 0.95 / (1 + np.exp((x - mid) / width))


def analytic_crossing(h: float, mid: float = 15.0, width: float = 2.0) -> float:
    """Where the logistic equals h, solved in closed form."""
    return mid + width * np.log((0.95 / (h - 0.02)) - 1)


def test_first_crossing_of_known_curves():
    levels = np.linspace(0.0, 20.0, 201)
    line = 1.0 - levels / 20.0  # equals 0.8 at exactly 4
    never = np.full_like(levels, 0.9)
    below = np.full_like(levels, 0.5)
    out = first_crossing(levels, np.column_stack([line, never, below]), 0.8)
    assert out[0] == pytest.approx(4.0)
    assert out[1] == np.inf and out[2] == -np.inf
    assert first_crossing(levels, logistic(levels), 0.8)[0] == pytest.approx(analytic_crossing(0.8), abs=0.01)


def test_boundary_recovers_an_analytic_curve_with_many_ratings():
    rng = np.random.default_rng(3)
    n = np.full(len(LEVELS), 400)
    k = rng.binomial(n, logistic(LEVELS))
    fit = fit_share(LEVELS, k, n, seed=0)
    b = boundary_of(fit, GRID, 0.8, seed=0)
    truth = analytic_crossing(0.8)
    assert b.status == "crosses"
    assert b.level == pytest.approx(truth, abs=0.6)
    assert b.interval[0] <= truth <= b.interval[1]
    assert b.interval[1] - b.interval[0] < 2.5  # 400 ratings a level pin it within a level step
    mean, _sd = fit.predict(LEVELS[:, None])
    assert np.abs(mean - logistic(LEVELS)).max() < 0.06


def test_interval_holds_the_true_boundary_when_ratings_are_many():
    """Coverage must not fall as ratings grow. 30 seeded sharp ground truths, 100 simulated-panel
    ratings at each of 15 levels: the 95 % interval holds the true boundary in 27 of 30. With the
    former RBF kernel the smoothed shoulder put the crossing early and tightened around it (20 of 30)."""
    rng = np.random.default_rng(2024)
    truths = [TrueCurve(float(b), width=float(w))
              for b, w in zip(rng.uniform(6, 24, 30), rng.uniform(1.5, 2.5, 30), strict=True)]
    spec = PanelSpec(inconsistency_spread=0.0)  # every rater typical: the crowd's share is the truth's
    grid = np.linspace(2.0, 30.0, 141)
    held = 0
    for i, truth in enumerate(truths):
        draw = np.random.default_rng(i)
        k = np.array([sample_faithful(truth, spec, lv, 100, draw) for lv in LEVELS])
        b = boundary_of(fit_share(LEVELS, k, np.full(len(LEVELS), 100), seed=0), grid, 0.8, seed=0)
        held += b.interval[0] <= truth.boundary <= b.interval[1]
    assert held >= 25


def test_fit_matches_scikit_learn_fitted_directly():
    """Same data, same kernel and noise, fitted by hand with scikit-learn: same posterior."""
    rng = np.random.default_rng(0)
    n = rng.integers(5, 30, len(LEVELS))
    k = rng.binomial(n, logistic(LEVELS))
    fit = fit_share(LEVELS, k, n, seed=1)
    x = (LEVELS - LEVELS.min()) / np.ptp(LEVELS)
    p = (k + 1) / (n + 2)
    gp = GaussianProcessRegressor(ConstantKernel(0.1, (1e-3, 1.0)) * Matern([0.5], (0.1, 10.0), nu=1.5),
                                  alpha=p * (1 - p) / n, n_restarts_optimizer=2, random_state=1)
    gp.fit(x[:, None], k / n - PRIOR_MEAN)
    xs = (GRID - LEVELS.min()) / np.ptp(LEVELS)
    ref_mean, ref_sd = gp.predict(xs[:, None], return_std=True)
    mean, sd = fit.predict(GRID[:, None])
    np.testing.assert_allclose(mean, ref_mean + PRIOR_MEAN, atol=1e-9)
    np.testing.assert_allclose(sd, ref_sd, atol=1e-9)
    # The LSE rule and Straddle, applied to scikit-learn's own posterior.
    want = ["usable" if m - 1.96 * s >= 0.8 else "not usable" if m + 1.96 * s < 0.8 else "uncertain"
            for m, s in zip(ref_mean + PRIOR_MEAN, ref_sd, strict=True)]
    assert classify(mean, sd, 0.8) == want
    assert {"usable", "not usable"} <= set(want)
    np.testing.assert_allclose(straddle(mean, sd, 0.8), 1.96 * ref_sd - np.abs(ref_mean + PRIOR_MEAN - 0.8))
    # Straddle's best candidate is scikit-learn's argmax of the same formula.
    (best, score), *_ = propose(fit, GRID[:, None], 0.8, 3)
    j = int(np.argmax(1.96 * ref_sd - np.abs(ref_mean + PRIOR_MEAN - 0.8)))
    assert best[0] == GRID[j]
    assert score == pytest.approx(1.96 * ref_sd[j] - abs(ref_mean[j] + PRIOR_MEAN - 0.8))


def test_proposals_are_spread_and_near_the_boundary():
    rng = np.random.default_rng(1)
    n = np.full(len(LEVELS), 10)
    fit = fit_share(LEVELS, rng.binomial(n, logistic(LEVELS)), n)
    picks = propose(fit, GRID[:, None], 0.8, 3, min_gap=0.05)
    levels = sorted(float(c[0]) for c, _s in picks)
    assert len(levels) == 3 and min(np.diff(levels)) > 0.05 * 28
    assert abs(float(picks[0][0][0]) - analytic_crossing(0.8)) < 4.0


def _frame(rows: list[tuple[str, dict, str, float, int, str]]) -> pd.DataFrame:
    """Long-format rows: (restorer, params, kind, level, score, rater)."""
    return pd.DataFrame([{
        "item": f"{r}-{json.dumps(p)}-{k}-{lv}-{i % 3}", "rater": rater, "score": score, "restorer": r,
        "restorer_params": json.dumps(p), "strength": p.get("strength"), "blur_kind": k,
        "blur_level": lv, "is_smoke_test": False, "simulated": rater.startswith("sim-"),
    } for i, (r, p, k, lv, score, rater) in enumerate(rows)])


def _panel_rows(restorer: str, params: dict, truth: TrueCurve, levels, raters: int, rng,
                prefix: str = "sim-") -> list:
    spec = PanelSpec()
    from review.labeling.simulated_panel import draw_raters

    panel = draw_raters(spec, raters, rng)
    rows = []
    for lv in levels:
        psi = item_quality(truth, spec, np.full(3, lv), rng, params.get("strength"))
        scores = rate(psi, panel, spec, rng)
        rows += [(restorer, params, "motion_line", float(lv), int(s), f"{prefix}{j}")
                 for row in scores for j, s in enumerate(row)]
    return rows


def test_study_answer_per_restorer_with_words_exports_and_simulated_switch():
    rng = np.random.default_rng(7)
    rows = _panel_rows("wiener", {"balance": 0.01, "pad_mode": "reflect"}, TrueCurve(12.0), LEVELS, 12, rng)
    rows += _panel_rows("richardson_lucy", {"iterations": 30}, TrueCurve(20.0), LEVELS, 4, rng, "real-")
    rows += [("hidden_reference", {}, "motion_line", 6.0, 5, "real-0"),
             ("hidden_reference", {}, "motion_line", 9.0, 5, "real-0")]
    df = _frame(rows)
    answer = study_answer(df, "S")
    assert [(c.restorer, c.setting) for c in answer.curves] == [("richardson_lucy", "iterations=30"),
                                                               ("wiener", "")]
    wiener = answer.curves[1]
    b = wiener.boundaries[0]
    assert b.status == "crosses" and abs(b.level - 12.0) < 2.0 and b.interval[0] < b.level < b.interval[1]
    # Observed shares and their Wilson intervals are the counts' own.
    at6 = next(s for s in wiener.stats if s.level == 6.0)
    sub = df[(df["restorer"] == "wiener") & (df["blur_level"] == 6.0)]
    assert at6.ratings == len(sub) == 36 and at6.faithful == int((sub["score"] >= 4).sum())
    assert at6.share_ci == wilson_ci(at6.faithful, at6.ratings)
    assert at6.mos == pytest.approx(sub["score"].mean())
    assert wiener.simulated_ratings == wiener.ratings == 36 * len(LEVELS)
    md = answer_markdown(answer)
    assert f"Wiener deconvolution stays faithful (>= 80 % of restorations rated 4 or more) up to about " \
           f"{b.level:.1f}".rstrip("0").rstrip(".") in md
    assert "95 % interval" in md and "next levels to rate" in md
    data = json.loads(answer_json(answer))
    assert data == json.loads(json.dumps(answer_dict(answer)))
    wj = data["curves"][1]["by_strength"][0]
    assert wj["boundary"] == pytest.approx(b.level) and len(wj["gp_mean"]) == len(wj["grid"])
    table = curves_frame(answer)
    assert len(table) == 2 * len(LEVELS)
    assert set(table["level_class"]) <= {"usable", "uncertain", "not usable"}
    assert answer_csv(answer).decode().startswith("restorer,setting,blur_kind,strength,blur_level")
    # Leaving the simulated panel out leaves only the real raters' curve.
    real_only = study_answer(df, "S", include_simulated=False)
    assert [c.restorer for c in real_only.curves] == ["richardson_lucy"] and real_only.simulated_ratings == 0
    # A stricter threshold moves the boundary down.
    strict = study_answer(df, "S", Options(threshold=0.9)).curves[1].boundaries[0]
    assert strict.level is None or strict.level < b.level


def test_two_dimensional_surface_for_strengths():
    rng = np.random.default_rng(11)
    truth = TrueCurve(20.0, width=3.0, strength_slope=25.0, reference_strength=0.2)  # 20 px at 0.2, 10 at 0.6
    rows = []
    for strength in (0.2, 0.4, 0.6):
        rows += _panel_rows("sd15_img2img", {"strength": strength, "seed": 1}, truth, LEVELS, 10, rng)
    curves = curves_of(_frame(rows))
    assert len(curves) == 1
    c = curves[0]
    assert c.strengths == [0.2, 0.4, 0.6]
    found = [b.level for b in c.boundaries]
    want = [truth.boundary_at(s) for s in c.strengths]
    assert found == sorted(found, reverse=True)
    assert all(abs(f - w) < 3.0 for f, w in zip(found, want, strict=True))
    assert all("strength" in p for p in c.proposals)
    md = answer_markdown(study_answer(_frame(rows), "S"))
    assert "SD1.5 img2img at strength 0.6 stays faithful" in md


def test_edge_cases_read_plainly():
    always = _frame([("wiener", {}, "defocus", lv, 5, f"r{j}") for lv in (1.0, 2.0, 3.0) for j in range(20)])
    never = _frame([("blurred", {}, "defocus", lv, 1, f"r{j}") for lv in (1.0, 2.0, 3.0) for j in range(20)])
    a = study_answer(always, "S").curves[0]
    assert a.boundaries[0].status == "usable throughout" and a.boundaries[0].level is None
    assert "at every level studied" in answer_markdown(study_answer(always, "S"))
    n = study_answer(never, "S").curves[0]
    assert n.boundaries[0].status == "not usable even at the smallest level"
    assert "rate smaller blur" in answer_markdown(study_answer(never, "S"))
    one_level = _frame([("wiener", {}, "defocus", 1.0, 5, "r")])
    assert "No answer yet" in answer_markdown(study_answer(one_level, "S"))
    assert study_answer(pd.DataFrame(), "S").curves == []
    with pytest.raises(ValueError, match="threshold"):
        Options(threshold=1.0)


def test_html_report_states_the_answer_and_flags_simulated_ratings():
    from review.analysis.html_report import html_report
    from review.analysis.report import build_report

    rng = np.random.default_rng(5)
    df = _frame(_panel_rows("wiener", {}, TrueCurve(12.0), LEVELS, 6, rng))
    answer = study_answer(df, "S")
    page = html_report(build_report(df), [], title="R", answer=answer)
    assert "<h2 id='answer'>How far can it go?</h2>" in page
    assert "Wiener deconvolution stays faithful" in page
    assert f"{answer.ratings} of these {answer.ratings} ratings come from a SIMULATED panel" in page
    assert "How far can it go?" not in html_report(build_report(df), [], title="R")
