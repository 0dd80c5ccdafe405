"""Try your photo: upload a blurry photo, see its blur level in the study's units, the classical
baselines' restorations of it side by side, and what the study found at that level. The photo is
decoded as every upload is (review.media.decode) and never stored."""

from __future__ import annotations

import streamlit as st

from review.analysis.answer import Answer, study_answer
from review.analysis.export import ratings_fingerprint, ratings_frame
from review.analysis.try_photo import Calibration, calibrate, findings_at, measure, restore_photo
from review.database import Lab
from review.errors import ReviewError
from review.labeling.study import list_studies, study_by_id
from review.media.decode import decode_image
from review.media.restore.runner import sd15_status
from review.ui.common import SessionUser

KEY = "try_"
ROLES = ("admin", "qa")


@st.cache_data(show_spinner="Calibrating on the study's blurred images…", max_entries=8, ttl=600)
def _calibration(db: str, study_id: int, _lab: Lab) -> dict[str, Calibration]:
    with _lab.read() as s:
        return calibrate(s, study_by_id(s, study_id), _lab.store.open_image)


@st.cache_data(show_spinner="Fitting the study's answer…", max_entries=8)
def _answer(db: str, study_id: int, fingerprint: tuple[int, ...], _lab: Lab) -> Answer:
    with _lab.read() as s:
        study = study_by_id(s, study_id)
        return study_answer(ratings_frame(s, study), study.name)


def render(lab: Lab, user: SessionUser) -> None:
    """The try-your-photo page."""
    if user.role not in ROLES:
        st.error("Try your photo is only available to admins and QA.")
        st.stop()
    st.title("Try your photo")
    st.caption("Your photo is measured and restored here, and is not added to any study.")
    with lab.read() as s:
        studies = {x.id: x.name for x in list_studies(s)}
    if not studies:
        st.info("No studies yet: the blur level is measured in a study's units.")
        return
    study_id = st.selectbox("Compare with study", list(studies), format_func=studies.get, key=f"{KEY}study")
    db = lab.engine.url.render_as_string(hide_password=True)
    calibrations = _calibration(db, study_id, lab)
    if not calibrations:
        st.info("This study has no blur kind with images at two or more blur levels to calibrate on.")
        return
    kind = st.selectbox("Kind of blur", list(calibrations), key=f"{KEY}kind")
    cal = calibrations[kind]
    upload = st.file_uploader("A blurry photo", type=None, key=f"{KEY}upload")
    if upload is None:
        return
    try:
        photo = decode_image(upload.getvalue())
    except ReviewError as exc:
        st.error(f"{upload.name}: {exc}")
        return
    value = measure(photo, cal.side)
    level, lo, hi = cal.estimate(value)
    st.metric("Estimated blur", f"about {level:.1f} px", help=f"blur_effect {value:.3f}")
    st.caption(f"95 % interval {lo:.1f}-{hi:.1f} px of {kind}, in pixels of the study's images "
               f"({cal.side} px on the longer side; your photo is scaled to that size). Calibrated on "
               f"{len(cal.levels)} of the study's blurred images with scikit-image's blur_effect; the "
               "measure also depends on what the photo shows, so read it as a rough guide.")
    st.subheader("What the study found at that blur")
    with lab.read() as s:
        fingerprint = ratings_fingerprint(s, study_id)
    found = findings_at(_answer(db, study_id, fingerprint, lab), kind, level)
    for line in found or ["No restorer of this study has ratings at two or more levels of this blur yet."]:
        st.markdown(f"- {line}")
    st.subheader("Restorations")
    st.caption("Classical baselines (Wiener deconvolution), each assuming the study's blur recipe at "
               "the estimated level and at the interval's ends; the real blur's shape is unknown. "
               f"SD1.5 img2img is not run on this page ({sd15_status(lab.settings)}).")
    panels = restore_photo(photo, cal, sorted({round(lo, 1), round(level, 1), round(hi, 1)}))
    with st.container(horizontal=True, gap="medium"):
        for caption, image in panels:
            st.image(image, caption=caption)
