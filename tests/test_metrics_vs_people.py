"""Objective metrics against people (review.answer.metrics_vs_people), checked against
scikit-image and scipy called directly, on the demo's simulated study and on a known frame."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from skimage.measure import blur_effect
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from review.analysis.export import ratings_frame
from review.answer.metrics_vs_people import compare, metrics_vs_people, spearman_ci
from review.database import Lab
from review.demo import SIMULATED_STUDY, seed_simulated_demo
from review.labeling.guidelines.files import GUIDELINES_DIR, authored_dir, sync_all
from review.labeling.study import get_study


def test_spearman_interval_is_fisher_z_around_scipy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=30)
    y = x + rng.normal(size=30)
    rho, lo, hi, p = spearman_ci(x, y)
    ref = spearmanr(x, y)
    assert rho == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)
    half = 1.96 * math.sqrt(1.06 / 27)
    assert (lo, hi) == pytest.approx((math.tanh(math.atanh(rho) - half), math.tanh(math.atanh(rho) + half)))
    assert all(math.isnan(v) for v in spearman_ci(x[:3], y[:3]))


def test_disagreements_find_the_item_ranked_against_people():
    items = pd.DataFrame({"item": [1, 2, 3, 4, 5], "restorer": "wiener", "mos": [1.0, 2.0, 3.0, 4.0, 5.0],
                          "psnr": [10.0, 20.0, 30.0, 40.0, 5.0], "ssim": [0.1, 0.2, 0.3, 0.4, 0.5],
                          "blur_effect": [0.9, 0.8, 0.7, 0.6, 0.5]})
    out = compare(items, k=1)
    corr = out.correlations.set_index("metric")
    assert corr.loc["ssim", "rho"] == pytest.approx(1.0)
    assert corr.loc["blur_effect", "rho"] == pytest.approx(-1.0)
    assert corr.loc["psnr", "rho"] == pytest.approx(spearmanr(items["psnr"], items["mos"]).statistic)
    # Item 5: the best by people, the worst by PSNR.
    assert out.disagreements[["item", "metric"]].values.tolist() == [[5, "psnr"]]
    assert out.disagreements["gap"].iloc[0] == pytest.approx(0.8)


def test_study_metrics_match_scikit_image_and_scipy(lab: Lab):
    with lab.sessions() as s, s.begin():
        sync_all(s, GUIDELINES_DIR, authored_dir(lab.settings.data_dir))
    seed_simulated_demo(lab)
    with lab.sessions() as s:
        study = get_study(s, SIMULATED_STUDY)
        df = ratings_frame(s, study)
        out = metrics_vs_people(s, study, df, lab.store.open_image)
    items = out.items
    assert len(items) == 32 and set(items["restorer"]) == {"wiener", "blurred"}  # no hidden reference
    row = items.iloc[0]
    ref = np.asarray(lab.store.open_image(row["source_path"]).convert("RGB"))
    res_img = lab.store.open_image(row["restored_path"])
    res = np.asarray(res_img.convert("RGB"))
    assert row["psnr"] == pytest.approx(peak_signal_noise_ratio(ref, res, data_range=255))
    assert row["ssim"] == pytest.approx(structural_similarity(ref, res, channel_axis=2, data_range=255))
    assert row["blur_effect"] == pytest.approx(blur_effect(np.asarray(res_img.convert("L"), float) / 255))
    assert row["mos"] == pytest.approx(df[df["item"] == row["item"]]["score"].mean())
    wiener = items[items["restorer"] == "wiener"]
    got = out.correlations.set_index(["restorer", "metric"]).loc[("wiener", "ssim")]
    assert got["n"] == 16 and got["rho"] == pytest.approx(spearmanr(wiener["ssim"], wiener["mos"]).statistic)
    assert got["lo"] < got["rho"] < got["hi"]
    # The blurred input's sharpness tracks people: more blur, lower blur_effect rank, lower MOS.
    blurred = out.correlations.set_index(["restorer", "metric"]).loc[("blurred", "blur_effect")]
    assert blurred["rho"] < -0.5 and blurred["hi"] < 0
    assert len(out.disagreements) == 6 and out.disagreements["gap"].is_monotonic_decreasing
