"""Blur synthesis: kernel invariants, level semantics, border handling, determinism, validation."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from scipy.spatial.distance import pdist
from skimage import data, measure

from review.media.degrade import (
    KINDS,
    BlurSpec,
    apply_kernel,
    degrade,
    kernel_from_bytes,
    kernel_preview,
    kernel_to_bytes,
    make_kernel,
    shake_trajectory,
)

SYNTHETIC = [k for k in KINDS if k != "real"]
LEVELS = [0, 0.5, 1, 3, 7.5, 20, 101]


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(data.astronaut())


def _blur_effect(img: Image.Image) -> float:
    return float(measure.blur_effect(np.asarray(img, dtype=np.float64) / 255, channel_axis=-1))


def _support(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.nonzero(kernel > 0)
    return rows, cols


# ----------------------------------------------------------------------------- kernel invariants


@pytest.mark.parametrize("kind", SYNTHETIC)
@pytest.mark.parametrize("level", LEVELS)
def test_kernel_is_normalised_odd_square_non_negative(kind: str, level: float) -> None:
    k = make_kernel(BlurSpec(kind, level, angle=33.0, seed=7))
    assert k.dtype == np.float64 and k.ndim == 2
    assert k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1
    assert k.min() >= 0
    assert math.isclose(k.sum(), 1.0, abs_tol=1e-12)
    # trimmed: the outer ring carries weight (no useless zero border)
    if k.shape[0] > 1:
        ring = np.concatenate([k[0], k[-1], k[:, 0], k[:, -1]])
        assert ring.max() > 0


@pytest.mark.parametrize("kind", SYNTHETIC)
def test_level_zero_is_identity(kind: str) -> None:
    assert np.array_equal(make_kernel(BlurSpec(kind, 0, angle=12, seed=3)), np.ones((1, 1)))


def test_real_kind_has_no_kernel_and_passes_the_photo_through() -> None:
    spec = BlurSpec("real", None)
    with pytest.raises(ValueError, match="real"):
        make_kernel(spec)
    img = Image.fromarray(data.chelsea())
    out = degrade(img, spec)
    assert out.kernel is None and out.spec == spec
    assert out.image.mode == "RGB" and out.image.tobytes() == img.tobytes()


# ----------------------------------------------------------------------------- level semantics


@pytest.mark.parametrize("length", [2, 3, 4, 9, 10, 21, 41, 100])
def test_motion_line_horizontal_support_equals_length(length: int) -> None:
    k = make_kernel(BlurSpec("motion_line", length, angle=0))
    rows, cols = _support(k)
    assert set(rows) == {k.shape[0] // 2}  # a single horizontal line through the centre
    width = cols.max() - cols.min() + 1
    assert abs(width - length) <= 1
    row = k[k.shape[0] // 2]
    # the weights add up to L full pixels: a box of length L (half-weight ends for even L)
    assert math.isclose(row.sum() / row.max(), length, abs_tol=1e-9)
    if length % 2 == 1:
        assert width == length and np.allclose(row[row > 0], 1 / length)


def test_motion_line_angle_convention() -> None:
    k0 = make_kernel(BlurSpec("motion_line", 15, angle=0))
    k90 = make_kernel(BlurSpec("motion_line", 15, angle=90))
    assert np.allclose(k90, k0.T, atol=1e-15)
    assert np.array_equal(make_kernel(BlurSpec("motion_line", 15, angle=180)), k0)
    # 45 degrees counter-clockwise on screen: from bottom-left to top-right
    k45 = make_kernel(BlurSpec("motion_line", 15, angle=45))
    c = k45.shape[0] // 2
    assert k45[:c, c + 1 :].sum() > 0.4 and k45[c + 1 :, :c].sum() > 0.4  # up-right, down-left
    assert k45[:c, :c].max() < 1e-3 and k45[c + 1 :, c + 1 :].max() < 1e-3
    assert np.allclose(k45, k45[::-1, ::-1])  # point-symmetric about the centre


@pytest.mark.parametrize("radius", [1, 2, 5, 8, 20])
def test_defocus_support_diameter_is_2r_plus_1(radius: int) -> None:
    k = make_kernel(BlurSpec("defocus", radius))
    assert k.shape == (2 * radius + 1, 2 * radius + 1)
    centre_row = k[radius]
    assert np.count_nonzero(centre_row) == 2 * radius + 1
    assert np.allclose(k, k.T) and np.allclose(k, k[::-1]) and np.allclose(k, k[:, ::-1])
    # flat inside, anti-aliased rim: the rim pixel on the axis carries half the inner weight
    assert math.isclose(centre_row[0] / k[radius, radius], 0.5, abs_tol=1e-12)


@pytest.mark.parametrize("sigma", [1.0, 2.5, 6.0])
def test_gaussian_second_moment_and_scipy_reference(sigma: float) -> None:
    k = make_kernel(BlurSpec("gaussian", sigma))
    r = k.shape[0] // 2
    x = np.arange(-r, r + 1)
    var_x = float((k.sum(axis=0) * x**2).sum())
    var_y = float((k.sum(axis=1) * x**2).sum())
    assert abs(var_x - sigma**2) / sigma**2 < 0.05
    assert abs(var_y - sigma**2) / sigma**2 < 0.05
    # the same sampled, 4-sigma-truncated kernel as scipy.ndimage.gaussian_filter's
    impulse = np.zeros((2 * r + 1, 2 * r + 1))
    impulse[r, r] = 1.0
    ref = ndimage.gaussian_filter(impulse, sigma, truncate=4.0, mode="constant")
    assert np.allclose(k, ref, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("level", [3.0, 17.0, 64.5])
def test_camera_shake_extent_equals_level(seed: int, level: float) -> None:
    traj = shake_trajectory(level, seed)
    assert math.isclose(float(pdist(traj).max()), level, rel_tol=1e-9)
    assert np.allclose(traj.mean(axis=0), 0.0, atol=1e-9)
    k = make_kernel(BlurSpec("camera_shake", level, seed=seed))
    # kernel support diameter (pixel centres): the extent, plus at most one pixel cell per end
    rows, cols = _support(k)
    diam = float(pdist(np.column_stack([cols, rows]).astype(float)).max())
    assert level - 1e-9 <= diam <= level + 2 * math.sqrt(2)
    # bilinear splatting keeps the centre of mass on the centre pixel: no image shift
    c = k.shape[0] // 2
    grid = np.arange(k.shape[0]) - c
    assert abs(float((k.sum(axis=0) * grid).sum())) < 1e-9
    assert abs(float((k.sum(axis=1) * grid).sum())) < 1e-9


# ----------------------------------------------------------------------------- convolution


def test_no_wrap_around_at_borders() -> None:
    img = np.zeros((40, 64))
    img[:, -1] = 1.0  # a white column on the right edge
    k = make_kernel(BlurSpec("motion_line", 21, angle=0))
    out = apply_kernel(img, k)
    assert out.shape == img.shape
    assert out[:, :20].max() < 1e-12  # the left part stays black (up to FFT round-off)
    # symmetric padding mirrors the white column once: 2 white pixels of the 21 in the box
    assert np.allclose(out[:, -1], 2 / 21, atol=1e-12)
    pil = Image.fromarray(np.repeat((img * 255).astype(np.uint8)[..., None], 3, axis=2))
    blurred = np.asarray(degrade(pil, BlurSpec("motion_line", 21)).image)
    assert blurred[:, :20].max() == 0 and np.all(blurred[:, -1] == round(255 * 2 / 21))
    # a circular FFT convolution would bleed the right edge into the left one
    kpad = np.zeros_like(img)
    kpad[: k.shape[0], : k.shape[1]] = k
    kpad = np.roll(kpad, (-(k.shape[0] // 2), -(k.shape[1] // 2)), axis=(0, 1))
    circular = np.real(np.fft.ifft2(np.fft.fft2(img) * np.fft.fft2(kpad)))
    assert circular[:, 0].min() > 0.04


@pytest.mark.parametrize("kind", SYNTHETIC)
def test_constant_image_stays_constant(kind: str) -> None:
    k = make_kernel(BlurSpec(kind, 15, angle=20, seed=4))
    img = np.full((48, 40, 3), 0.6)
    assert np.allclose(apply_kernel(img, k), 0.6, atol=1e-12)
    pil = Image.new("RGB", (40, 48), (153, 20, 240))
    assert degrade(pil, BlurSpec(kind, 15, seed=4)).image.tobytes() == pil.tobytes()


def test_apply_kernel_matches_ndimage_reflect_convolution() -> None:
    rng = np.random.default_rng(0)
    img = rng.uniform(size=(50, 37, 3))
    k = make_kernel(BlurSpec("camera_shake", 9, seed=11))  # asymmetric: catches a flip
    ref = np.stack([ndimage.convolve(img[..., c], k, mode="reflect") for c in range(3)], -1)
    assert np.allclose(apply_kernel(img, k), ref, atol=1e-12)
    assert np.allclose(apply_kernel(img[..., 0], k), ref[..., 0], atol=1e-12)


def test_blur_effect_rises_with_defocus_level_and_matches_reference(astronaut: Image.Image) -> None:
    levels = [0, 1, 2, 4, 8, 16]
    scores = [_blur_effect(degrade(astronaut, BlurSpec("defocus", r)).image) for r in levels]
    assert all(a < b for a, b in zip(scores, scores[1:], strict=False)), scores
    # skimage.measure.blur_effect (Crete-Roffet et al. 2007, "The Blur Effect") on skimage.data's
    # astronaut: sharp 0.40, disk r=8 0.82, line L=41 0.87 (measured here 0.400, 0.843)
    assert abs(scores[0] - 0.40) < 0.05
    assert abs(scores[levels.index(8)] - 0.82) < 0.05
    line = _blur_effect(degrade(astronaut, BlurSpec("motion_line", 41)).image)
    assert abs(line - 0.87) < 0.05  # measured 0.862


# ----------------------------------------------------------------------------- determinism


def test_same_spec_same_kernel_and_bytes(astronaut: Image.Image) -> None:
    small = astronaut.resize((128, 128))
    spec = BlurSpec("camera_shake", 12, seed=5, noise_sigma=4.0, jpeg_quality=70)
    a, b = degrade(small, spec), degrade(small, BlurSpec(**spec.params()))
    assert np.array_equal(a.kernel, b.kernel)
    assert a.image.tobytes() == b.image.tobytes()
    assert a.image.mode == "RGB" and a.image.size == small.size


def test_camera_shake_seed_changes_the_kernel() -> None:
    k1 = make_kernel(BlurSpec("camera_shake", 25, seed=1))
    k2 = make_kernel(BlurSpec("camera_shake", 25, seed=2))
    assert k1.shape != k2.shape or not np.allclose(k1, k2)


def test_noise_is_seeded_and_has_the_requested_sigma() -> None:
    grey = Image.new("RGB", (96, 96), (128, 128, 128))
    spec = BlurSpec("gaussian", 0, seed=3, noise_sigma=10.0)
    a = degrade(grey, spec).image
    assert a.tobytes() == degrade(grey, spec).image.tobytes()
    other = degrade(grey, BlurSpec("gaussian", 0, seed=4, noise_sigma=10.0)).image
    assert a.tobytes() != other.tobytes()
    resid = np.asarray(a, dtype=np.float64) - 128
    assert abs(resid.std() - 10.0) < 0.5 and abs(resid.mean()) < 0.5


def test_jpeg_step_is_deterministic_and_lossy(astronaut: Image.Image) -> None:
    small = astronaut.resize((128, 128))
    spec = BlurSpec("defocus", 2, jpeg_quality=20)
    a = degrade(small, spec).image
    assert a.tobytes() == degrade(small, spec).image.tobytes()
    clean = np.asarray(degrade(small, BlurSpec("defocus", 2)).image, dtype=np.float64)
    err20 = np.abs(np.asarray(a, dtype=np.float64) - clean).mean()
    q95 = degrade(small, BlurSpec("defocus", 2, jpeg_quality=95)).image
    err95 = np.abs(np.asarray(q95, dtype=np.float64) - clean).mean()
    assert 0 < err95 < err20


def test_params_and_key_are_canonical() -> None:
    spec = BlurSpec("motion_line", 9, angle=30, seed=123)
    params = json.loads(json.dumps(spec.params()))
    assert BlurSpec(**params).key() == spec.key()
    assert params == {
        "kind": "motion_line", "level": 9.0, "angle": 30.0, "seed": 0,
        "noise_sigma": 0.0, "jpeg_quality": None,
    }
    # fields that cannot change the output do not change the identity
    assert BlurSpec("motion_line", 9, angle=210).key() == spec.key()
    assert BlurSpec("defocus", 4, angle=10, seed=9).key() == BlurSpec("defocus", 4.0).key()
    # fields that do, do
    keys = {
        spec.key(),
        BlurSpec("motion_line", 9, angle=31).key(),
        BlurSpec("motion_line", 10, angle=30).key(),
        BlurSpec("camera_shake", 9, seed=1).key(),
        BlurSpec("camera_shake", 9, seed=2).key(),
        BlurSpec("motion_line", 9, angle=30, noise_sigma=2).key(),
        BlurSpec("motion_line", 9, angle=30, jpeg_quality=80).key(),
        BlurSpec("real", None).key(),
    }
    assert len(keys) == 8 and all(len(k) == 16 for k in keys)


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"kind": "swirl", "level": 3}, "kind"),
        ({"kind": "defocus", "level": -1}, "level"),
        ({"kind": "defocus", "level": 101.5}, "level"),
        ({"kind": "defocus", "level": float("nan")}, "level"),
        ({"kind": "defocus", "level": None}, "level"),
        ({"kind": "real", "level": 3}, "level"),
        ({"kind": "real", "level": None, "noise_sigma": 2}, "noise_sigma"),
        ({"kind": "motion_line", "level": 5, "angle": float("inf")}, "angle"),
        ({"kind": "motion_line", "level": 5, "angle": float("nan")}, "angle"),
        ({"kind": "gaussian", "level": 2, "noise_sigma": -0.1}, "noise_sigma"),
        ({"kind": "gaussian", "level": 2, "jpeg_quality": 0}, "jpeg_quality"),
        ({"kind": "gaussian", "level": 2, "jpeg_quality": 101}, "jpeg_quality"),
        ({"kind": "gaussian", "level": 2, "jpeg_quality": 50.5}, "jpeg_quality"),
        ({"kind": "camera_shake", "level": 2, "seed": -1}, "seed"),
        ({"kind": "camera_shake", "level": 2, "seed": 1.5}, "seed"),
    ],
)
def test_invalid_parameters_are_rejected_by_name(kwargs: dict, param: str) -> None:
    with pytest.raises(ValueError, match=param):
        BlurSpec(**kwargs)


def test_level_cap_and_bounds_are_accepted() -> None:
    for kind in SYNTHETIC:
        BlurSpec(kind, 101)
    BlurSpec("gaussian", 1, jpeg_quality=1)
    BlurSpec("gaussian", 1, jpeg_quality=100)


# ----------------------------------------------------------------------------- storage and UI


@pytest.mark.parametrize("kind", SYNTHETIC)
def test_kernel_bytes_round_trip(kind: str) -> None:
    k = make_kernel(BlurSpec(kind, 13, angle=17, seed=2))
    back = kernel_from_bytes(kernel_to_bytes(k))
    assert back.dtype == np.float64 and np.array_equal(back, k)


def test_kernel_from_bytes_refuses_pickles_and_non_2d() -> None:
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        kernel_from_bytes(buf.getvalue())
    with pytest.raises(ValueError, match="2-D"):
        kernel_from_bytes(kernel_to_bytes(np.ones(3)))


def test_kernel_preview_is_a_viewable_grayscale_square() -> None:
    for spec in (BlurSpec("defocus", 3), BlurSpec("camera_shake", 101, seed=1)):
        img = kernel_preview(make_kernel(spec), size=64)
        assert img.mode == "L" and img.size == (64, 64)
        px = np.asarray(img)
        assert px.max() > 100 and px.min() == 0
    assert np.asarray(kernel_preview(np.ones((1, 1)), size=8)).min() == 255
