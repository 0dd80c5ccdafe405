"""Boundary proposals turned into generation: the plan that rates a proposed blur level of a curve
(review.answer.boundary's straddle proposals) and the queued job that extends the curve with it.
"""

from __future__ import annotations

import math

from sqlalchemy import select
from sqlalchemy.orm import Session

from review.generation.plan import GenerationPlan, JobError, add_job


def proposal_plan(session: Session, study_id: int, *, restorer: str, setting: str, blur_kind: str,
                  level: float, strength: float | None = None) -> GenerationPlan:
    """The generation plan that rates a proposed blur level (review.answer.boundary's Straddle
    proposals): the study's existing sources of that curve, its blur recipes at the new level, and
    the curve's restorer setting (at the proposed strength), so the new items extend that curve."""
    from db.models import DegradedImage, Restoration, StudyItem
    from review.answer.boundary import curve_setting

    if not (isinstance(level, int | float) and math.isfinite(level) and level > 0):
        raise JobError(f"A proposed blur level must be a positive number of pixels (got {level!r}).")
    rows = session.execute(
        select(DegradedImage.source_id, DegradedImage.params, Restoration.params,
               Restoration.model_identity)
        .join(Restoration, Restoration.degraded_id == DegradedImage.id)
        .join(StudyItem, StudyItem.restoration_id == Restoration.id)
        .where(StudyItem.study_id == study_id, Restoration.method == restorer,
               DegradedImage.kind == blur_kind, Restoration.is_smoke_test.is_(False))).all()
    rows = [r for r in rows if curve_setting(restorer, dict(r[2] or {}), r[3]) == setting]
    if not rows:
        raise JobError(f"The study has no {restorer} items on {blur_kind} blur with setting "
                       f"{setting or 'defaults'!r} to extend.")
    recipes = {tuple(sorted(dict(b, level=float(level)).items())) for _s, b, _p, _m in rows}
    params = {k: v for k, v in dict(rows[0][2] or {}).items() if k != "seed"}
    if strength is not None:
        params["strength"] = float(strength)
    seeds = sorted({int((p or {}).get("seed", 0)) for _s, _b, p, _m in rows})
    return GenerationPlan(source_ids=sorted({s for s, _b, _p, _m in rows}),
                          blurs=[dict(r) for r in sorted(recipes, key=str)],
                          restorers=[{"method": restorer, "params": params}], seeds=seeds,
                          model_identity=rows[0][3] or None)


def accept_proposal(session: Session, study_id: int, *, restorer: str, setting: str, blur_kind: str,
                    level: float, strength: float | None = None) -> int:
    """Turn a proposed blur level (and strength) into a queued generation job of the study (in the
    caller's transaction) whose items join it when the job runs; returns the job id."""
    plan = proposal_plan(session, study_id, restorer=restorer, setting=setting, blur_kind=blur_kind,
                         level=level, strength=strength)
    return add_job(session, study_id, plan)
