"""The SD1.5 img2img engine: one input, a grid of strengths x seeds, shared work, batched UNet.

A study restores each degraded image at several strengths and seeds. Run naively, each variant
re-encodes the image with the VAE, re-encodes the prompt and runs its own UNet loop. Here:

* the prompt is encoded once and the image is VAE-encoded once (the posterior's mean and std
  are kept; each seed then draws its own posterior sample, exactly as diffusers does);
* img2img with ``steps`` total steps and strength s runs the *last* int(steps * s) timesteps
  of one shared schedule. So all variants end on the same timesteps, and at global step i every
  variant that has started sits on the same timestep t_i. One loop walks the full schedule and
  a variant joins the UNet batch when its start step is reached; each strength keeps its own
  scheduler instance (multistep schedulers keep per-run history) and all variants are
  evaluated in one UNet call per step (split into chunks of ``max_batch`` variants, times two
  for classifier-free guidance);
* the UNet and VAE run in reduced precision where that is safe (fp16 on GPU, bf16 on CPUs with
  bf16 matrix units); latents and scheduler arithmetic stay fp32.

Noise, precisely. Each variant owns ``torch.Generator(<device>).manual_seed(seed)`` (a CPU
generator when the device is mps) and draws, all as float32 tensors of the latent's shape
(1, 4, H/8, W/8), in this order: (1) the VAE posterior sample, (2) the forward-diffusion noise
added at the first timestep, (3) whatever the scheduler's ``step`` draws (ancestral
schedulers; a list of per-variant generators is passed so each variant's stream is its own).
This is the order of diffusers' ``StableDiffusionImg2ImgPipeline.__call__`` with
``generator=torch.Generator(device).manual_seed(seed)``, so in fp32 a grid variant equals a
plain diffusers call with the same seed and parameters up to batched-matmul round-off (the
tests check this). Text-to-image references use the same loop from pure noise.

A diffusers pipeline is not thread-safe (scheduler state, attention processors): every run holds
the pipeline's lock.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from review.media.restore.base import RestoreInput, RestoreResult, finish_result, library_versions
from review.media.restore.sd15_weights import SD15Pipeline

# name -> (diffusers class, extra config)
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "ddim": ("DDIMScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler",
                 {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}),
    "lms": ("LMSDiscreteScheduler", {}),
}
SCHEDULER_NAMES = tuple(SCHEDULERS)
# The smoke-test model's VAE downsamples by 2, not 8: at 512 px its UNet would run on 256x256
# latents for noise-like output. Smoke runs work at <= 128 px (provenance: working_size).
SMOKE_MAX_SIDE = 128
# What "same seed, same output" holds for (stored with every result). Measured: 1 vs 2 CPU
# threads change oneDNN's reduction order, tiny model at 96x64 px, up to 13/255 (71 % of
# pixels) in bf16 and 1/255 (a few pixels) in fp32; SD1.5-sized random weights in bf16 at
# 256 px, up to 12/255 (6 steps, strength 0.5; 69 % of pixels) and 8/255 (25 steps, strength
# 0.4; 62 %); issue 21 reports up to 32/255 in bf16 with full-size weights. The same thread
# count gave identical bytes in fresh processes, whether the model was just built or loaded,
# run alone or concurrently on a loaded machine (load average 8 on 2 cores).
REPRODUCIBILITY = ("byte-identical for the same seed, parameters, model_identity, library "
                   "versions, device, dtype and cpu_threads; another CPU thread count changes "
                   "the kernels' summation order and the output by up to 32/255 in bf16 "
                   "(1/255 in fp32 on the tiny test model)")
VERSIONS = ("torch", "diffusers", "transformers", "safetensors", "numpy", "pillow",
            "scikit-image")


class RestoreCancelled(Exception):
    """The caller's cancel() returned True; no result was produced."""


def make_scheduler(name: str, config: Any) -> Any:
    """A fresh diffusers scheduler from the pipeline's scheduler config (``from_config``)."""
    if name not in SCHEDULERS:
        raise ValueError(f"scheduler={name!r} is invalid: allowed one of {list(SCHEDULERS)}")
    import diffusers

    cls_name, extra = SCHEDULERS[name]
    return getattr(diffusers, cls_name).from_config(config, **extra)


def working_size(size: tuple[int, int], max_side: int, multiple: int = 8) -> tuple[int, int]:
    """Keep the aspect ratio, cap the long side at ``max_side``, round down to ``multiple``."""
    w, h = size
    scale = min(1.0, max_side / max(w, h))
    return (max(multiple, int(w * scale) // multiple * multiple),
            max(multiple, int(h * scale) // multiple * multiple))


def auto_max_batch(pipeline: SD15Pipeline, pixels: int) -> int:
    """Variants per UNet call: from free memory on CUDA; small on CPU (compute-bound)."""
    if pipeline.device == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info()
        per_variant = 1.0e9 * max(pixels / (512 * 512), 0.25)  # fp16 activations, CFG pair
        return int(max(1, min(16, 0.5 * free // per_variant)))
    if pipeline.device == "mps":
        return 1
    # CPU, SD1.5 UNet at 256 px, bf16, seconds per variant (CFG pair) by variants per call:
    # 1: 1.33, 2: 1.13, 4: 1.09, 8: 1.08 -- the gain stops at 4
    return 4


@dataclass
class _Group:
    """Variants sharing one strength: one scheduler instance, one start step."""

    strength: float
    seeds: list[int]
    scheduler: Any
    start: int  # index into the full timestep list
    generators: list[Any]
    latents: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def _generator(pipeline: SD15Pipeline, seed: int) -> Any:
    import torch

    gen_device = "cpu" if pipeline.device == "mps" else pipeline.device
    return torch.Generator(device=gen_device).manual_seed(int(seed))


def _step_kwargs(scheduler: Any, generators: list[Any]) -> dict[str, Any]:
    """What diffusers' prepare_extra_step_kwargs passes: eta=0 for DDIM, the generator(s)."""
    import inspect

    accepted = set(inspect.signature(scheduler.step).parameters)
    kw: dict[str, Any] = {}
    if "eta" in accepted:
        kw["eta"] = 0.0
    if "generator" in accepted:
        kw["generator"] = generators[0] if len(generators) == 1 else generators
    return kw


def _encode_prompt(pipe: Any, prompt: str, negative: str, cfg: bool, device: Any) -> tuple:
    cond, uncond = pipe.encode_prompt(prompt, device, 1, cfg, negative)
    return cond, uncond


def _denoise(
    pipeline: SD15Pipeline,
    groups: list[_Group],
    timesteps: Any,
    cond: Any,
    uncond: Any,
    guidance_scale: float,
    max_batch: int,
    progress: Callable[[int, int], None] | None,
    cancel: Callable[[], bool] | None,
) -> None:
    """The shared loop: at global step i, every started group is at timestep ``timesteps[i]``."""
    import torch

    unet = pipeline.pipe.unet
    udtype = unet.dtype
    cfg = uncond is not None
    total = sum((len(timesteps) - g.start) * len(g.seeds) for g in groups)
    done = 0
    for i, t in enumerate(timesteps):
        active = [g for g in groups if g.start <= i]
        if not active:
            continue
        if cancel is not None and cancel():
            raise RestoreCancelled()
        x = torch.cat([g.scheduler.scale_model_input(g.latents, t) for g in active])
        preds = []
        for chunk in x.split(max_batch):
            n = chunk.shape[0]
            if cfg:
                inp = torch.cat([chunk, chunk])
                emb = torch.cat([uncond.expand(n, -1, -1), cond.expand(n, -1, -1)])
            else:
                inp, emb = chunk, cond.expand(n, -1, -1)
            out = unet(inp.to(udtype), t, encoder_hidden_states=emb.to(udtype),
                       return_dict=False)[0].float()
            if cfg:
                out_uncond, out_text = out.chunk(2)
                out = out_uncond + guidance_scale * (out_text - out_uncond)
            preds.append(out)
        pred = torch.cat(preds)
        offset = 0
        for g in active:
            k = len(g.seeds)
            g.latents = g.scheduler.step(pred[offset:offset + k], t, g.latents, **g.extra,
                                         return_dict=False)[0]
            offset += k
        done += x.shape[0]
        if progress is not None:
            progress(done, total)


def _decode(pipeline: SD15Pipeline, latents: Any, max_batch: int) -> list[Image.Image]:
    pipe = pipeline.pipe
    vae = pipe.vae
    images: list[Image.Image] = []
    for chunk in latents.split(max_batch):
        dec = vae.decode((chunk / vae.config.scaling_factor).to(vae.dtype), return_dict=False)[0]
        images.extend(pipe.image_processor.postprocess(dec.float(), output_type="pil"))
    return images


def _plain(value: Any) -> Any:
    """A config value as JSON both databases store: non-finite floats as text, tuples as lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value if value is None or isinstance(value, bool | int | float | str) else str(value)


def scheduler_settings(scheduler: Any) -> dict[str, Any]:
    """The scheduler's effective configuration (timestep spacing, steps offset, beta schedule,
    prediction type, solver options ...): all of it changes the output, so all of it goes into
    provenance."""
    return {k: _plain(v) for k, v in sorted(dict(scheduler.config).items())
            if not k.startswith("_")}


def _timesteps(values: Any) -> list[float | int]:
    out: list[float | int] = []
    for t in values:
        f = float(t)
        out.append(int(f) if f.is_integer() else round(f, 4))
    return out


def _provenance(pipeline: SD15Pipeline, scheduler: Any, **extra: Any) -> dict[str, Any]:
    import torch

    threads = {"cpu_threads": torch.get_num_threads()} if pipeline.device == "cpu" else {}
    settings = scheduler_settings(scheduler)
    return {
        "model_identity": pipeline.model_identity,
        "model_name": pipeline.name,
        "smoke_test": pipeline.smoke_test,
        "device": pipeline.device,
        "dtype": pipeline.dtype,
        "scheduler_class": type(scheduler).__name__,
        "timestep_spacing": settings.get("timestep_spacing"),
        "scheduler_config": settings,
        **threads,
        "reproducibility": REPRODUCIBILITY,
        **extra,
    }


def _check_params(pipeline: SD15Pipeline, params: Any) -> None:
    if params.precision != "auto" and params.precision != pipeline.precision:
        raise ValueError(f"precision={params.precision!r} but the pipeline was loaded in "
                         f"{pipeline.precision!r}; load it with the precision you ask for")
    if params.device != "auto" and params.device != pipeline.device:
        raise ValueError(f"device={params.device!r} but the pipeline runs on "
                         f"{pipeline.device!r}")


def restore_grid(
    pipeline: SD15Pipeline,
    inp: RestoreInput,
    strengths: Sequence[float],
    seeds: Sequence[int],
    params: Any,
    *,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> list[RestoreResult]:
    """Restore ``inp`` at every (strength, seed): results in strength-major order.

    ``params`` is an ``SD15Img2ImgParams``; its own strength and seed are replaced per variant
    (and validated). ``progress(done, total)`` counts UNet sample-steps; ``cancel()`` returning
    True stops the run with :class:`RestoreCancelled`.
    """
    import torch
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
    from diffusers.utils.torch_utils import randn_tensor

    if not strengths or not seeds:
        raise ValueError("restore_grid needs at least one strength and one seed")
    if len(set(map(float, strengths))) != len(strengths) or len(set(seeds)) != len(seeds):
        raise ValueError(f"restore_grid got repeated values: strengths={list(strengths)}, "
                         f"seeds={list(seeds)}; each variant must be distinct")
    _check_params(pipeline, params)
    variants = {s: [params.replace(strength=s, seed=seed) for seed in seeds]
                for s in dict.fromkeys(float(s) for s in strengths)}
    t0 = time.perf_counter()
    pipe = pipeline.pipe
    device = torch.device(pipeline.device)
    max_side = min(params.max_side, SMOKE_MAX_SIDE) if pipeline.smoke_test else params.max_side
    wsize = working_size(inp.degraded.size, max_side)
    max_batch = params.max_batch or auto_max_batch(pipeline, wsize[0] * wsize[1])
    with pipeline.lock, torch.inference_mode():
        work = inp.degraded if inp.degraded.size == wsize else inp.degraded.resize(
            wsize, Image.Resampling.LANCZOS)
        image = pipe.image_processor.preprocess(work).to(device)
        cfg = params.guidance_scale > 1.0
        cond, uncond = _encode_prompt(pipe, params.prompt, params.negative_prompt, cfg, device)
        vae = pipe.vae
        moments = vae.encode(image.to(vae.dtype)).latent_dist.parameters.float()
        posterior = DiagonalGaussianDistribution(moments)
        sf = vae.config.scaling_factor

        groups: list[_Group] = []
        for strength, plist in variants.items():
            sched = make_scheduler(params.scheduler, pipe.scheduler.config)
            sched.set_timesteps(params.steps, device=device)
            # diffusers' StableDiffusionImg2ImgPipeline.get_timesteps
            init_t = min(int(params.steps * strength), params.steps)
            start = max(params.steps - init_t, 0) * sched.order
            if hasattr(sched, "set_begin_index"):
                sched.set_begin_index(start)
            gens = [_generator(pipeline, p.seed) for p in plist]
            lats = []
            for g in gens:
                eps = randn_tensor(posterior.mean.shape, generator=g, device=device,
                                   dtype=torch.float32)
                init = sf * (posterior.mean + posterior.std * eps)
                noise = randn_tensor(init.shape, generator=g, device=device,
                                     dtype=torch.float32)
                lats.append(sched.add_noise(init, noise, sched.timesteps[start:start + 1]))
            groups.append(_Group(strength, [p.seed for p in plist], sched, start, gens,
                                 torch.cat(lats), _step_kwargs(sched, gens)))
        timesteps = groups[-1].scheduler.timesteps  # one schedule: every group starts within it
        _denoise(pipeline, groups, timesteps, cond, uncond, params.guidance_scale, max_batch,
                 progress, cancel)
        # batched decoding helps a GPU; on CPU it is slower per image (1.57 s at batch 1 vs
        # 1.69 s at batch 4, SD1.5 VAE at 256 px, bf16)
        decode_batch = 1 if pipeline.device == "cpu" else max_batch
        images = _decode(pipeline, torch.cat([g.latents for g in groups]), decode_batch)
    wall = time.perf_counter() - t0

    results = []
    n = len(images)
    flat = [(g, p) for g in groups for p in variants[g.strength]]
    for img, (g, p) in zip(images, flat, strict=True):
        if img.size != inp.degraded.size:
            img = img.resize(inp.degraded.size, Image.Resampling.LANCZOS)
        extra = _provenance(
            pipeline, g.scheduler, working_size=list(wsize),
            denoising_steps=len(timesteps) - g.start, timesteps=_timesteps(timesteps[g.start:]),
            grid_size=n, grid_wall_time_s=round(wall, 4), max_batch=max_batch,
        )
        results.append(finish_result("sd15_img2img", p, img, inp, wall / n, extra, VERSIONS))
    return results


def generate_reference(
    pipeline: SD15Pipeline,
    params: Any,
    *,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> RestoreResult:
    """Text-to-image: a synthetic, consent-free sharp reference (``SD15Txt2ImgParams``).

    Same components, same loop: the latents start as ``randn(generator) * init_noise_sigma``
    (diffusers' StableDiffusionPipeline.prepare_latents) and run the full schedule.
    """
    import torch
    from diffusers.utils.torch_utils import randn_tensor

    _check_params(pipeline, params)
    t0 = time.perf_counter()
    pipe = pipeline.pipe
    device = torch.device(pipeline.device)
    scale = pipe.vae_scale_factor
    with pipeline.lock, torch.inference_mode():
        cfg = params.guidance_scale > 1.0
        cond, uncond = _encode_prompt(pipe, params.prompt, params.negative_prompt, cfg, device)
        sched = make_scheduler(params.scheduler, pipe.scheduler.config)
        sched.set_timesteps(params.steps, device=device)
        gen = _generator(pipeline, params.seed)
        shape = (1, pipe.unet.config.in_channels, params.height // scale, params.width // scale)
        latents = randn_tensor(shape, generator=gen, device=device, dtype=torch.float32)
        group = _Group(0.0, [params.seed], sched, 0, [gen], latents * sched.init_noise_sigma,
                       _step_kwargs(sched, [gen]))
        _denoise(pipeline, [group], sched.timesteps, cond, uncond, params.guidance_scale, 1,
                 progress, cancel)
        image = _decode(pipeline, group.latents, 1)[0]
    wall = time.perf_counter() - t0
    from review.media.restore.base import compute_metrics

    prov = {
        "method": "sd15_txt2img", "params": params.to_dict(), "seed": params.seed,
        "versions": library_versions(*VERSIONS), "input_size": None,
        "wall_time_s": round(wall, 4),
        **_provenance(pipeline, sched, denoising_steps=len(sched.timesteps),
                      timesteps=_timesteps(sched.timesteps)),
    }
    metrics = compute_metrics(image, image, None)
    metrics = {"blur_effect_output": metrics["blur_effect_output"]}
    return RestoreResult(image=image, provenance=prov, metrics=metrics)
