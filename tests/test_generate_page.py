"""The admin Generate page through AppTest: a plan started from the form runs in a background
worker process and lands in the study; reviewers are stopped."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from db.models import GenerationJob, Restoration, StudyItem
from review.labeling.study import StudyConfig, ensure_study
from review.media import catalog
from tests.support import wait_until
from tests.support_app import page_app, page_user


@pytest.mark.slow
def test_start_a_plan_from_the_form_and_watch_it_finish(lab):
    arr = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)
    with lab.sessions() as s, s.begin():
        catalog.add_source(s, lab.store, Image.fromarray(arr), title="noise", content="object")
        ensure_study(s, StudyConfig(name="gen"), None)
    at = page_app("generate_page", page_user("admin")).run()
    assert not at.exception, at.exception
    assert any("not configured" in i.value for i in at.info)  # SD1.5 status said plainly
    at.text_input(key="lv_defocus").set_value("2")
    at.multiselect[1].set_value(["wiener", "blurred"])
    at.button[0].click().run()  # "Start generation" (the form's submit button)
    assert not at.exception, at.exception
    assert any("started in the background" in m.value for m in at.success)

    def finished_status() -> str | None:
        with lab.sessions() as s:
            status = s.scalar(select(GenerationJob.status))
        return status if status in ("done", "failed", "cancelled") else None

    assert wait_until(finished_status, timeout=90, what="the background job to finish") == "done"
    with lab.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Restoration)) == 2
        assert s.scalar(select(func.count()).select_from(StudyItem)) == 2


def test_a_photo_that_arrived_blurred_is_planned_as_it_is(lab):
    arr = (np.random.default_rng(1).random((48, 64, 3)) * 255).astype(np.uint8)
    with lab.sessions() as s, s.begin():
        blurred = catalog.add_blurred_photo(s, lab.store, Image.fromarray(arr), title="shaky",
                                            content="object").id
        ensure_study(s, StudyConfig(name="gen"), None)
    at = page_app("generate_page", page_user("admin")).run()
    assert not at.exception, at.exception
    sources = at.multiselect[0]
    assert sources.format_func(blurred).endswith("64x48, arrived blurred)")
    sources.set_value([blurred])
    at.text_input(key="lv_defocus").set_value("")
    at.multiselect[1].set_value(["wiener", "blurred"])
    at.checkbox(key="lv_real").check()
    at.button[0].click().run()
    assert "wiener needs the blur kernel" in at.error[0].value and _jobs(lab) == 0
    at.multiselect[1].set_value(["blurred"])
    at.button[0].click().run()
    assert not at.exception and any("started in the background" in m.value for m in at.success)
    assert _jobs(lab) == 1


def test_reviewers_are_stopped(lab):
    at = page_app("generate_page", page_user("reviewer")).run()
    assert any("only available to admins" in e.value for e in at.error)


def _one_source(lab):
    arr = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)
    with lab.sessions() as s, s.begin():
        catalog.add_source(s, lab.store, Image.fromarray(arr), title="noise", content="object")
        ensure_study(s, StudyConfig(name="gen"), None)


def _jobs(lab) -> int:
    with lab.sessions() as s:
        return s.scalar(select(func.count()).select_from(GenerationJob))


def test_plan_form_refuses_bad_input_before_starting_anything(lab):
    _one_source(lab)
    at = page_app("generate_page", page_user("admin")).run()
    assert not at.exception, at.exception
    restorers = at.multiselect[1]
    # no SD1.5 weights here: not in the default plan, and labelled with what it needs
    assert "sd15_img2img" not in restorers.value and "wiener" in restorers.value
    assert "sd15_img2img (needs SD1.5 weights or the tiny smoke test)" in restorers.options
    at.text_input(key="lv_defocus").set_value("5, xyz")
    at.text_input(key="lv_gaussian").set_value("2")
    at.button[0].click().run()
    assert not at.exception, at.exception
    (error,) = at.error
    assert "nothing was started" in error.value and "defocus: 'xyz' is not a number" in error.value
    assert not at.success and _jobs(lab) == 0
    # SD1.5 asked for with no weights: refused with the fix, nothing started
    at.text_input(key="lv_defocus").set_value("5")
    at.multiselect[1].set_value(["sd15_img2img", "wiener"])
    at.text_input[-1].set_value("0, one")  # seeds
    at.button[0].click().run()
    text = at.error[0].value
    assert "Seeds: 'one' is not a whole number" in text
    assert "sd15_img2img cannot run: SD1.5 weights are not configured: set REVIEW_SD15_PATH" in text
    assert _jobs(lab) == 0


def _png(seed: int) -> bytes:
    import io

    out = io.BytesIO()
    arr = (np.random.default_rng(seed).random((40, 40, 3)) * 255).astype(np.uint8)
    Image.fromarray(arr).save(out, format="PNG")
    return out.getvalue()


def test_uploads_ask_content_per_photo_need_a_note_and_spot_duplicates(lab):
    from db.models import SourceImage

    _one_source(lab)
    at = page_app("generate_page", page_user("admin")).run()
    at.file_uploader(key="gen_upload").set_value([("face.png", _png(1), "image/png"),
                                                  ("sign.png", _png(2), "image/png")]).run()
    assert not at.exception, at.exception
    face, sign = at.selectbox(key="gen_content_0_face.png"), at.selectbox(key="gen_content_1_sign.png")
    assert face.value is None and sign.value is None  # asked, not defaulted to "face"
    face.select("face")
    at.button(key="gen_add").click().run()
    assert at.error[0].value == "Choose the content of sign.png; nothing was added."
    at.selectbox(key="gen_content_1_sign.png").select("text")
    at.button(key="gen_add").click().run()
    assert at.error[0].value == "Write the source / consent note; nothing was added."
    with lab.sessions() as s:
        assert s.scalar(select(func.count()).select_from(SourceImage)) == 1
    at.text_input(key="gen_licence").set_value("own photos, consent on file")
    at.button(key="gen_add").click().run()
    assert [m.value.split(":")[0] for m in at.success] == ["face.png", "sign.png"]
    with lab.sessions() as s:
        rows = {r.title: (r.content, r.licence) for r in s.scalars(select(SourceImage))}
    assert rows["face.png"] == ("face", "own photos, consent on file") and rows["sign.png"][0] == "text"
    # the same file again (under another name): already there, nothing added or changed
    at.file_uploader(key="gen_upload").set_value([("again.png", _png(1), "image/png")]).run()
    at.selectbox(key="gen_content_0_again.png").select("scene")
    at.button(key="gen_add").click().run()
    assert not at.success and "again.png: already in the catalog as source #2 (face.png)" in at.info[-1].value
    with lab.sessions() as s:
        assert s.scalar(select(func.count()).select_from(SourceImage)) == 3


def test_item_errors_are_plain_words_with_the_fix(settings):
    from skimage.metrics import structural_similarity

    from review.media.restore import WeightsError
    from review.media.restore.runner import plain_error, sd15_unavailable

    with pytest.raises(ValueError) as raised:  # the library's own error, as a restorer meets it
        structural_similarity(np.zeros((5, 5)), np.zeros((5, 5)), data_range=1.0)
    assert "win_size exceeds image extent" in str(raised.value)
    assert plain_error(raised.value).startswith("The image is too small for the SSIM score (at least 7 x 7")
    assert plain_error(WeightsError("REVIEW_SD15_PATH is not set")) == "REVIEW_SD15_PATH is not set"
    assert plain_error(RuntimeError("CUDA out of memory. Tried to allocate")).startswith("The GPU ran out")
    assert plain_error(KeyError("x")) == "KeyError: 'x'"  # unknown: nothing hidden
    assert sd15_unavailable(settings).startswith("SD1.5 weights are not configured")
    assert sd15_unavailable(settings, "tiny") is None
    assert "neither a model" in sd15_unavailable(settings, "/no/such/model")
