"""A generation plan: which restorations a study needs (images x blur specs x restorers x
parameter grid x seeds), validated and stored as a queued job with one work item per group of
units that run together (a Stable Diffusion grid shares one input and prompt).
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import GenerationJob, SourceImage, Study
from db.models import GenerationWorkItem as WorkItem
from review.config import Settings
from review.database import Lab
from review.enums import JobStatus
from review.errors import ReviewError
from review.media import catalog
from review.media.degrade import BlurSpec
from review.media.restore.registry import names, restorer_class


class JobError(ReviewError):
    """A job cannot be created, started or resumed; the message says why."""


class JobBusy(JobError):
    """Every unfinished item of the job is leased by a live worker: nothing to claim now."""



@dataclass(frozen=True)
class Unit:
    """One restoration to produce: a source image, a blur recipe, a method and its parameters."""

    source_id: int
    blur: BlurSpec
    method: str
    params: dict[str, Any]

    def key(self) -> str:
        return f"source {self.source_id} / {self.blur.kind} {self.blur.level} / {self.method} " + \
            catalog.params_key(self.params)[:8]


@dataclass
class GenerationPlan:
    """What to generate for a study. Parameter values given as lists are expanded as a grid."""

    source_ids: list[int]
    blurs: list[dict[str, Any]]
    restorers: list[dict[str, Any]]
    seeds: list[int] = field(default_factory=lambda: [0])
    model: str | None = None  # a model name of REVIEW_SD15_PATH, "tiny", a path, or None
    #: The weights' content identity the plan must run with (a proposal extends a curve that those
    #: weights made); None: whatever `model` names.
    model_identity: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"source_ids": self.source_ids, "blurs": self.blurs, "restorers": self.restorers,
                "seeds": self.seeds, "model": self.model,
                **({"model_identity": self.model_identity} if self.model_identity else {})}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GenerationPlan:
        try:
            return cls(source_ids=[int(i) for i in data["source_ids"]],
                       blurs=list(data["blurs"]), restorers=list(data["restorers"]),
                       seeds=[int(s) for s in data.get("seeds", [0])], model=data.get("model"),
                       model_identity=data.get("model_identity"))
        except (KeyError, TypeError, ValueError) as exc:
            raise JobError(f"The generation plan is malformed: {exc!r}. Expected keys "
                           "source_ids, blurs, restorers, seeds, model.") from exc

    def units(self) -> list[Unit]:
        from review.media.restore.runner import resolve_params

        if not self.source_ids or not self.blurs or not self.restorers:
            raise JobError("A plan needs at least one source image, one blur and one restorer.")
        try:  # a bad blur or restorer parameter refuses the plan, with the checker's message
            blur_specs = [BlurSpec(**b) for b in self.blurs]
            out: list[Unit] = []
            for source_id, spec, restorer in itertools.product(self.source_ids, blur_specs,
                                                               self.restorers):
                method = restorer["method"]
                if not restorer_class(method).takes_input:
                    raise ValueError(f"{method} generates sharp references and restores no photo: "
                                     f"choose among {', '.join(names(takes_input=True))}.")
                grid = {k: v if isinstance(v, list) else [v]
                        for k, v in (restorer.get("params") or {}).items()}
                if restorer_class(method).stochastic:
                    grid.setdefault("seed", list(self.seeds))
                for values in itertools.product(*grid.values()) if grid else [()]:
                    raw = dict(zip(grid.keys(), values, strict=True))
                    out.append(Unit(source_id, spec, method, resolve_params(method, raw)))
        except TypeError as exc:  # a blur entry without kind or level, or with an unknown key
            raise JobError(f"A blur entry of the plan is malformed ({exc}); each needs a kind and a "
                           "level, e.g. {\"kind\": \"defocus\", \"level\": 4}.") from exc
        except ValueError as exc:
            raise JobError(str(exc)) from exc
        needs = [u.method for u in out if u.blur.kind == "real" and restorer_class(u.method).needs_kernel]
        if needs:
            free = ", ".join(names(takes_input=True, needs_kernel=False, needs_reference=False))
            raise JobError(f"{', '.join(sorted(set(needs)))} needs the blur kernel, and a photo used "
                           f"as it arrived (kind 'real') has none: restore such photos with a restorer that "
                           f"needs none ({free}), in a plan of their own.")
        return out

    def check_sources(self, session: Session) -> None:
        """Refuse unknown photos, and photos that arrived blurred under a synthetic blur (blurring
        them again hides their real blur and they have no sharp reference to compare with)."""
        found = dict(session.execute(select(SourceImage.id, SourceImage.is_reference)
                                     .where(SourceImage.id.in_(self.source_ids))).all())
        missing = set(self.source_ids) - set(found)
        if missing:
            raise JobError(f"Unknown source image ids: {sorted(missing)}.")
        blurred = sorted(i for i, sharp in found.items() if not sharp)
        synthetic = sorted({str(b.get("kind")) for b in self.blurs} - {"real"})
        if blurred and synthetic:
            raise JobError(f"Source photo(s) {', '.join(f'#{i}' for i in blurred)} arrived blurred: use "
                           f"them as they are (blur kind 'real'), in a plan without "
                           f"{', '.join(map(str, synthetic))}.")


def create_job(lab: Lab, study_name: str, plan: GenerationPlan) -> int:
    """Validate the plan, store it on a new queued job of the named study, and return the job id."""
    with lab.write() as s:
        study_id = s.scalar(select(Study.id).where(Study.name == study_name))
        if study_id is None:
            raise JobError(f"No study named {study_name!r}.")
        return add_job(s, study_id, plan)


def add_job(session: Session, study_id: int, plan: GenerationPlan) -> int:
    """Validate the plan, store it on a new queued job of the study (in the caller's
    transaction), and return the job id."""
    units = plan.units()
    plan.check_sources(session)
    job = GenerationJob(study_id=study_id, plan=plan.to_json(), status=JobStatus.QUEUED,
                        progress_total=len(units))
    session.add(job)
    session.flush()
    add_work_items(session, job.id, units)
    return job.id


def add_work_items(session: Session, job_id: int, units: list[Unit]) -> None:
    """One work item per group of units that run together (see `work_groups`)."""
    for position, group in enumerate(work_groups(units)):
        more = f" (+{len(group) - 1} in its grid)" if len(group) > 1 else ""
        session.add(WorkItem(job_id=job_id, position=position, item_key=(group[0].key() + more)[:200],
                             units=len(group)))
    session.flush()



def work_groups(units: list[Unit]) -> list[list[Unit]]:
    """Units that can share one grid run (a restorer's `grid_keys`: Stable Diffusion's strengths
    and seeds of one input); every other unit stands alone."""
    groups: dict[tuple, list[Unit]] = {}
    order: list[tuple] = []
    for i, u in enumerate(units):
        grid_keys = restorer_class(u.method).grid_keys
        key: tuple[object, ...]
        if grid_keys:
            rest = {k: v for k, v in u.params.items() if k not in grid_keys}
            key = (u.source_id, u.blur.key(), catalog.params_key(rest))
        else:
            key = ("single", i)
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(u)
    return [groups[k] for k in order]



def with_curve_model(plan: GenerationPlan, method: str, settings: Settings) -> GenerationPlan:
    """The plan with `model` naming the configured weights whose content is the plan's required
    `model_identity` (a proposal's curve); JobError when no configured weights have it."""
    from review.media.restore.runner import model_identity_for
    from review.media.restore.sd15_weights import SETTING, TINY, list_models

    wanted = plan.model_identity
    if not wanted:
        return plan
    try:
        if model_identity_for(method, plan.model, settings) in ("", wanted):
            return plan
    except ReviewError:  # no default weights configured: look for the curve's among the named ones
        pass
    for name in [TINY, *list_models(settings.sd15_path)]:
        try:
            if model_identity_for(method, name, settings) == wanted:
                return dataclasses.replace(plan, model=name)
        except ReviewError:  # weights named but unreadable: not the ones wanted
            continue
    raise JobError(f"This job extends a curve made with the weights {wanted[:15]}..., which are not "
                   f"among the configured ones ({SETTING}). Configure those weights again, or "
                   "generate a new curve with the current weights on the Generate page.")


