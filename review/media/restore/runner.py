"""Running restorers with the lab's settings: which SD1.5 weights (REVIEW_SD15_PATH, or "tiny"
for the in-code smoke-test model built under the data folder), parameter resolution with
defaults and the model's content identity (together the identity a restoration is stored under),
and grid runs that share work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from review.config import Settings
from review.errors import ReviewError
from review.media.restore import (
    RestoreInput,
    Restorer,
    RestoreResult,
    WeightsError,
    get_restorer,
    restorer_class,
)
from review.media.restore.sd15_weights import SETTING, TINY, list_models


def resolve_params(method: str, raw: dict[str, Any] | None = None) -> dict[str, Any]:
    """All parameters of `method` with defaults filled in and validated (ValueError otherwise)."""
    return restorer_class(method).Params.from_dict(raw or {}).to_dict()


def _weights(model: str | None, settings: Settings | None) -> Any:
    """``model``: a name from :func:`list_models` of REVIEW_SD15_PATH, ``tiny``, or a path."""
    configured = settings.sd15_path if settings is not None else None
    if not model:
        return configured
    named = list_models(configured)
    if model in named or model == TINY:
        return named.get(model, model)
    if not Path(model).expanduser().exists():
        raise WeightsError(f"model {model!r} is neither a model of {SETTING} "
                           f"({', '.join(named) or 'none configured'}), nor '{TINY}', nor an "
                           "existing path")
    return model


def model_identity_for(method: str, model: str | None, settings: Settings | None) -> str:
    """The content identity of the weights `method` would run with (`model` as for
    `run_restorer`), which a restoration is stored and found under; '' for restorers without a
    model. Hashes the weights once (then cached by file stat); loads nothing into memory.
    Raises WeightsError when the weights are missing."""
    from review.media.restore.sd15_weights import weights_identity

    if not restorer_class(method).uses_weights:
        return ""
    return weights_identity(_weights(model, settings),
                            models_dir=settings.models_dir if settings is not None else None)


def sd15_status(settings: Settings) -> str:
    """One plain line on whether Stable Diffusion 1.5 can run here and which models it has (reads
    no weights, imports no torch)."""
    if settings.sd15_path is None:
        return f"SD1.5 weights: not configured (set {SETTING})"
    named = list_models(settings.sd15_path)
    missing = [str(p) for p in named.values() if not p.exists()]
    if not named or missing:
        return f"SD1.5 weights: {SETTING}={settings.sd15_path}: {', '.join(missing) or 'no models'} not found"
    return f"SD1.5 weights: {len(named)} model{'s' if len(named) > 1 else ''} ({', '.join(named)})"


def sd15_unavailable(settings: Settings, model: str | None = None) -> str | None:
    """Why SD1.5 restorers cannot run with `model` (None: the configured weights), in one plain
    line with the fix; None when they can. The in-code `tiny` smoke-test model always can. Reads
    no weights and imports no torch, so a form can refuse a plan before anything starts."""
    if model == TINY:
        return None
    try:
        path = _weights(model, settings)
        if str(path) == TINY:  # REVIEW_SD15_PATH=tiny: the smoke-test model is the configured one
            return None
    except WeightsError as exc:
        return str(exc)
    if path is None:
        return (f"SD1.5 weights are not configured: set {SETTING} to a local SD1.5 .safetensors/.ckpt "
                "file or diffusers folder, or choose the tiny smoke-test model.")
    named = list_models(path)
    missing = [str(p) for p in named.values() if not p.exists()] if named else (
        [] if Path(path).expanduser().exists() else [str(path)])
    if missing:
        return f"SD1.5 weights not found: {', '.join(missing)}; fix {SETTING}."
    return None


#: Library messages a person cannot act on, and what they mean for a restoration item.
_PLAIN = (
    ("win_size exceeds image extent",
     "The image is too small for the SSIM score (at least 7 x 7 pixels are needed): use a larger "
     "photo, or a smaller blur level."),
    ("out of memory",
     "The GPU ran out of memory: run fewer strengths or seeds at a time, use smaller photos, or "
     "free the GPU and resume the job."),
    ("cannot identify image file",
     "A stored image could not be read: restore the data folder's images/ from a backup, then "
     "resume the job."),
)


def plain_error(exc: BaseException) -> str:
    """An item's failure in plain words with the fix: a domain refusal (ReviewError, e.g. missing
    weights) as its own message; known library errors translated; anything else as its type and
    text, so that nothing is hidden."""
    if isinstance(exc, ReviewError):
        return str(exc)
    text = str(exc)
    for needle, plain in _PLAIN:
        if needle in text.lower():
            return plain
    if isinstance(exc, MemoryError):
        return _PLAIN[1][1].replace("GPU", "machine")
    if isinstance(exc, FileNotFoundError):
        return (f"A stored file is missing ({exc.filename}): restore the data folder from a backup, "
                "then resume the job.")
    return f"{type(exc).__name__}: {text}"


def _restorer(method: str, model: str | None, settings: Settings | None) -> Restorer:
    return get_restorer(method, sd15_path=_weights(model, settings),
                        models_dir=settings.models_dir if settings is not None else None)


def run_restorer(method: str, image: Image.Image, *, kernel: Any = None,
                 reference: Image.Image | None = None, params: dict[str, Any] | None = None,
                 model: str | None = None, settings: Settings | None = None) -> RestoreResult:
    """Restore one image with one method."""
    restorer = _restorer(method, model, settings)
    return restorer.restore(RestoreInput(image, kernel=kernel, reference=reference), params or {})


def run_grid(method: str, image: Image.Image, params_list: list[dict[str, Any]], *,
             reference: Image.Image | None = None, model: str | None = None,
             settings: Settings | None = None) -> list[RestoreResult]:
    """Variants of one input by a restorer with grid keys (SD1.5 img2img: strength and seed) that
    differ only in those: when they form a full strengths x seeds grid they run as one
    shared-work grid, otherwise one by one."""
    restorer = _restorer(method, model, settings)
    inp = RestoreInput(image, reference=reference)
    strengths = sorted({p["strength"] for p in params_list})
    seeds = sorted({p["seed"] for p in params_list})
    if len(strengths) * len(seeds) == len(params_list):
        base = {k: v for k, v in params_list[0].items() if k not in ("strength", "seed")}
        results = restorer.restore_grid(inp, strengths, seeds, {**base, "strength": strengths[0],
                                                                 "seed": seeds[0]})
        by_key = {(s, seed): r for (s, seed), r in
                  zip(((s, seed) for s in strengths for seed in seeds), results, strict=True)}
        return [by_key[(p["strength"], p["seed"])] for p in params_list]
    return [restorer.restore(inp, p) for p in params_list]
