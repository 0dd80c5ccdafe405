"""Restorers behind one interface, and their registry.

Every restorer has a ``name``, a ``title``, its capabilities as class attributes (needs the
kernel, has a strength, is stochastic, uses weights, groups into a grid, its control
expectations: :class:`Restorer`), a ``Params`` frozen dataclass (defaults, validated ranges;
``Params.describe()`` lists them for forms) and ``restore(RestoreInput, params) ->
RestoreResult`` (image of the input's size, provenance, metrics). :mod:`.registry` holds them
(``RESTORERS``: name -> class) and every list of restorers derives from it (``names(...)``,
``titles()``, ``with_strength()``, ``controls()``). ``get_restorer(name)`` returns one; those that
use weights (SD1.5) need the local weights path (the caller reads ``REVIEW_SD15_PATH``; ``"tiny"``
is the in-code smoke-test model built under ``models_dir``).

Importing this package never imports torch or diffusers (the app's first page loads without
them); torch is imported when an SD1.5 pipeline is loaded, scikit-image when a classical
restorer runs.
"""

from __future__ import annotations

from pathlib import Path

from review.media.restore.base import Params, RestoreInput, Restorer, RestoreResult
from review.media.restore.registry import (
    RESTORERS,
    controls,
    names,
    register,
    restorer_class,
    title,
    titles,
    unregister,
    with_strength,
)
from review.media.restore.sd15 import generate_reference
from review.media.restore.sd15_weights import WeightsError, list_models


def get_restorer(
    name: str,
    *,
    sd15_path: Path | str | None = None,
    models_dir: Path | None = None,
    config_dir: Path | None = None,
) -> Restorer:
    """A ready restorer. ``sd15_path``/``models_dir``/``config_dir`` matter only for those that
    use weights (SD1.5); weights are checked when the first restoration runs (``WeightsError``)."""
    return restorer_class(name).build(sd15_path, models_dir=models_dir, config_dir=config_dir)


__all__ = [
    "RESTORERS", "Params", "RestoreInput", "RestoreResult", "Restorer", "WeightsError", "controls",
    "generate_reference", "get_restorer", "list_models", "names", "register", "restorer_class",
    "title", "titles", "unregister", "with_strength",
]
