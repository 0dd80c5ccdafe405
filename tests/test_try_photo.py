"""Try your photo: the blur_effect -> level calibration (review.analysis.try_photo) on a known
frame and on the demo's simulated study, and the page with a real upload."""

from __future__ import annotations

import io

import numpy as np
import pytest
from skimage.measure import blur_effect

from review.analysis.answer import study_answer
from review.analysis.export import ratings_frame
from review.analysis.try_photo import calibrate, findings_at, fit_calibration, measure
from review.database import Lab
from review.demo import SIMULATED_STUDY, sample_image
from review.labeling.study import get_study
from review.media.degrade import BlurSpec, degrade
from tests.support_app import page_app, page_user, texts


def test_calibration_inverts_a_monotone_measure_with_its_spread():
    cal = fit_calibration("defocus", np.array([2.0, 4.0, 6.0, 8.0]), np.array([0.3, 0.4, 0.5, 0.6]), 64, {})
    level, lo, hi = cal.estimate(0.45)
    assert level == pytest.approx(5.0)  # linear between the calibration points
    assert cal.spread == pytest.approx(1.0)  # an exact fit: half the level step
    assert (lo, hi) == pytest.approx((5.0 - 1.96, 5.0 + 1.96))
    assert cal.estimate(0.9) == pytest.approx((8.0, 6.04, 8.0))  # clipped to the studied range


def test_study_calibration_orders_new_photos_by_blur(simulated_demo: Lab):
    with simulated_demo.sessions() as s:
        study = get_study(s, SIMULATED_STUDY)
        cals = calibrate(s, study, simulated_demo.store.open_image)
        answer = study_answer(ratings_frame(s, study), study.name)
    cal = cals["camera_shake"]
    assert list(cals) == ["camera_shake"] and cal.side == 128 and len(cal.levels) == 16
    assert cal.recipe["seed"] == 7
    # The measure itself is scikit-image's, at the study's size.
    photo = sample_image("chelsea", 512)
    small = np.asarray(photo.convert("L").resize((128, 97)), dtype=float) / 255
    assert measure(photo, 128) == pytest.approx(blur_effect(small), abs=0.03)
    estimates = [cal.estimate(measure(degrade(sample_image("chelsea", 128), BlurSpec("camera_shake", lv,
                                                                                     seed=7)).image, 128))
                 for lv in (4.0, 8.0, 12.0)]
    assert [round(e[0], 1) for e in estimates] == sorted(round(e[0], 1) for e in estimates)
    assert estimates[0][0] < estimates[2][0] and all(lo <= lv <= hi for lv, lo, hi in estimates)
    lines = findings_at(answer, "camera_shake", 12.0)
    wiener = next(c for c in answer.curves if c.restorer == "wiener")
    at12 = next(st for st in wiener.stats if st.level == 12.0)
    assert any(line.startswith("At about 12.0 px of camera shake, people rated Wiener deconvolution "
                               "faithful") and f"{at12.faithful} of {at12.ratings} ratings" in line
               for line in lines)


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def test_page_estimates_restores_and_refuses_a_bad_file(simulated_demo: Lab):
    at = page_app("try_photo_page", page_user("qa", username="quinn")).run()
    assert not at.exception, [e.value for e in at.exception]
    photo = degrade(sample_image("chelsea", 256), BlurSpec("camera_shake", 16.0, seed=3)).image
    at.file_uploader(key="try_upload").set_value([("mine.png", _png(photo), "image/png")]).run()
    assert not at.exception, [e.value for e in at.exception]
    with simulated_demo.sessions() as s:
        cal = calibrate(s, get_study(s, SIMULATED_STUDY), simulated_demo.store.open_image)["camera_shake"]
    level, lo, hi = cal.estimate(measure(photo, 128))
    assert at.metric[0].value == f"about {level:.1f} px"
    shown = texts(at)
    assert "Wiener deconvolution faithful" in shown and "not added to any study" in shown
    assert "Your photo (at the study's size)" in shown
    assert f"Wiener deconvolution, assuming {round(level, 1):.1f} px" in shown
    assert len(at.get("image")) == 1 + len({round(lo, 1), round(level, 1), round(hi, 1)})
    at.file_uploader(key="try_upload").set_value([("bad.png", b"not an image", "image/png")]).run()
    assert at.error and at.error[0].value.startswith("bad.png: ")
