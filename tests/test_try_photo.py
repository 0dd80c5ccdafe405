"""Try your photo: the blur_effect -> level calibration (review.analysis.try_photo) on a known
frame and on the demo's simulated study, and the page with a real upload."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from skimage.measure import blur_effect
from sqlalchemy import func, select

from db.models import DegradedImage, SourceImage, User
from review.analysis.answer import study_answer
from review.analysis.export import ratings_frame
from review.analysis.try_photo import (
    DEFAULT_SD15_STRENGTHS,
    access_refusal,
    add_to_catalog,
    calibrate,
    findings_at,
    fit_calibration,
    measure,
    open_work,
    sd15_recipe,
)
from review.database import Lab
from review.demo import SIMULATED_STUDY, sample_image
from review.jobs import GenerationPlan, create_job, run_job
from review.labeling.assignment import next_assignment
from review.labeling.settings import update_settings
from review.labeling.study import add_item, close_study, get_study
from review.labeling.views import study_outputs
from review.media import catalog
from review.media.catalog import PhotoError
from review.media.degrade import BlurSpec, degrade
from review.media.restore.runner import resolve_params
from tests.support import build_study
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
    assert f"Classical baseline: Wiener deconvolution, assuming {round(level, 1):.1f} px" in shown
    assert at.info[0].value == ("SD1.5 img2img is not shown, only the classical baselines: SD1.5 weights "
                                "are not configured: set REVIEW_SD15_PATH to a local SD1.5 .safetensors/"
                                ".ckpt file or diffusers folder, or choose the tiny smoke-test model.")
    assert not any(b.key == "try_run_sd15" for b in at.button)
    assert "Only admins add photos to the catalog" in shown and not at.text_input  # QA cannot add
    assert len(at.get("image")) == 1 + len({round(lo, 1), round(level, 1), round(hi, 1)})
    at.file_uploader(key="try_upload").set_value([("bad.png", b"not an image", "image/png")]).run()
    assert at.error and at.error[0].value.startswith("bad.png: ")


def _uid(lab: Lab, username: str) -> int:
    with lab.read() as s:
        return s.scalar(select(User.id).where(User.username == username))


def test_reviewer_gets_the_page_once_no_open_study_has_work_for_them(lab: Lab):
    sid = build_study(lab, 1, raters_per_item=1)
    alice, bob = _uid(lab, "alice"), _uid(lab, "bob")
    with lab.write() as s:
        assert open_work(s, alice) == ["Portraits"] and open_work(s, bob) == ["Portraits"]
        assert access_refusal(s, alice, "reviewer").startswith(
            "Try your photo opens once you have no rating work left (still open for you: Portraits)")
        assert access_refusal(s, alice, "admin") is None and access_refusal(s, alice, "qa") is None
        assert next_assignment(s, get_study(s, "Portraits"), alice) is not None  # the only slot
    with lab.write() as s:
        assert open_work(s, alice) == ["Portraits"]  # her live lease is work left
        assert open_work(s, bob) == [] and access_refusal(s, bob, "reviewer") is None  # item is full
    with lab.write() as s:
        close_study(s, sid)
    with lab.write() as s:
        assert open_work(s, alice) == [] and access_refusal(s, alice, "reviewer") is None
    build_study(lab, 2, name="Landscapes")  # another open study, which lists only bob
    with lab.write() as s:
        assert open_work(s, alice) == ["Landscapes"]
        update_settings(get_study(s, "Landscapes"), reviewer_ids=[bob])
    with lab.write() as s:
        assert open_work(s, alice) == [] and open_work(s, bob) == ["Landscapes"]


def test_reviewer_page_waits_then_opens(lab: Lab):
    build_study(lab, 1, raters_per_item=1)
    alice = _uid(lab, "alice")
    at = page_app("try_photo_page", page_user("reviewer", uid=alice, username="alice")).run()
    assert at.error[0].value.startswith("Try your photo opens once you have no rating work left")
    assert not at.title and not at.get("file_uploader")
    with lab.write() as s:
        close_study(s, get_study(s, "Portraits").id)
    at.run()
    assert not at.error and at.title[0].value == "Try your photo"


def test_sd15_recipe_is_the_studys_own(lab: Lab):
    build_study(lab, 2)
    with lab.write() as s:
        study = get_study(s, "Portraits")
        assert sd15_recipe(s, study) == (list(DEFAULT_SD15_STRENGTHS), resolve_params("sd15_img2img"))
        degraded = s.scalars(select(DegradedImage).order_by(DegradedImage.id)).first()
        for strength in (0.6, 0.35):
            params = resolve_params("sd15_img2img", {"strength": strength, "steps": 10, "seed": 3})
            row = catalog.add_restoration(s, lab.store, degraded, "sd15_img2img", params,
                                          lab.store.open_image(degraded.path), {}, {})
            add_item(s, study, row)
    with lab.write() as s:
        strengths, base = sd15_recipe(s, get_study(s, "Portraits"))
    assert strengths == [0.35, 0.6] and base["steps"] == 10 and base["seed"] == 0


def _sources(lab: Lab) -> int:
    with lab.read() as s:
        return s.scalar(select(func.count()).select_from(SourceImage))


def test_admin_adds_the_photo_once_and_others_cannot(lab: Lab):
    photo = degrade(sample_image("chelsea", 160), BlurSpec("defocus", 3.0)).image
    with lab.write() as s, pytest.raises(PhotoError, match="Only admins add photos"):
        add_to_catalog(s, lab.store, photo, role="qa", title="cat.png", licence="mine", content="object")
    with lab.write() as s, pytest.raises(PhotoError, match="source / consent note"):
        add_to_catalog(s, lab.store, photo, role="admin", title="cat.png", licence=" ", content="object")
    assert _sources(lab) == 0
    with lab.write() as s:
        row, new = add_to_catalog(s, lab.store, photo, role="admin", title="cat.png", licence="mine",
                                  content="object")
        assert new and not row.is_reference and row.origin == "upload"
        assert [(d.kind, d.level) for d in s.scalars(select(DegradedImage))] == [("real", None)]
        source_id = row.id
    # An admin can then put it in a study through a generation plan (its blur: "real", as it is).
    build_study(lab, 1)
    plan = GenerationPlan(source_ids=[source_id], blurs=[{"kind": "real", "level": None}],
                          restorers=[{"method": "blurred"}])
    job = create_job(lab, "Portraits", plan)
    run_job(lab, job)
    with lab.read() as s:
        items = study_outputs(s, get_study(s, "Portraits").id)
        assert [(o.blur_kind, o.reference) for o in items if o.method == "blurred"] == [("real", None)]


def test_page_adds_to_the_catalog_only_when_an_admin_asks(simulated_demo: Lab):
    before = _sources(simulated_demo)
    at = page_app("try_photo_page", page_user("admin")).run()
    photo = degrade(sample_image("chelsea", 200), BlurSpec("camera_shake", 10.0, seed=3)).image
    at.file_uploader(key="try_upload").set_value([("cat.png", _png(photo), "image/png")]).run()
    assert _sources(simulated_demo) == before  # trying stores nothing
    at.button(key="try_add").click().run()
    assert at.error[0].value == "cat.png: choose the content of the photo; nothing was added."
    at.selectbox(key="try_content").set_value("object")
    at.button(key="try_add").click().run()
    assert at.error[0].value.startswith("cat.png: Write the source / consent note")
    at.text_input(key="try_licence").input("taken by me, may be shown to reviewers")
    at.button(key="try_add").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert _sources(simulated_demo) == before + 1
    with simulated_demo.read() as s:
        new_id = s.scalar(select(func.max(SourceImage.id)))
        assert s.get(SourceImage, new_id).licence == "taken by me, may be shown to reviewers"
    assert at.success[0].value == f"cat.png: added as source #{new_id} ({photo.width}x{photo.height})."
    at.button(key="try_add").click().run()
    assert at.info[-1].value == (f"cat.png: already in the catalog as source #{new_id} (cat.png); "
                                 "nothing added.")
    assert _sources(simulated_demo) == before + 1


@pytest.mark.sd15
@pytest.mark.usefixtures("one_torch_thread")
def test_page_runs_sd15_on_request_labelled_by_strength(simulated_demo: Lab, models_dir: Path,
                                                        monkeypatch: pytest.MonkeyPatch):
    shutil.copytree(models_dir / "tiny_sd15", simulated_demo.settings.models_dir / "tiny_sd15")
    monkeypatch.setenv("REVIEW_SD15_PATH", "tiny")
    at = page_app("try_photo_page", page_user("qa", username="quinn")).run()
    photo = degrade(sample_image("chelsea", 256), BlurSpec("camera_shake", 16.0, seed=3)).image
    at.file_uploader(key="try_upload").set_value([("mine.png", _png(photo), "image/png")]).run()
    assert not at.exception, [e.value for e in at.exception]
    baselines = len(at.get("image"))
    labels = [f"SD1.5 img2img, strength {x:g} (tiny smoke-test model, not a restoration)"
              for x in DEFAULT_SD15_STRENGTHS]  # the simulated study has no SD1.5 restorations
    assert not any(label in texts(at) for label in labels)  # nothing runs before the button
    at.button(key="try_run_sd15").click().run()
    assert not at.exception, [e.value for e in at.exception]
    images = at.get("image")
    assert len(images) == baselines + 3
    assert [c for im in images for c in im.captions][-3:] == labels
    at.run()  # kept for the session: shown again without the button or another run
    assert len(at.get("image")) == baselines + 3
    assert not any(b.key == "try_run_sd15" for b in at.button)
