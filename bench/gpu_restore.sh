#!/usr/bin/env bash
# GPU throughput of SD1.5-sized img2img at 512 px in fp16: it/s and images/s, eager and with
# torch.compile, plus our grid engine (4 strengths x 2 seeds) against a naive loop of plain calls.
#
# Self-contained: random weights with SD1.5's architecture are built in code (no network, no
# model files); uses the repository's Python (.venv/bin/python, or $PYTHON).
# Published anchor: A100 fp16 SD img2img 21.8 it/s eager, 43.9 it/s with torch.compile
# (diffusers "torch 2.0" benchmark). Without a CUDA device it stops with "no CUDA device" (exit 2).
#
# Usage: bench/gpu_restore.sh [--size 512] [--steps 50] [--strength 0.75] [--runs 3]
#                             [--scheduler pndm] [--no-compile] [--no-grid]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
if [ ! -x "$PY" ]; then PY="$(command -v python3)"; fi
export HF_HUB_OFFLINE=1
exec "$PY" - "$@" <<'PYEOF'
import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.getcwd())
ap = argparse.ArgumentParser(prog="bench/gpu_restore.sh",
                             description="SD1.5-sized img2img fp16 throughput on one CUDA GPU")
ap.add_argument("--size", type=int, default=512, help="image side in px")
ap.add_argument("--steps", type=int, default=50, help="scheduler steps")
ap.add_argument("--strength", type=float, default=0.75, help="img2img strength")
ap.add_argument("--runs", type=int, default=3, help="timed calls per configuration")
ap.add_argument("--scheduler", default="pndm",
                choices=["ddim", "dpmpp_2m", "euler_a", "euler", "pndm", "lms"])
ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile run")
ap.add_argument("--no-grid", action="store_true", help="skip the grid engine comparison")
args = ap.parse_args()
if args.size % 8 or not 64 <= args.size <= 2048:
    ap.error("--size must be a multiple of 8 in 64..2048")
if not 0 < args.strength <= 1 or int(args.steps * args.strength) < 2:
    ap.error("need 0 < strength <= 1 and at least 2 denoising steps")

import torch  # noqa: E402

if not torch.cuda.is_available():
    print("no CUDA device: this benchmark needs an NVIDIA GPU with a CUDA build of torch "
          f"(torch {torch.__version__}, cuda {torch.version.cuda})", file=sys.stderr)
    sys.exit(2)

import numpy as np  # noqa: E402
from diffusers.utils import logging as dlogging  # noqa: E402
from PIL import Image  # noqa: E402

from review.media.restore.base import RestoreInput  # noqa: E402
from review.media.restore.sd15 import SD15Img2ImgParams  # noqa: E402
from review.media.restore.sd15_engine import make_scheduler, restore_grid  # noqa: E402
from review.media.restore.sd15_tiny import sd15_sized_components  # noqa: E402
from review.media.restore.sd15_weights import pipeline_from_components  # noqa: E402

dlogging.set_verbosity_error()
props = torch.cuda.get_device_properties(0)
print(f"== gpu_restore: {props.name}, {props.total_memory / 2**30:.0f} GiB, capability "
      f"{props.major}.{props.minor} | torch {torch.__version__} cuda {torch.version.cuda} | "
      f"{platform.platform()}")
denoise = int(args.steps * args.strength)
print(f"config: {args.size} px, fp16, {args.steps} steps x strength {args.strength} = {denoise} "
      f"UNet steps per image (CFG batch 2), scheduler {args.scheduler}")

t0 = time.perf_counter()
with tempfile.TemporaryDirectory() as tmp, torch.device("cuda"):
    comps = sd15_sized_components(Path(tmp))
ours = pipeline_from_components(comps, identity="random-sd15-sized", device="cuda",
                                precision="fp16")
pipe = ours.pipe
pipe.scheduler = make_scheduler(args.scheduler, pipe.scheduler.config)
print(f"built SD1.5-sized random pipeline on the GPU in {time.perf_counter() - t0:.1f} s")

rng = np.random.default_rng(0)
image = Image.fromarray((rng.random((args.size, args.size, 3)) * 255).astype(np.uint8))
prompt = "a sharp, high quality, detailed photograph"
negative = "blurry, lowres, distorted, deformed, artifacts"


def one_call(seed=0):
    """Plain diffusers call; returns (wall s, denoising it/s from per-step timestamps)."""
    stamps = []

    def on_step(p, i, t, kw):
        torch.cuda.synchronize()
        stamps.append(time.perf_counter())
        return kw

    torch.cuda.synchronize()
    start = time.perf_counter()
    pipe(prompt, image=image, strength=args.strength, num_inference_steps=args.steps,
         guidance_scale=7.5, negative_prompt=negative, callback_on_step_end=on_step,
         generator=torch.Generator("cuda").manual_seed(seed))
    torch.cuda.synchronize()
    wall = time.perf_counter() - start
    its = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    return wall, its


def measure(label, warmups):
    t = time.perf_counter()
    for _ in range(warmups):
        one_call()
    warm = time.perf_counter() - t
    runs = [one_call(seed=s) for s in range(args.runs)]
    wall = float(np.median([r[0] for r in runs]))
    its = float(np.median([r[1] for r in runs]))
    print(f"{label}: {its:.1f} it/s, {1 / wall:.2f} images/s ({wall:.2f} s per image, "
          f"median of {args.runs}; warm-up {warm:.1f} s)", flush=True)
    return its


eager = measure("eager", 1)
compiled = None
if not args.no_compile:
    pipe.unet.to(memory_format=torch.channels_last)
    pipe.unet = torch.compile(pipe.unet, mode="reduce-overhead", fullgraph=True)
    compiled = measure("torch.compile (reduce-overhead, fullgraph, channels_last)", 2)
print("published anchor: A100 fp16 img2img 21.8 it/s eager, 43.9 it/s torch.compile "
      "(diffusers torch 2.0 benchmark)")
if compiled is not None:
    print(f"compile speed-up here: {compiled / eager:.2f}x (anchor: {43.9 / 21.8:.2f}x)")

if not args.no_grid:
    strengths, seeds = [0.2, 0.4, 0.6, 0.8], [0, 1]
    params = SD15Img2ImgParams(steps=args.steps, scheduler=args.scheduler, precision="fp16",
                               max_side=args.size)
    inp = RestoreInput(image)
    restore_grid(ours, inp, strengths, seeds, params)  # warm-up (and compiles, if compiled)
    torch.cuda.synchronize()
    t = time.perf_counter()
    restore_grid(ours, inp, strengths, seeds, params)
    torch.cuda.synchronize()
    grid = time.perf_counter() - t
    t = time.perf_counter()
    for s in strengths:
        for seed in seeds:
            pipe(prompt, image=image, strength=s, num_inference_steps=args.steps,
                 guidance_scale=7.5, negative_prompt=negative,
                 generator=torch.Generator("cuda").manual_seed(seed))
    torch.cuda.synchronize()
    naive = time.perf_counter() - t
    n = len(strengths) * len(seeds)
    unet = "compiled" if compiled is not None else "eager"
    print(f"grid {len(strengths)} strengths x {len(seeds)} seeds ({unet} UNet): ours "
          f"{grid:.2f} s ({n / grid:.2f} images/s), naive loop {naive:.2f} s "
          f"({n / naive:.2f} images/s), ratio {grid / naive:.3f}")
PYEOF
