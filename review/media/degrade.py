"""Blur synthesis: kernels with one comparable level in pixels, and the degradation pipeline.

Every synthetic degradation is ``blur -> optional Gaussian noise -> optional JPEG``, fully
determined by a :class:`BlurSpec` (same spec => same kernel and same output bytes).

Blur level semantics (one number per kind, always in pixels, so levels can be plotted on one axis;
level 0 is the identity kernel ``[[1.0]]`` for every synthetic kind):

``motion_line``  level = line length L. The kernel is a straight segment of length L through the
                 kernel centre at ``angle`` degrees, counter-clockwise from the +x axis as seen on
                 screen (image rows grow downwards). Along the segment each pixel gets its exact
                 coverage of the interval [-L/2, L/2]; across it a 1-px tent anti-aliases the
                 line. At angle 0 an odd integer L gives a box of exactly L pixels and an even L
                 gives L-1 full pixels plus two half-weight ends (MATLAB ``fspecial('motion')``).
``camera_shake`` level = the trajectory's extent: the largest distance between any two points of
                 the continuous camera trajectory (its diameter, i.e. the kernel's support
                 diameter up to the sub-pixel splatting). The random trajectory follows Boracchi &
                 Foi (2012) as in DeblurGAN's generator: a constant-speed particle whose velocity
                 gets a Gaussian shake, a centripetal pull toward the start, and rare impulsive
                 reversals. Its shape comes from ``seed``; it is then scaled so that its extent
                 equals the level exactly, shifted so that its time-average (the kernel's centre of
                 mass) sits on the centre pixel (no net image shift), and rasterised with bilinear
                 splatting at equal time per sample.
``defocus``      level = disk radius r. Pixel weight ``clip(r + 0.5 - d, 0, 1)`` with d the distance
                 to the centre: a disk with a 1-px anti-aliased rim, support diameter 2r+1 for
                 integer r (the pixels of ``skimage.morphology.disk(r)`` plus a soft rim).
``gaussian``     level = standard deviation sigma, sampled at pixel centres, truncated at 4 sigma.
``real``         a photo that arrived already blurred: no reference, no kernel, level ``None``.

All kernels are 2-D float64, odd and square, non-negative and sum to 1. Convolution reflects the
image at its borders (symmetric padding) and crops back to the input size, so nothing wraps
around from one edge to the other and a constant image stays constant.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import dataclass
from typing import Any, TypeGuard

import numpy as np
from PIL import Image
from scipy.signal import fftconvolve
from scipy.spatial.distance import pdist

KINDS = ("motion_line", "camera_shake", "defocus", "gaussian", "real")
MAX_LEVEL = 101.0  # px; Lai et al. 2016 use kernels up to 75 px, so 101 leaves head-room
MAX_NOISE_SIGMA = 255.0  # 8-bit units
GAUSSIAN_TRUNCATE = 4.0  # kernel radius in sigmas, as scipy.ndimage.gaussian_filter
DEGRADE_VERSION = 1  # bump when an algorithm changes its output: it is part of BlurSpec.key()

# Camera-shake trajectory generator constants (DeblurGAN's defaults for Boracchi & Foi 2012).
_SHAKE_STEPS = 2000
_SHAKE_LENGTH = 60.0  # raw path length; irrelevant after rescaling to the level, kept for shape
_SHAKE_ANXIETY = 0.005  # DeblurGAN's recommended "expl"
_SPLAT_STEP = 0.25  # px: densify the path so splatting never skips a pixel


@dataclass(frozen=True)
class BlurSpec:
    """What degradation to apply; validated on construction so a bad spec never exists.

    ``angle`` only matters for ``motion_line``; ``seed`` drives the camera-shake trajectory and
    the noise. ``params()`` and ``key()`` canonicalise fields that do not change the output.
    """

    kind: str
    level: float | None
    angle: float = 0.0
    seed: int = 0
    noise_sigma: float = 0.0
    jpeg_quality: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "real":
            if self.level is not None:
                raise ValueError("level must be None for kind 'real' (the blur is unknown)")
            if self.noise_sigma != 0 or self.jpeg_quality is not None:
                raise ValueError(
                    "noise_sigma and jpeg_quality must be unset for kind 'real': "
                    "a real photo is used as it arrived"
                )
        else:
            if not _is_number(self.level):
                raise ValueError(f"level must be a number of pixels, got {self.level!r}")
            if not math.isfinite(self.level) or self.level < 0:
                raise ValueError(f"level must be a finite number >= 0, got {self.level!r}")
            if self.level > MAX_LEVEL:
                raise ValueError(f"level must be <= {MAX_LEVEL:g} px, got {self.level!r}")
        if not _is_number(self.angle) or not math.isfinite(self.angle):
            raise ValueError(f"angle must be a finite number of degrees, got {self.angle!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int | np.integer):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed!r}")
        if not _is_number(self.noise_sigma) or not math.isfinite(self.noise_sigma):
            raise ValueError(f"noise_sigma must be a finite number, got {self.noise_sigma!r}")
        if not 0 <= self.noise_sigma <= MAX_NOISE_SIGMA:
            raise ValueError(
                f"noise_sigma must be in [0, {MAX_NOISE_SIGMA:g}] (8-bit units), "
                f"got {self.noise_sigma!r}"
            )
        if self.jpeg_quality is not None:
            q = self.jpeg_quality
            if isinstance(q, bool) or not isinstance(q, int | np.integer) or not 1 <= q <= 100:
                raise ValueError(f"jpeg_quality must be an integer in 1..100 or None, got {q!r}")

    def params(self) -> dict[str, Any]:
        """Canonical JSON-serialisable fields; ``BlurSpec(**spec.params())`` gives the same key."""
        uses_seed = self.kind == "camera_shake" or self.noise_sigma > 0
        return {
            "kind": self.kind,
            "level": None if self.level is None else float(self.level),
            # a line at 0 and at 180 degrees is the same kernel
            "angle": float(self.angle) % 180.0 if self.kind == "motion_line" else 0.0,
            "seed": int(self.seed) if uses_seed else 0,
            "noise_sigma": float(self.noise_sigma),
            "jpeg_quality": None if self.jpeg_quality is None else int(self.jpeg_quality),
        }

    def key(self) -> str:
        """Short stable identity (sha256 of canonical JSON + algorithm version) for idempotence."""
        payload = json.dumps(
            {"v": DEGRADE_VERSION, **self.params()}, sort_keys=True, separators=(",", ":")
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


@dataclass
class Degraded:
    """A degraded image with the kernel that made it (``None`` for real photos)."""

    image: Image.Image
    kernel: np.ndarray | None
    spec: BlurSpec


def _is_number(x: object) -> TypeGuard[int | float | np.integer | np.floating]:
    """A real number (a numpy scalar included), never a bool."""
    return isinstance(x, int | float | np.integer | np.floating) and not isinstance(x, bool)


# ----------------------------------------------------------------------------- kernels


def make_kernel(spec: BlurSpec) -> np.ndarray:
    """The blur kernel of a spec: 2-D float64, odd square, non-negative, summing to 1."""
    if spec.kind == "real":
        raise ValueError("kind 'real' has no kernel: the photo arrived already blurred")
    p = spec.params()
    level = p["level"]
    if level == 0:
        return np.ones((1, 1), dtype=np.float64)
    if spec.kind == "motion_line":
        k = _motion_line(level, p["angle"])
    elif spec.kind == "camera_shake":
        k = _splat(shake_trajectory(level, p["seed"]))
    elif spec.kind == "defocus":
        k = _defocus(level)
    else:
        k = _gaussian(level)
    return _normalise(_trim(k))


def _grid(radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (x to the right, y downwards) of a (2R+1)^2 kernel."""
    r = np.arange(-radius, radius + 1, dtype=np.float64)
    return np.meshgrid(r, r, indexing="xy")


def _motion_line(length: float, angle_deg: float) -> np.ndarray:
    radius = math.ceil(length / 2 + 1)
    x, y = _grid(radius)
    theta = math.radians(angle_deg)
    ux, uy = math.cos(theta), -math.sin(theta)  # counter-clockwise on screen: y points down
    along = x * ux + y * uy
    across = -x * uy + y * ux
    coverage = np.clip(length / 2 + 0.5 - np.abs(along), 0.0, 1.0)
    tent = np.clip(1.0 - np.abs(across), 0.0, 1.0)
    return coverage * tent


def _defocus(radius_px: float) -> np.ndarray:
    radius = math.ceil(radius_px + 0.5)
    x, y = _grid(radius)
    return np.clip(radius_px + 0.5 - np.hypot(x, y), 0.0, 1.0)


def _gaussian(sigma: float) -> np.ndarray:
    radius = max(1, math.ceil(GAUSSIAN_TRUNCATE * sigma))
    r = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-0.5 * (r / sigma) ** 2)
    return np.outer(g, g)


def _extent(points: np.ndarray) -> float:
    """Largest distance between any two points (the diameter of the point set)."""
    return float(pdist(points).max()) if len(points) > 1 else 0.0


def shake_trajectory(level: float, seed: int) -> np.ndarray:
    """Camera-shake path as an (N, 2) array of (x, y) px, extent == level, time-mean at 0.

    Boracchi & Foi (2012), as DeblurGAN's ``Trajectory``: at each step the velocity gets a
    Gaussian perturbation and a pull toward the start, with a small probability of an impulsive
    near-reversal, and is renormalised to constant speed. All random draws come from
    ``numpy.random.default_rng`` seeded with ``seed``, in a fixed order.
    """
    if not 0 <= level <= MAX_LEVEL:
        raise ValueError(f"level must be in [0, {MAX_LEVEL:g}] px, got {level!r}")
    if level == 0:
        return np.zeros((1, 2))
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    centripetal = 0.7 * rng.uniform()
    prob_big_shake = 0.2 * rng.uniform()
    gaussian_shake = 10.0 * rng.uniform()
    init_angle = 2 * math.pi * rng.uniform()
    n = _SHAKE_STEPS
    jump_draw = rng.uniform(size=n - 1)
    jump_turn = rng.uniform(size=n - 1) - 0.5
    shake = rng.standard_normal(size=(n - 1, 2))

    speed = _SHAKE_LENGTH / (n - 1)
    v = complex(math.cos(init_angle), math.sin(init_angle)) * _SHAKE_ANXIETY
    pos = 0j
    path = [pos]
    for t in range(n - 1):
        dv = _SHAKE_ANXIETY * speed * (
            gaussian_shake * complex(shake[t, 0], shake[t, 1]) - centripetal * pos
        )
        if jump_draw[t] < prob_big_shake * _SHAKE_ANXIETY:
            # impulsive shake: push the velocity back roughly where it came from
            dv += 2 * v * complex(math.cos(math.pi + jump_turn[t]), math.sin(math.pi + jump_turn[t]))
        v += dv
        v = v / abs(v) * speed
        pos += v
        path.append(pos)
    z = np.asarray(path)
    pts = np.column_stack([z.real, z.imag])
    pts = pts * (level / _extent(pts))
    # densify (linear interpolation stays inside the hull, so the extent is unchanged)
    step = float(np.hypot(*np.diff(pts, axis=0).T).max())
    factor = max(1, math.ceil(step / _SPLAT_STEP))
    if factor > 1:
        s = np.arange(len(pts))
        fine = np.linspace(0, len(pts) - 1, (len(pts) - 1) * factor + 1)
        pts = np.column_stack([np.interp(fine, s, pts[:, 0]), np.interp(fine, s, pts[:, 1])])
    return pts - pts.mean(axis=0)


def _splat(points: np.ndarray) -> np.ndarray:
    """Bilinear splatting of equal-weight points onto a grid centred on (0, 0).

    Bilinear weights preserve each point's mass and position, so the kernel's centre of mass is
    the points' mean.
    """
    radius = math.ceil(float(np.abs(points).max())) + 1
    size = 2 * radius + 1
    gx = points[:, 0] + radius
    gy = points[:, 1] + radius
    x0 = np.floor(gx).astype(np.int64)
    y0 = np.floor(gy).astype(np.int64)
    fx = gx - x0
    fy = gy - y0
    kernel = np.zeros(size * size)
    for dx, dy, w in (
        (0, 0, (1 - fx) * (1 - fy)),
        (1, 0, fx * (1 - fy)),
        (0, 1, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        kernel += np.bincount((y0 + dy) * size + (x0 + dx), weights=w, minlength=size * size)
    return kernel.reshape(size, size)


def _trim(kernel: np.ndarray) -> np.ndarray:
    """Crop zero borders, keeping the kernel square, odd and centred on its centre pixel."""
    c = kernel.shape[0] // 2
    rows, cols = np.nonzero(kernel > 0)
    if rows.size == 0:
        raise ValueError("kernel has no positive weight")
    half = int(max(np.abs(rows - c).max(), np.abs(cols - c).max()))
    return kernel[c - half : c + half + 1, c - half : c + half + 1]


def _normalise(kernel: np.ndarray) -> np.ndarray:
    kernel = np.clip(kernel.astype(np.float64), 0.0, None)
    return kernel / kernel.sum()


# ----------------------------------------------------------------------------- images


def apply_kernel(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve a float image (HxW or HxWxC in [0, 1]) with a kernel; same shape out.

    The image is symmetric-padded by half the kernel on each side and convolved with FFT in
    'valid' mode, which is exactly a same-size convolution with reflected borders: no
    wrap-around (a circular FFT would bleed one border into the opposite one), no dark frame.
    """
    image = np.asarray(image, dtype=np.float64)
    kernel = np.asarray(kernel, dtype=np.float64)
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be HxW or HxWxC, got shape {image.shape}")
    if kernel.ndim != 2 or kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
        raise ValueError(f"kernel must be 2-D with odd sides, got shape {kernel.shape}")
    if kernel.shape == (1, 1):
        return image * kernel[0, 0]
    ph, pw = kernel.shape[0] // 2, kernel.shape[1] // 2
    pad = [(ph, ph), (pw, pw)] + [(0, 0)] * (image.ndim - 2)
    padded = np.pad(image, pad, mode="symmetric")
    k = kernel if image.ndim == 2 else kernel[:, :, None]
    out = fftconvolve(padded, k, mode="valid", axes=(0, 1))
    # FFT round-off leaves ~1e-16 outside the input range; a non-negative kernel summing to 1
    # cannot leave it mathematically.
    return np.clip(out, float(image.min()), float(image.max()))


def degrade(image: Image.Image, spec: BlurSpec) -> Degraded:
    """Blur, then add Gaussian noise, then JPEG re-compress; RGB in, RGB out, deterministic."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    if spec.kind == "real":
        return Degraded(image=rgb.copy(), kernel=None, spec=spec)
    kernel = make_kernel(spec)
    arr = np.asarray(rgb, dtype=np.float64) / 255.0
    arr = apply_kernel(arr, kernel)
    if spec.noise_sigma > 0:
        rng = np.random.default_rng(np.random.SeedSequence([spec.seed, 1]))
        arr = arr + rng.standard_normal(arr.shape) * (spec.noise_sigma / 255.0)
    out = Image.fromarray(np.round(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8), "RGB")
    if spec.jpeg_quality is not None:
        buf = io.BytesIO()
        out.save(buf, format="JPEG", quality=int(spec.jpeg_quality), subsampling="4:2:0")
        buf.seek(0)
        with Image.open(buf) as decoded:
            out = decoded.convert("RGB")
    return Degraded(image=out, kernel=kernel, spec=spec)


# ----------------------------------------------------------------------------- storage / UI


def kernel_to_bytes(kernel: np.ndarray) -> bytes:
    """Kernel as .npy bytes (no pickle) for the database."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(kernel, dtype=np.float64), allow_pickle=False)
    return buf.getvalue()


def kernel_from_bytes(data: bytes) -> np.ndarray:
    """Inverse of :func:`kernel_to_bytes`; refuses pickled or non-2-D payloads."""
    arr = np.load(io.BytesIO(data), allow_pickle=False)
    if arr.ndim != 2:
        raise ValueError(f"kernel bytes must hold a 2-D array, got shape {arr.shape}")
    return arr.astype(np.float64, copy=False)


def kernel_preview(kernel: np.ndarray, size: int = 64) -> Image.Image:
    """Grayscale size x size picture of a kernel (white = largest weight), for the UI.

    Small kernels are enlarged with nearest-neighbour so pixels stay crisp; large ones are
    reduced with box averaging so thin trajectories do not vanish.
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    k = np.asarray(kernel, dtype=np.float64)
    peak = float(k.max()) if k.size else 0.0
    scaled = k / peak if peak > 0 else np.zeros_like(k)
    img = Image.fromarray(np.round(np.clip(scaled, 0, 1) * 255).astype(np.uint8), "L")
    resample = Image.Resampling.NEAREST if max(k.shape) <= size else Image.Resampling.BOX
    return img.resize((size, size), resample=resample)
