"""Admin page: add photos, build a generation plan, start it in a background worker, watch its
progress (polled, so clicks elsewhere never kill it), cancel it, read per-item errors, and browse
the outputs side by side. Admins see methods and parameters; reviewers never see this page."""

from __future__ import annotations

import json
from typing import Any

import streamlit as st

from review.database import Lab
from review.enums import JobStatus
from review.generation import workers
from review.generation.plan import add_job
from review.labeling.study import list_studies
from review.labeling.views import study_outputs
from review.media import catalog
from review.media.decode import decode_image
from review.media.restore import list_models
from review.policy import Action
from review.ui.common import SessionUser, refuse_unless, run_action
from review.ui.display import inert, show_images
from review.ui.plan_form import plan_fields


def render(lab: Lab, user: SessionUser) -> None:
    refuse_unless(user, Action.GENERATE, "Generation is only available to admins.")
    st.title("Generate restorations")
    with lab.read() as s:
        studies = list_studies(s)
    if not studies:
        st.info("No study yet. Run `python -m review demo` or create one first.")
        return
    names = [st_.name for st_ in studies]
    study_name = st.selectbox("Study", names, key="gen_study")
    study = next(x for x in studies if x.name == study_name)
    _weights_status(lab)
    tab_plan, tab_jobs, tab_browse, tab_upload = st.tabs(
        ["New plan", "Jobs", "Browse outputs", "Add photos"])
    with tab_plan:
        _plan_form(lab, study)
    with tab_jobs:
        _jobs_panel(lab, study)
    with tab_browse:
        _browse(lab, study)
    with tab_upload:
        _upload(lab)


def _weights_status(lab: Lab) -> None:
    path = lab.settings.sd15_path
    if path is None:
        st.info("SD1.5 weights: not configured (set REVIEW_SD15_PATH to a local SD1.5 "
                ".safetensors/.ckpt file, a diffusers folder, or a folder of them). Classical "
                "restorers, controls and the `tiny` smoke-test model still work; tiny outputs "
                "are labelled as smoke tests and are not restorations.")
    else:
        names = list_models(path)
        st.caption(f"SD1.5 weights: {inert(path)}"
                   + (f" ({len(names)} models: {inert(', '.join(names))})" if len(names) > 1 else ""))


def _plan_form(lab: Lab, study: Any) -> None:
    with lab.read() as s:
        sources = catalog.plannable_sources(s)
    if not sources:
        st.info("Add photos first (tab 'Add photos').")
        return
    with st.form("plan"):
        fields = plan_fields(lab.settings, sources)
        submitted = st.form_submit_button("Start generation", type="primary")
    if not submitted:
        return
    plan, errors = fields.plan(lab.settings)
    if plan is None:  # refuse the whole plan before anything is stored or started
        st.error("The plan cannot run; nothing was started.\n\n" + "\n\n".join(f"- {e}" for e in errors))
        return
    job_id = run_action(lab, lambda s: add_job(s, study.id, plan), about="The plan cannot run").value
    if job_id is None:
        return
    workers.start_background(lab, job_id)
    st.success(f"Job {job_id} started in the background: {len(plan.units())} restorations. "
               "Watch it in the 'Jobs' tab; you can leave this page.")


@st.fragment(run_every=2.0)
def _jobs_panel(lab: Lab, study: Any) -> None:
    rows = workers.jobs_of(lab, study.id)
    if not rows:
        st.caption("No generation job for this study yet.")
        return
    for job in rows[:10]:
        box = st.container(border=True)
        total = max(job.progress_total, 1)
        box.markdown(f"**Job {job.id}** · {job.status} · {job.progress_done}/{job.progress_total}"
                     + (f" · worker {inert(job.worker)}" if job.worker else ""))
        box.progress(job.progress_done / total)
        if job.error:
            box.warning(inert(job.error))
        c1, c2 = box.columns(2)
        if job.status in (JobStatus.QUEUED, JobStatus.RUNNING) and c1.button("Cancel",
                                                                             key=f"cancel_{job.id}"):
            workers.cancel(lab, job.id)
            st.rerun(scope="fragment")
        # a queued job has no worker at work (an accepted proposal's job, one queued by the CLI):
        # start one here; a second worker on a job just started only shares its items
        if job.status == JobStatus.QUEUED:
            c2.button("Start", key=f"start_{job.id}", type="primary", on_click=_start_worker,
                      args=(lab, job.id),
                      help="Run this job in a background worker (it goes on if you leave the page).")
        if job.status in (JobStatus.FAILED, JobStatus.CANCELLED) and c2.button("Resume",
                                                                               key=f"resume_{job.id}"):
            workers.requeue(lab, job.id)
            workers.start_background(lab, job.id)
            st.rerun(scope="fragment")
        errors = workers.job_errors(lab, job.id)
        if errors:
            with box.expander(f"{len(errors)} item errors"):
                for err in errors[:200]:
                    st.text(f"{err.item_key}: {err.error}")


def _start_worker(lab: Lab, job_id: int) -> None:
    """The Start button's callback: a background worker on the job (a callback returns nothing)."""
    workers.start_background(lab, job_id)


def _browse(lab: Lab, study: Any) -> None:
    with lab.read() as s:
        outputs = study_outputs(s, study.id)
    if not outputs:
        st.caption("No outputs yet.")
        return
    methods = sorted({o.method for o in outputs})
    pick = st.multiselect("Restorers", methods, default=methods, key="browse_methods")
    for o in [o for o in outputs if o.method in pick][:12]:
        tag = " · SMOKE TEST (tiny model, not a restoration)" if o.is_smoke_test else ""
        st.markdown(f"**Item {o.item_id}** · {inert(o.method)} · {inert(o.blur_kind)} {o.blur_level} px{tag}")
        panels = [("Reference", o.reference)] if o.reference is not None else []
        panels += [("Blurred input", o.blurred), ("Restoration", o.restoration)]
        show_images(lab.store, panels, max_side=320)
        with st.expander("Parameters, provenance and metrics"):
            st.code(json.dumps({"params": o.params, "metrics": o.metrics,
                                "provenance": o.provenance}, indent=2, default=str),
                    language="json")


def _upload(lab: Lab) -> None:
    st.caption("JPEG, PNG, WebP, TIFF or HEIC. Sharp photos become references you can blur; "
               "photos that are already blurred are kept as 'real' inputs with no reference.")
    files = st.file_uploader("Photos", accept_multiple_files=True, key="gen_upload")
    if not files:
        return
    st.markdown("**Content of each photo** (used to compare restorers by content)")
    contents = [st.selectbox(inert(f.name), catalog.CONTENT_TYPES, index=None,
                             key=f"gen_content_{i}_{f.name}",
                             placeholder="Choose: face, text, object or scene") for i, f in enumerate(files)]
    licence = st.text_input("Source / consent note (required): where the photos come from and on "
                            "what terms reviewers may see them", key="gen_licence")
    already_blurred = st.checkbox("These photos are already blurred (no sharp reference)")
    if not st.button("Add to the catalog", key="gen_add"):
        return
    missing = [f.name for f, c in zip(files, contents, strict=True) if c is None]
    if missing:
        st.error(f"Choose the content of {inert(', '.join(missing))}; nothing was added.")
        return
    if not licence.strip():
        st.error("Write the source / consent note; nothing was added.")
        return
    for f, content in zip(files, contents, strict=True):
        assert content is not None  # refused above as `missing`
        data = f.getvalue()

        def add(s: Any, data: bytes = data, name: str = f.name, content: str = content) -> tuple:
            img = decode_image(data)
            row, new = catalog.add_photo(s, lab.store, img, title=name, licence=licence, content=content,
                                         already_blurred=already_blurred)
            return row.id, row.title, img.width, img.height, new

        added = run_action(lab, add, about=f.name)
        if added.value is not None:
            src_id, title, width, height, new = added.value
            if new:
                st.success(f"{inert(f.name)}: added as source #{src_id} ({width}x{height}).")
            else:
                st.info(f"{inert(f.name)}: already in the catalog as source #{src_id} "
                        f"({inert(title or 'untitled')}); "
                        "nothing added.")
