"""Try your photo: upload a blurry photo, see its blur level in the study's units (or "sharp", or
"not measurable" when it is too blurred to tell), restorations of it side by side (classical
baselines at once, SD1.5 img2img on request), and what the study found at that level, saying
whose ratings those are (people's or a simulated panel's; people's only on request). The photo
is decoded as every upload is (review.media.decode) and stored only when an admin adds it to the
catalog. Who may open the page: review.answer.try_photo.access_refusal."""

from __future__ import annotations

import hashlib
from typing import Any

import pandas as pd
import streamlit as st
from PIL import Image

from review.analysis.export import ratings_fingerprint, ratings_frame, ratings_in_use
from review.answer.blur_estimate import Calibration, calibrate, calibration_key
from review.answer.sentences import Answer, study_answer
from review.answer.try_photo import (
    access_refusal,
    add_to_catalog,
    findings_at,
    restore_levels,
    restore_photo,
    restore_photo_sd15,
    sd15_recipe,
)
from review.database import Lab
from review.errors import ReviewError
from review.labeling.study import list_studies, study_by_id
from review.media.catalog import CONTENT_TYPES
from review.media.decode import decode_image
from review.media.restore.runner import plain_error, sd15_unavailable
from review.policy import Action, may
from review.ui.common import SessionUser, run_action
from review.ui.display import inert
from review.ui.ratings_choice import ratings_choice

KEY = "try_"
PANELS_PER_ROW = 4  # ~210 px each in the main column at 1366 px
SD15_CACHE = f"{KEY}sd15_results"  # (photo sha256, study id, strength) -> (caption, image)


@st.cache_data(show_spinner="Calibrating: blurring the study's photos and 15 others at known levels…",
               max_entries=8)
def _calibration(db: str, study_id: int, key: str, _lab: Lab) -> dict[str, Calibration]:
    """Per study and `calibration_key` (a new blur level, recipe or photo calibrates again)."""
    with _lab.read() as s:
        return calibrate(s, study_by_id(s, study_id), _lab.store.open_image)


@st.cache_data(show_spinner="Fitting the study's answer…", max_entries=8)
def _answer(db: str, study_id: int, name: str, fingerprint: tuple[int, ...], include_simulated: bool,
            which: str, _lab: Lab) -> tuple[Answer, pd.DataFrame]:
    """The study's answer and the ratings it was fitted to (used ones or all, `which`)."""
    frame = _frame(db, study_id, fingerprint, _lab)
    return (study_answer(frame, name, include_simulated=include_simulated, which=which),
            ratings_in_use(frame, which))


@st.cache_data(show_spinner="Loading ratings…", max_entries=8)
def _frame(db: str, study_id: int, fingerprint: tuple[int, ...], _lab: Lab) -> pd.DataFrame:
    with _lab.read() as s:
        return ratings_frame(s, study_by_id(s, study_id))


def render(lab: Lab, user: SessionUser) -> None:
    """The try-your-photo page."""
    with lab.read() as s:
        refusal = access_refusal(s, user.id, user.role)
    if refusal is not None:
        st.error(refusal)
        st.stop()
    st.title("Try your photo")
    st.caption("Your photo is measured and restored here, and is not added to any study unless an "
               "admin adds it to the catalog below.")
    with lab.read() as s:
        studies = {x.id: x.name for x in list_studies(s)}
    if not studies:
        st.info("No studies yet: the blur level is measured in a study's units.")
        return
    study_id = st.selectbox("Compare with study", list(studies), format_func=studies.__getitem__,
                            key=f"{KEY}study")
    db = lab.engine.url.render_as_string(hide_password=True)
    with lab.read() as s:
        key = calibration_key(s, study_by_id(s, study_id))
    calibrations = _calibration(db, study_id, key, lab)
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
        st.error(inert(f"{upload.name}: {exc}"))
        return
    est = cal.estimate(photo)
    st.metric("Estimated blur", est.headline(), help="The median blur of the calibration images that "
              "measure most like your photo (how steep its steepest edges are against their contrast, "
              "and how far its gradients' autocorrelation spreads).")
    st.caption(f"{est.sentence()} In pixels of {kind} on the study's images ({cal.side} px on the "
               f"longer side; your photo is scaled to that size). Calibrated on {len(cal.bank_levels)} "
               "images of known blur (the study's photos and 15 others). Checked on the simulated demo "
               "study's calibration (bench/try_photo.py): on 80 photos unlike these, the interval held "
               "the true blur in 90 % and a level given was off by 5.2 px on average: read it as a "
               "rough guide.")
    st.subheader("What the study found at that blur")
    with lab.read() as s:
        fingerprint = ratings_fingerprint(s, study_id)
    which = ratings_choice(_frame(db, study_id, fingerprint, lab), f"{KEY}ratings_{study_id}")
    answer, frame = _answer(db, study_id, studies[study_id], fingerprint, True, which, lab)
    simulated = int(frame["simulated"].astype(bool).sum()) if "simulated" in frame else 0
    if simulated:
        st.caption(f"{simulated} of this study's {len(frame)} ratings come from a simulated panel "
                   "(simulated raters, not people); each finding below says whose ratings it rests on.")
        if st.toggle("Only people's ratings", key=f"{KEY}people_only",
                     help="Leave the simulated panel's ratings out of the findings below."):
            answer, frame = _answer(db, study_id, studies[study_id], fingerprint, False, which, lab)
    found = findings_at(answer, kind, est.level, frame)
    empty = ("No restorer of this study has people's ratings at two or more levels of this blur yet."
             if not answer.include_simulated else
             "No restorer of this study has ratings at two or more levels of this blur yet.")
    for line in found or [empty]:
        st.markdown(f"- {inert(line)}")
    st.subheader("Restorations")
    st.caption("Classical baselines (Wiener deconvolution), each assuming the study's blur recipe at "
               "the estimated level and at the interval's ends; the real blur's shape is unknown.")
    panels = restore_photo(photo, cal, restore_levels(est))
    panels += _sd15_panels(lab, study_id, cal.side, photo, hashlib.sha256(upload.getvalue()).hexdigest())
    for start in range(0, len(panels), PANELS_PER_ROW):  # equal panels, so they compare at one scale
        for column, (caption, image) in zip(st.columns(PANELS_PER_ROW, gap="medium"),
                                            panels[start:start + PANELS_PER_ROW], strict=False):
            column.image(image, caption=caption, width="stretch")
    _add_to_catalog(lab, user, photo, upload.name)


def _sd15_panels(lab: Lab, study_id: int, side: int, photo: Image.Image,
                 sha256: str) -> list[tuple[str, Image.Image]]:
    """SD1.5 img2img of the photo at the study's strengths: run only on the button (minutes on a
    CPU), kept per (photo, study, strength) for the session."""
    unavailable = sd15_unavailable(lab.settings)
    if unavailable is not None:
        st.info(f"SD1.5 img2img is not shown, only the classical baselines: {unavailable}")
        return []
    with lab.read() as s:
        strengths, base = sd15_recipe(s, study_by_id(s, study_id))
    done: dict = st.session_state.setdefault(SD15_CACHE, {})
    missing = [x for x in strengths if (sha256, study_id, x) not in done]
    shown = ", ".join(f"{x:g}" for x in strengths)
    if missing and st.button(f"Run SD1.5 img2img at strengths {shown}", key=f"{KEY}run_sd15",
                             help="Slow without a GPU: a minute or more per strength."):
        try:
            with st.spinner(f"Running SD1.5 img2img at strengths {shown}…"):
                results = restore_photo_sd15(photo, side, missing, base, lab.settings)
        except (ReviewError, RuntimeError, MemoryError, OSError) as exc:
            st.error(f"SD1.5 img2img could not run: {plain_error(exc)}")
            return []
        done.update({(sha256, study_id, x): (caption, image) for x, caption, image in results})
    return [done[(sha256, study_id, x)] for x in strengths if (sha256, study_id, x) in done]


def _add_to_catalog(lab: Lab, user: SessionUser, photo: Image.Image, name: str) -> None:
    """Store the photo as a blurred source, only when an admin asks (others are told why not)."""
    st.subheader("Add this photo to the catalog")
    if not may(user.role, Action.TRY_PHOTO_ADD):
        st.caption("Only admins add photos to the catalog (where a generation plan can use them): "
                   "ask an admin if this photo should join a study.")
        return
    st.caption("Stored as a blurred photo with no sharp reference; it joins no study until you put it "
               "in a generation plan (Generate or Study setup: pick it and tick 'As it arrived').")
    content = st.selectbox("Content of the photo", CONTENT_TYPES, index=None, key=f"{KEY}content",
                           placeholder="Choose: face, text, object or scene")
    licence = st.text_input("Source / consent note (required): where the photo comes from and on what "
                            "terms reviewers may see it", key=f"{KEY}licence")
    if not st.button("Add to the catalog", key=f"{KEY}add"):
        return
    if content is None:
        st.error(f"{inert(name)}: choose the content of the photo; nothing was added.")
        return
    added = run_action(lab, lambda s: _add(s, lab, user, photo, name, licence, content), about=name)
    if added.value is not None:
        src_id, title, new = added.value
        if new:
            st.success(f"{inert(name)}: added as source #{src_id} ({photo.width}x{photo.height}).")
        else:
            st.info(f"{inert(name)}: already in the catalog as source #{src_id} "
                    f"({inert(title or 'untitled')}); nothing added.")


def _add(s: Any, lab: Lab, user: SessionUser, photo: Image.Image, name: str, licence: str,
         content: str) -> tuple[int, str, bool]:
    row, new = add_to_catalog(s, lab.store, photo, role=user.role, title=name, licence=licence,
                              content=content)
    return row.id, row.title, new
