"""The one registry of restorers: name -> class, with each restorer's capabilities on its class.

Every list of restorers in the lab derives from here (the plan form's choices and defaults, the
CLI's ``--method`` choices, the generation plan's seeds, kernels and grids, the answer's words and
strength curves, the controls and gold items, the simulated panel's truths): adding a restorer is
its class (:class:`~review.media.restore.base.Restorer` with its capabilities declared) and one
row in ``RESTORERS`` (or :func:`register`). Importing this module imports no torch or diffusers.
"""

from __future__ import annotations

import dataclasses
import re

from review.media.restore.base import Restorer
from review.media.restore.classical import RichardsonLucy, UnsupervisedWiener, Wiener
from review.media.restore.controls import Blurred, HiddenReference
from review.media.restore.sd15 import SD15Img2Img, SD15Txt2Img

#: Every restorer the lab knows, in the order forms and choices list them.
RESTORERS: dict[str, type[Restorer]] = {}

#: The capabilities :func:`names` filters on (class attributes of :class:`Restorer`).
CAPABILITIES = ("needs_kernel", "needs_reference", "takes_input", "is_restoration", "has_strength",
                "stochastic", "uses_weights", "featured")


def check(cls: type[Restorer]) -> None:
    """Refuse a class whose declarations contradict its parameters (ValueError naming the fix)."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"{cls.__name__}.name must be a lower-case identifier, got {name!r}")
    if not getattr(cls, "title", ""):
        raise ValueError(f"{cls.__name__} needs a title (the words sentences and forms show)")
    fields = {f.name for f in dataclasses.fields(cls.Params)}
    needed = {"strength"} if cls.has_strength else set()
    needed |= {"seed"} if cls.stochastic else set()
    needed |= set(cls.grid_keys)
    if needed - fields:
        raise ValueError(f"{name} declares {sorted(needed - fields)} (strength, seed or grid keys) "
                         f"but its Params has no such field(s): {sorted(fields)}")
    if cls.control is not None and not 1 <= cls.control[0] <= cls.control[1] <= 5:
        raise ValueError(f"{name}.control must be a (low, high) score range in 1..5, got {cls.control}")


def register(cls: type[Restorer]) -> type[Restorer]:
    """Add a restorer (usable as a class decorator); its name must be new."""
    check(cls)
    if cls.name in RESTORERS:
        raise ValueError(f"a restorer named {cls.name!r} is already registered")
    RESTORERS[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    """Remove a restorer (a test's, or a plug-in's); unknown names are an error."""
    restorer_class(name)
    del RESTORERS[name]


def restorer_class(name: str) -> type[Restorer]:
    """The restorer's class (for its ``Params`` and capabilities) without loading any model."""
    if name not in RESTORERS:
        raise ValueError(f"unknown restorer {name!r}; valid names: {list(RESTORERS)}")
    return RESTORERS[name]


def names(**capabilities: bool) -> tuple[str, ...]:
    """Registered names whose capabilities match, in registry order: ``names(needs_kernel=True)``."""
    unknown = sorted(set(capabilities) - set(CAPABILITIES))
    if unknown:
        raise ValueError(f"unknown capabilities {unknown}; known: {list(CAPABILITIES)}")
    return tuple(n for n, cls in RESTORERS.items()
                 if all(getattr(cls, k) == v for k, v in capabilities.items()))


def title(name: str) -> str:
    """The restorer's words; the name itself for one this lab does not know (imported ratings)."""
    cls = RESTORERS.get(name)
    return cls.title if cls is not None else name


def titles() -> dict[str, str]:
    """Name -> words, for every registered restorer."""
    return {n: cls.title for n, cls in RESTORERS.items()}


def with_strength() -> tuple[str, ...]:
    """Restorers with a strength parameter (one answer curve per strength)."""
    return names(has_strength=True)


def controls() -> dict[str, tuple[int, int]]:
    """The control "restorers" and the score range a careful rater gives each (gold items)."""
    return {n: cls.control for n, cls in RESTORERS.items() if cls.control is not None}


def plannable() -> tuple[str, ...]:
    """What a generation plan may run: every restorer of a degraded input, controls included."""
    return names(takes_input=True)


def runnable_on_a_file() -> tuple[str, ...]:
    """What ``review restore`` runs on one image file: the restorations (not the generators of
    references, nor the hidden reference, which needs the original the CLI only has with --blur)."""
    return names(takes_input=True, is_restoration=True)


for _cls in (SD15Img2Img, SD15Txt2Img, Wiener, UnsupervisedWiener, RichardsonLucy, Blurred,
             HiddenReference):
    register(_cls)
