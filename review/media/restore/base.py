"""The one interface every restorer implements, and what they share.

A restorer has a ``name``, a ``title``, declared capabilities (class attributes of
:class:`Restorer`, read through :mod:`review.media.restore.registry`), a frozen parameter
dataclass (``Params``) whose fields carry their default and allowed range, and
``restore(inp, params) -> RestoreResult``. Validation lives in :class:`Params` so that a bad
parameter never reaches a model: unknown names and out-of-range values raise ``ValueError``
naming the parameter and what is allowed.

Every result carries a provenance dict (method, all parameters including defaults, seed, model
identity, library versions, device, dtype, wall time) so a rating can always be traced back to
exactly what produced the image, and a metrics dict: PSNR/SSIM against the sharp reference when
one is known, and the no-reference blur effect of input and output.

This module imports numpy and PIL only; scikit-image is imported when metrics are computed.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import math
import platform
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

# ----------------------------------------------------------------------------- parameters


def param(
    default: Any,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    choices: tuple[Any, ...] | None = None,
    max_len: int | None = None,
    doc: str = "",
) -> Any:
    """A dataclass field with its allowed range (closed unless ``lo_open``) or its choices."""
    meta = {"lo": lo, "hi": hi, "lo_open": lo_open, "choices": choices, "max_len": max_len,
            "doc": doc}
    return field(default=default, metadata=meta)


def _allowed(name: str, meta: Mapping[str, Any], kind: type) -> str:
    if meta.get("choices") is not None:
        return f"one of {list(meta['choices'])}"
    if kind is str:
        return f"a string of at most {meta.get('max_len')} characters"
    if kind is bool:
        return "true or false"
    lo, hi = meta.get("lo"), meta.get("hi")
    word = "an integer" if kind is int else "a number"
    lo_s = "" if lo is None else f"{lo:g} {'<' if meta.get('lo_open') else '<='} "
    hi_s = "" if hi is None else f" <= {hi:g}"
    return f"{word}, {lo_s}{name}{hi_s}"


@dataclass(frozen=True)
class Params:
    """Base of every restorer's parameters: validates types and ranges on construction."""

    def __post_init__(self) -> None:
        hints = {f.name: f for f in dataclasses.fields(self)}
        for name, f in hints.items():
            value = getattr(self, name)
            kind = type(f.default)
            meta = f.metadata
            allowed = _allowed(name, meta, kind)
            if kind is bool:
                if not isinstance(value, bool | np.bool_):
                    raise ValueError(f"{name}={value!r} is invalid: allowed {allowed}")
                object.__setattr__(self, name, bool(value))
                continue
            if kind is int:
                if isinstance(value, bool) or not isinstance(value, int | np.integer):
                    if isinstance(value, float) and value.is_integer():
                        value = int(value)
                    else:
                        raise ValueError(f"{name}={value!r} is invalid: allowed {allowed}")
                value = int(value)
            elif kind is float:
                if isinstance(value, bool) or not isinstance(value, int | float | np.number):
                    raise ValueError(f"{name}={value!r} is invalid: allowed {allowed}")
                value = float(value)
                if not math.isfinite(value):
                    raise ValueError(f"{name}={value!r} is invalid: allowed {allowed}")
            elif kind is str:
                if not isinstance(value, str):
                    raise ValueError(f"{name}={value!r} is invalid: allowed {allowed}")
                if meta.get("max_len") is not None and len(value) > meta["max_len"]:
                    raise ValueError(f"{name} is too long ({len(value)} characters): "
                                     f"allowed {allowed}")
            if meta.get("choices") is not None and value not in meta["choices"]:
                raise ValueError(f"{name}={value!r} is invalid: allowed {allowed}")
            lo, hi = meta.get("lo"), meta.get("hi")
            if lo is not None and (value < lo or (meta.get("lo_open") and value == lo)):
                raise ValueError(f"{name}={value!r} is out of range: allowed {allowed}")
            if hi is not None and value > hi:
                raise ValueError(f"{name}={value!r} is out of range: allowed {allowed}")
            object.__setattr__(self, name, value)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None = None) -> Params:
        """Build from a plain mapping (e.g. JSON from the database); unknown keys are errors."""
        raw = dict(raw or {})
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(raw) - set(names))
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {unknown} for {cls.__name__}; valid parameters: {names}"
            )
        return cls(**raw)

    def to_dict(self) -> dict[str, Any]:
        """All parameters including defaults, JSON-serialisable."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> Params:
        """A validated copy with some fields changed."""
        return type(self).from_dict({**self.to_dict(), **changes})

    @classmethod
    def describe(cls) -> list[dict[str, Any]]:
        """Name, default, allowed values and help text per parameter, for forms and docs."""
        out = []
        for f in dataclasses.fields(cls):
            out.append({"name": f.name, "default": f.default,
                        "allowed": _allowed(f.name, f.metadata, type(f.default)),
                        "doc": f.metadata.get("doc", "")})
        return out


#: ``Params`` under a second name, for the methods of :class:`Restorer`: inside a restorer's class
#: body ``Params`` is its own parameters class.
AnyParams = Params


# ----------------------------------------------------------------------------- input / result


@dataclass(frozen=True)
class RestoreInput:
    """What a restorer gets: the degraded RGB image, the blur kernel when known, the sharp
    reference when known (synthetic blur). The reference must be pixel-aligned with the input."""

    degraded: Image.Image
    kernel: np.ndarray | None = None
    reference: Image.Image | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.degraded, Image.Image):
            raise TypeError(f"degraded must be a PIL image, got {type(self.degraded).__name__}")
        if self.degraded.mode != "RGB":
            object.__setattr__(self, "degraded", self.degraded.convert("RGB"))
        if self.reference is not None:
            if not isinstance(self.reference, Image.Image):
                raise TypeError("reference must be a PIL image or None")
            if self.reference.mode != "RGB":
                object.__setattr__(self, "reference", self.reference.convert("RGB"))
            if self.reference.size != self.degraded.size:
                raise ValueError(
                    f"reference size {self.reference.size} differs from degraded size "
                    f"{self.degraded.size}: they must be pixel-aligned"
                )
        if self.kernel is not None:
            k = np.asarray(self.kernel, dtype=np.float64)
            if k.ndim != 2 or not np.isfinite(k).all() or k.sum() <= 0 or (k < 0).any():
                raise ValueError("kernel must be a finite, non-negative 2-D array with sum > 0")
            object.__setattr__(self, "kernel", k / k.sum())

    @classmethod
    def from_degraded(cls, degraded: Any, reference: Image.Image | None = None) -> RestoreInput:
        """From ``review.media.degrade.Degraded`` (image + kernel) and the sharp original."""
        return cls(degraded=degraded.image, kernel=degraded.kernel, reference=reference)


@dataclass
class RestoreResult:
    """A restored RGB image (same size as the input), how it was made, and how it scores."""

    image: Image.Image
    provenance: dict[str, Any]
    metrics: dict[str, float]


# ----------------------------------------------------------------------------- helpers


def library_versions(*names: str) -> dict[str, str]:
    """Installed versions of the named distributions (missing ones are left out)."""
    out = {"python": platform.python_version()}
    for n in names:
        try:
            out[n] = importlib.metadata.version(n)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def _gray(arr: np.ndarray) -> np.ndarray:
    # luma with skimage's BT.709 weights: blur_effect is defined on one channel
    from skimage.color import rgb2gray

    return rgb2gray(arr)


def compute_metrics(
    output: Image.Image, degraded: Image.Image, reference: Image.Image | None
) -> dict[str, float]:
    """PSNR/SSIM of output (and input) against the reference when known; blur effect of both.

    SSIM uses skimage.metrics.structural_similarity with channel_axis=2 and data_range=1 on
    float RGB in [0, 1]; blur_effect is skimage.measure.blur_effect (Crete et al. 2007) on
    grayscale: 0 sharp .. 1 blurry.
    """
    from skimage.measure import blur_effect
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    out = np.asarray(output.convert("RGB"), dtype=np.float64) / 255.0
    inp = np.asarray(degraded.convert("RGB"), dtype=np.float64) / 255.0
    m: dict[str, float] = {
        "blur_effect_input": float(blur_effect(_gray(inp))),
        "blur_effect_output": float(blur_effect(_gray(out))),
    }
    if reference is not None:
        ref = np.asarray(reference.convert("RGB"), dtype=np.float64) / 255.0

        def psnr(a: np.ndarray) -> float:
            # identical images have infinite PSNR; JSON cannot hold inf, so cap at 100 dB
            if np.array_equal(ref, a):
                return 100.0
            return float(min(peak_signal_noise_ratio(ref, a, data_range=1.0), 100.0))

        def ssim(a: np.ndarray) -> float:
            return float(structural_similarity(ref, a, channel_axis=2, data_range=1.0))

        m.update(psnr=psnr(out), ssim=ssim(out), psnr_input=psnr(inp), ssim_input=ssim(inp))
    return m


# ----------------------------------------------------------------------------- the interface


class Restorer(ABC):
    """Base class: validates parameters, times the run, fills provenance and metrics.

    A restorer's identity and capabilities are class attributes, declared once here and read by
    every list of the lab (the plan form, the CLI, the generation plan, the answer's words, the
    simulated panel) through :mod:`review.media.restore.registry`."""

    #: The name it is stored, planned and exported under.
    name: ClassVar[str]
    #: Human words for it, as the answer's sentences and the forms show it.
    title: ClassVar[str]
    Params: ClassVar[type[Params]]
    #: Deconvolves with the known blur kernel: refuses an input without one (a real photo).
    needs_kernel: ClassVar[bool] = False
    #: Shows the sharp reference: refuses an input without one.
    needs_reference: ClassVar[bool] = False
    #: Restores a degraded input; False for a generator of sharp references (never in a plan).
    takes_input: ClassVar[bool] = True
    #: Its output is a restoration of the blurred input; False for the sharp original shown as a
    #: control, which the answer's curves and the metrics against people leave out.
    is_restoration: ClassVar[bool] = True
    #: Has a ``strength`` parameter: a plan runs a grid of strengths, the answer draws one curve
    #: per strength.
    has_strength: ClassVar[bool] = False
    #: A different ``seed`` gives a different image (same seed, same image): a plan runs it once
    #: per seed. False: the same parameters give the same image.
    stochastic: ClassVar[bool] = False
    #: Runs on model weights (SD1.5): built with a weights path, its restorations are stored and
    #: found under the weights' content identity.
    uses_weights: ClassVar[bool] = False
    #: Parameters whose variants of one input run together as one grid (``restore_grid``,
    #: sharing work); empty: each variant runs alone.
    grid_keys: ClassVar[tuple[str, ...]] = ()
    #: A control: the score range (on the 1..5 scale) a careful rater gives it; it doubles as a
    #: gold item. None for a restorer.
    control: ClassVar[tuple[int, int] | None] = None
    #: One of the lab's main restorers: chosen by default in a new plan, and shown beside a tried
    #: photo (Try your photo).
    featured: ClassVar[bool] = False
    #: How the simulated panel's raters see it on motion blur (``TrueCurve`` fields: boundary in
    #: px, width, ...); None: the panel's default truth.
    simulated_truth: ClassVar[Mapping[str, float] | None] = None
    versions: ClassVar[tuple[str, ...]] = ("numpy", "pillow")

    @classmethod
    def build(cls, weights: Path | str | None = None, *, models_dir: Path | None = None,
              config_dir: Path | None = None) -> Restorer:
        """A ready restorer; the weights arguments matter only where ``uses_weights``."""
        return cls()

    def params(self, raw: AnyParams | Mapping[str, Any] | None = None, **overrides: Any) -> AnyParams:
        """Validated parameters from a Params instance, a mapping, or keyword overrides."""
        if isinstance(raw, Params):
            if not isinstance(raw, self.Params):
                raise TypeError(f"{self.name} takes {self.Params.__name__}, "
                                f"got {type(raw).__name__}")
            return raw.replace(**overrides) if overrides else raw
        return self.Params.from_dict({**dict(raw or {}), **overrides})

    def restore(
        self, inp: RestoreInput, params: AnyParams | Mapping[str, Any] | None = None
    ) -> RestoreResult:
        """Restore ``inp.degraded``; the output has the input's size."""
        p = self.params(params)
        if self.needs_kernel and inp.kernel is None:
            raise ValueError(
                f"{self.name} deconvolves with the known blur kernel, but this input has none "
                "(a real photo?): use an SD1.5 restorer or a control instead"
            )
        if self.needs_reference and inp.reference is None:
            raise ValueError(f"{self.name} needs the sharp reference, but this input has none")
        t0 = time.perf_counter()
        image, extra = self._run(inp, p)
        wall = time.perf_counter() - t0
        return finish_result(self.name, p, image, inp, wall, extra, self.versions)

    def restore_grid(
        self,
        inp: RestoreInput,
        strengths: Sequence[float],
        seeds: Sequence[int],
        params: AnyParams | Mapping[str, Any] | None = None,
        *,
        progress: Callable[[int, int], None] | None = None,
        cancel: Callable[[], bool] | None = None,
    ) -> list[RestoreResult]:
        """All (strength, seed) variants of one input, sharing work: only a restorer whose
        ``grid_keys`` are strength and seed has them."""
        raise NotImplementedError(f"{self.name} runs no strength x seed grid")

    @abstractmethod
    def _run(self, inp: RestoreInput, params: Any) -> tuple[Image.Image, dict[str, Any]]:
        """Produce the image and method-specific provenance (device, dtype, model identity)."""


def finish_result(
    method: str,
    params: Params,
    image: Image.Image,
    inp: RestoreInput,
    wall_time_s: float,
    extra: Mapping[str, Any],
    versions: tuple[str, ...],
) -> RestoreResult:
    """Assemble provenance and metrics in one place so every restorer reports the same keys."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    if image.size != inp.degraded.size:
        raise AssertionError(f"{method} returned {image.size}, input was {inp.degraded.size}")
    pd = params.to_dict()
    prov: dict[str, Any] = {
        "method": method,
        "params": pd,
        "seed": pd.get("seed"),
        "model_identity": None,
        "smoke_test": False,
        "device": "cpu",
        "dtype": "float64",
        "versions": library_versions(*versions),
        "input_size": list(inp.degraded.size),
        "wall_time_s": round(float(wall_time_s), 4),
    }
    prov.update(extra)
    return RestoreResult(image=image, provenance=prov,
                         metrics=compute_metrics(image, inp.degraded, inp.reference))
