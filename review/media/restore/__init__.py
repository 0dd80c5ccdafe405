"""Restorers behind one interface, and their registry.

Every restorer has a ``name``, a ``Params`` frozen dataclass (defaults, validated ranges;
``Params.describe()`` lists them for forms) and ``restore(RestoreInput, params) ->
RestoreResult`` (image of the input's size, provenance, metrics). ``get_restorer(name)``
returns one; the SD1.5 ones need the local weights path (the caller reads
``REVIEW_SD15_PATH``; ``"tiny"`` is the in-code smoke-test model built under ``models_dir``).

Names: ``sd15_img2img``, ``sd15_txt2img`` (synthetic references: ``generate``),
``wiener``, ``unsupervised_wiener``, ``richardson_lucy`` (need the known kernel), ``blurred`` and
``hidden_reference`` (controls; ``CONTROL_EXPECTATIONS`` is the one list of them).

Importing this package never imports torch or diffusers (the app's first page loads without
them); the restorer modules are imported when ``get_restorer`` is called (the controls, which need
only PIL, at once), and torch when an SD1.5 pipeline is loaded.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from review.media.restore.base import Params, RestoreInput, Restorer, RestoreResult
from review.media.restore.controls import Blurred, HiddenReference
from review.media.restore.sd15 import generate_reference
from review.media.restore.sd15_weights import WeightsError, list_models

_REGISTRY: dict[str, tuple[str, str]] = {
    "sd15_img2img": ("review.media.restore.sd15", "SD15Img2Img"),
    "sd15_txt2img": ("review.media.restore.sd15", "SD15Txt2Img"),
    "wiener": ("review.media.restore.classical", "Wiener"),
    "unsupervised_wiener": ("review.media.restore.classical", "UnsupervisedWiener"),
    "richardson_lucy": ("review.media.restore.classical", "RichardsonLucy"),
    "blurred": ("review.media.restore.controls", "Blurred"),
    "hidden_reference": ("review.media.restore.controls", "HiddenReference"),
}
RESTORERS: tuple[str, ...] = tuple(_REGISTRY)
SD15_RESTORERS = ("sd15_img2img", "sd15_txt2img")
#: The control "restorers" and the score range (on a 1..5 scale) a careful rater gives each: they
#: double as gold items (review.labeling.study) and the Analyst page can leave them out.
CONTROL_EXPECTATIONS: dict[str, tuple[int, int]] = {Blurred.name: (1, 3), HiddenReference.name: (4, 5)}
CONTROLS: tuple[str, ...] = tuple(CONTROL_EXPECTATIONS)
NEEDS_KERNEL = ("wiener", "unsupervised_wiener", "richardson_lucy")


def restorer_class(name: str) -> type[Restorer]:
    """The restorer's class (for its ``Params``) without loading any model."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown restorer {name!r}; valid names: {list(RESTORERS)}")
    module, cls = _REGISTRY[name]
    return getattr(importlib.import_module(module), cls)


def get_restorer(
    name: str,
    *,
    sd15_path: Path | str | None = None,
    models_dir: Path | None = None,
    config_dir: Path | None = None,
) -> Restorer:
    """A ready restorer. ``sd15_path``/``models_dir``/``config_dir`` matter for SD1.5 only;
    weights are checked when the first restoration runs (``WeightsError`` then)."""
    cls = restorer_class(name)
    if name in SD15_RESTORERS:
        return cls(sd15_path, models_dir=models_dir, config_dir=config_dir)
    return cls()


__all__ = [
    "CONTROLS", "CONTROL_EXPECTATIONS", "NEEDS_KERNEL", "RESTORERS", "SD15_RESTORERS", "Params",
    "RestoreInput", "RestoreResult", "Restorer", "WeightsError", "generate_reference", "get_restorer",
    "list_models", "restorer_class",
]
