"""The generation-plan fields (source photos, blur kinds and levels or the photos' own blur,
restorers, SD1.5 grid, seeds, model) and their validation, shared by the Generate page and Study
setup so both offer the same choices (SD1.5 only where it can run) and refuse the same bad input
before anything is written."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import streamlit as st

from review.config import Settings
from review.generation.plan import GenerationPlan, JobError
from review.media.degrade import KINDS
from review.media.restore import list_models, names, restorer_class
from review.media.restore.runner import sd15_unavailable
from review.ui.display import inert

BLUR_HELP = {
    "motion_line": "line length in px",
    "camera_shake": "trajectory extent in px",
    "defocus": "disk radius in px",
    "gaussian": "sigma in px",
}
TINY_LABEL = "tiny (smoke test, not a restoration)"


def _numbers(text: str, what: str, cast: type, errors: list[str]) -> list:
    """Comma-separated numbers from a form field; each part that is not one adds a plain error."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            out.append(cast(part))
        except ValueError:
            kind = "whole number" if cast is int else "number"
            errors.append(f"{what}: {part!r} is not a {kind}; write numbers separated by commas, "
                          f"e.g. {'0, 1' if cast is int else '4, 8'}.")
    return out


@dataclass(frozen=True)
class PlanFields:
    """What the admin entered in the plan fields, as typed (parsed by `plan`)."""

    source_ids: list[int]
    level_text: dict[str, str]
    methods: list[str]
    strengths: str
    steps: int
    seeds: str
    model: str
    named: list[str]
    as_arrived: bool = False  # the photos' own blur (kind 'real'), for photos that arrived blurred

    def plan(self, settings: Settings) -> tuple[GenerationPlan | None, list[str]]:
        """The plan, or None and every plain error at once, so a page refuses before writing."""
        errors: list[str] = []
        blurs = [{"kind": kind, "level": level, "angle": 30.0 if kind == "motion_line" else 0.0,
                  "seed": 1 if kind == "camera_shake" else 0}
                 for kind, text in self.level_text.items() for level in _numbers(text, kind, float, errors)]
        if self.as_arrived:
            blurs.append({"kind": "real", "level": None})
        strength_list = _numbers(self.strengths, "SD1.5 strengths", float, errors)
        seed_list = _numbers(self.seeds, "Seeds", int, errors)
        plan_model = "tiny" if self.model == TINY_LABEL else (
            self.model if self.model in self.named else None)
        with_weights = [m for m in self.methods if restorer_class(m).uses_weights]
        if with_weights and (why := sd15_unavailable(settings, plan_model)):
            errors.append(f"{', '.join(with_weights)} cannot run: {why}")
        if errors:
            return None, errors
        restorers = [{"method": m, "params": grid_params(m, strength_list, int(self.steps))}
                     for m in self.methods]
        plan = GenerationPlan(source_ids=list(self.source_ids), blurs=blurs, restorers=restorers,
                              seeds=seed_list or [0], model=plan_model)
        try:
            plan.units()  # an empty choice or a bad parameter, refused with the checker's message
        except JobError as exc:
            return None, [str(exc)]
        return plan, []


def restorer_choices(weights_run: bool) -> tuple[list[str], list[str]]:
    """The restorers a plan may run (registry order) and those chosen by default: the featured ones,
    less those that use weights when no weights can run here."""
    offered = list(names(takes_input=True))
    default = [m for m in names(takes_input=True, featured=True)
               if weights_run or not restorer_class(m).uses_weights]
    return offered, default


def grid_params(method: str, strengths: list[float], steps: int) -> dict[str, Any]:
    """The form's grid for one restorer: its strengths (when it has a strength) and the SD1.5 steps
    (when it uses weights); nothing for the others, which run with their defaults."""
    cls = restorer_class(method)
    return {**({"strength": strengths} if cls.has_strength else {}),
            **({"steps": steps} if cls.uses_weights else {})}


def plan_fields(settings: Settings, sources: Sequence[Any], key: str = "") -> PlanFields:
    """Draw the plan fields (inside the caller's form; `sources` non-empty, keys prefixed by
    `key`) and return what was entered."""
    labels = {src.id: f"#{src.id} {src.title or src.sha256[:8]} ({src.content}, {src.width}x{src.height}"
                      f"{'' if src.is_reference else ', arrived blurred'})" for src in sources}
    named = list(list_models(settings.sd15_path))
    no_weights = sd15_unavailable(settings)
    sd15_off = "none (SD1.5 cannot run here: see the note above)"
    offered, default = restorer_choices(no_weights is None)

    def restorer_label(method: str) -> str:
        return f"{method} (needs SD1.5 weights or the tiny smoke test)" if (
            no_weights and restorer_class(method).uses_weights) else method

    chosen = st.multiselect("Source photos", list(labels), format_func=labels.__getitem__,
                            default=[sources[0].id], key=f"{key}plan_sources")
    st.markdown("**Blur** (comma-separated levels in pixels, for each kind you want)")
    level_text: dict[str, str] = {}
    cols = st.columns(4)
    for col, kind in zip(cols, [k for k in KINDS if k != "real"], strict=True):
        level_text[kind] = col.text_input(f"{kind} ({BLUR_HELP[kind]})", key=f"{key}lv_{kind}",
                                          value="4, 8" if kind == "defocus" else "")
    as_arrived = st.checkbox("As it arrived (blur kind 'real'): for photos that arrived blurred, restored "
                             "as they are; Wiener needs a kernel, so use SD1.5 img2img or the controls",
                             key=f"{key}lv_real")
    methods = st.multiselect("Restorers", offered, format_func=restorer_label, key=f"{key}plan_restorers",
                             default=default)
    if no_weights:
        st.caption(f"SD1.5 img2img is not offered by default: {inert(no_weights)}")
    strengths = st.text_input("SD1.5 strengths (comma separated)", "0.3, 0.5, 0.7",
                              key=f"{key}plan_strengths")
    steps = st.number_input("SD1.5 steps", 1, 150, 20, key=f"{key}plan_steps")
    seeds = st.text_input("Seeds (comma separated)", "0, 1", key=f"{key}plan_seeds")
    model = st.radio("SD1.5 model", [*(named if len(named) > 1 else
                                       [sd15_off if no_weights else
                                        "configured weights (REVIEW_SD15_PATH)"]), TINY_LABEL],
                     index=0, key=f"{key}plan_model",
                     format_func=lambda o: inert(o) if o in named else o)  # file names: as text
    return PlanFields(chosen, level_text, methods, strengths, int(steps), seeds, model, named, as_arrived)
