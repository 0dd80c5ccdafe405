"""Stable Diffusion 1.5 restorers: ``sd15_img2img`` (restoration) and ``sd15_txt2img``
(synthetic sharp references). Importing this module does not import torch or diffusers; they
are imported when a pipeline is loaded.

The weights path comes from the caller (who reads ``REVIEW_SD15_PATH``); ``"tiny"`` selects the
in-code smoke-test model, built under ``models_dir``. See :mod:`sd15_weights` for layouts and
errors, :mod:`sd15_engine` for how a grid of strengths and seeds shares work.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from review.media.restore.base import AnyParams, Params, RestoreInput, Restorer, RestoreResult, param

SCHEDULER_NAMES = ("ddim", "dpmpp_2m", "euler_a", "euler", "pndm", "lms")  # sd15_engine's keys
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda", "mps")
DEFAULT_PROMPT = "a sharp, high quality, detailed photograph"
DEFAULT_NEGATIVE = "blurry, lowres, distorted, deformed, artifacts"
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class SD15Img2ImgParams(Params):
    prompt: str = param(DEFAULT_PROMPT, max_len=2000, doc="what the result should look like")
    negative_prompt: str = param(DEFAULT_NEGATIVE, max_len=2000, doc="what to steer away from")
    strength: float = param(0.4, lo=0.0, hi=1.0, lo_open=True,
                            doc="how much is re-generated: 0 keeps the input, 1 ignores it")
    steps: int = param(25, lo=1, hi=200, doc="scheduler steps for strength 1; "
                                              "int(steps * strength) are run")
    guidance_scale: float = param(7.5, lo=0.0, hi=30.0,
                                  doc="classifier-free guidance; <= 1 turns it off")
    scheduler: str = param("dpmpp_2m", choices=SCHEDULER_NAMES, doc="diffusers scheduler")
    seed: int = param(0, lo=0, hi=MAX_SEED, doc="torch.Generator seed")
    max_side: int = param(512, lo=64, hi=2048,
                          doc="long side of the working size (multiple of 8, aspect kept)")
    precision: str = param("auto", choices=PRECISIONS,
                           doc="auto: fp16 on GPU, bf16 on CPUs with bf16 units, else fp32")
    device: str = param("auto", choices=DEVICES, doc="auto: cuda, then mps, then cpu")
    max_batch: int = param(0, lo=0, hi=64, doc="variants per UNet call; 0 = automatic")

    def __post_init__(self) -> None:
        super().__post_init__()
        if int(self.steps * self.strength) < 1:
            raise ValueError(
                f"strength={self.strength} with steps={self.steps} runs "
                f"int(steps * strength) = 0 denoising steps: allowed strength >= "
                f"{1 / self.steps:g} at {self.steps} steps (or more steps)"
            )


@dataclass(frozen=True)
class SD15Txt2ImgParams(Params):
    prompt: str = param(
        "a studio portrait photograph of a person, sharp focus, natural light, high detail",
        max_len=2000, doc="what to generate")
    negative_prompt: str = param(DEFAULT_NEGATIVE, max_len=2000, doc="what to steer away from")
    width: int = param(512, lo=64, hi=1024, doc="multiple of 8")
    height: int = param(512, lo=64, hi=1024, doc="multiple of 8")
    steps: int = param(30, lo=1, hi=200, doc="scheduler steps")
    guidance_scale: float = param(7.5, lo=0.0, hi=30.0, doc="classifier-free guidance")
    scheduler: str = param("dpmpp_2m", choices=SCHEDULER_NAMES, doc="diffusers scheduler")
    seed: int = param(0, lo=0, hi=MAX_SEED, doc="torch.Generator seed")
    precision: str = param("auto", choices=PRECISIONS, doc="as for sd15_img2img")
    device: str = param("auto", choices=DEVICES, doc="as for sd15_img2img")

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("width", "height"):
            if getattr(self, name) % 8:
                raise ValueError(f"{name}={getattr(self, name)} is invalid: allowed a "
                                 "multiple of 8 in 64..1024")


class _SD15Base(Restorer):
    stochastic = True
    uses_weights = True
    versions = ("torch", "diffusers", "transformers", "numpy", "pillow")

    def __init__(self, weights: Path | str | None, *, models_dir: Path | None = None,
                 config_dir: Path | None = None) -> None:
        self.weights = weights
        self.models_dir = models_dir
        self.config_dir = config_dir

    @classmethod
    def build(cls, weights: Path | str | None = None, *, models_dir: Path | None = None,
              config_dir: Path | None = None) -> Restorer:
        return cls(weights, models_dir=models_dir, config_dir=config_dir)

    def pipeline(self, device: str = "auto", precision: str = "auto") -> Any:
        """The loaded (cached) :class:`SD15Pipeline`; raises WeightsError with the fix."""
        from review.media.restore.sd15_weights import load_pipeline

        return load_pipeline(self.weights, models_dir=self.models_dir,
                             config_dir=self.config_dir, device=device, precision=precision)


class SD15Img2Img(_SD15Base):
    """diffusers StableDiffusionImg2ImgPipeline on local weights."""

    name = "sd15_img2img"
    title = "SD1.5 img2img"
    Params = SD15Img2ImgParams
    has_strength = True
    grid_keys = ("strength", "seed")
    featured = True
    simulated_truth = {"boundary": 20.0, "width": 3.0, "strength_slope": 25.0,
                       "reference_strength": 0.2}

    def restore(self, inp: RestoreInput,
                params: AnyParams | Mapping[str, Any] | None = None) -> RestoreResult:
        p = self.params(params)
        assert isinstance(p, SD15Img2ImgParams)  # self.params makes this class's Params
        return self.restore_grid(inp, [p.strength], [p.seed], p)[0]

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
        """All (strength, seed) variants of one input, sharing work (strength-major order)."""
        from review.media.restore.sd15_engine import restore_grid

        p = self.params(params)
        assert isinstance(p, SD15Img2ImgParams)  # self.params makes this class's Params
        pipe = self.pipeline(p.device, p.precision)
        return restore_grid(pipe, inp, strengths, seeds, p, progress=progress, cancel=cancel)

    def _run(self, inp: RestoreInput, params: Any) -> tuple[Image.Image, dict]:
        raise NotImplementedError  # restore() goes through restore_grid


class SD15Txt2Img(_SD15Base):
    """Generates sharp synthetic references; it takes no degraded input."""

    name = "sd15_txt2img"
    title = "SD1.5 text-to-image (synthetic references)"
    Params = SD15Txt2ImgParams
    takes_input = False

    def restore(self, inp: RestoreInput,
                params: AnyParams | Mapping[str, Any] | None = None) -> RestoreResult:
        raise ValueError("sd15_txt2img generates references and takes no degraded input: "
                         "call generate(params) (or review.media.restore.generate_reference)")

    def generate(self, params: SD15Txt2ImgParams | Mapping[str, Any] | None = None, *,
                 progress: Callable[[int, int], None] | None = None,
                 cancel: Callable[[], bool] | None = None) -> RestoreResult:
        """One text-to-image reference."""
        from review.media.restore.sd15_engine import generate_reference

        p = self.params(params)
        assert isinstance(p, SD15Txt2ImgParams)  # self.params makes this class's Params
        return generate_reference(self.pipeline(p.device, p.precision), p, progress=progress,
                                  cancel=cancel)

    def _run(self, inp: RestoreInput, params: Any) -> tuple[Image.Image, dict]:
        raise NotImplementedError


def generate_reference(
    prompt: str,
    seed: int,
    size: tuple[int, int] = (512, 512),
    *,
    weights: Path | str | None,
    models_dir: Path | None = None,
    **params: Any,
) -> RestoreResult:
    """Convenience: a synthetic sharp reference from ``prompt`` at ``size`` (width, height)."""
    gen = SD15Txt2Img(weights, models_dir=models_dir)
    return gen.generate({"prompt": prompt, "seed": seed, "width": size[0], "height": size[1],
                         **params})
