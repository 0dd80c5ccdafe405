"""Restorer interface, classical baselines, controls and parameter validation (no torch here;
the SD1.5 restorers are tested in test_sd15.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data, restoration
from skimage.measure import blur_effect
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from review.media.degrade import BlurSpec, degrade
from review.media.restore import (
    RESTORERS,
    RestoreInput,
    get_restorer,
    restorer_class,
)
from review.media.restore.classical import WienerParams, edgetaper
from review.media.restore.sd15 import SD15Img2ImgParams, SD15Txt2ImgParams

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(data.astronaut())


def _arr(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.float64) / 255.0


def _psnr(ref: Image.Image, img: Image.Image) -> float:
    return peak_signal_noise_ratio(_arr(ref), _arr(img), data_range=1.0)


# ----------------------------------------------------------------------------- import, registry


def test_import_does_not_import_torch() -> None:
    code = ("import review.media.restore, sys; "
            "from review.media.restore import get_restorer, RESTORERS; "
            "[get_restorer(n, sd15_path='tiny') for n in RESTORERS]; "
            "bad = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]; "
            "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_registry_names_and_unknown() -> None:
    assert set(RESTORERS) == {"sd15_img2img", "sd15_txt2img", "wiener", "unsupervised_wiener",
                              "richardson_lucy", "blurred", "hidden_reference"}
    for name in RESTORERS:
        r = get_restorer(name)
        assert r.name == name
        assert restorer_class(name).Params is r.Params
    with pytest.raises(ValueError, match="valid names.*wiener"):
        get_restorer("gfpgan")


# ----------------------------------------------------------------------------- params


def test_params_defaults_and_round_trip() -> None:
    p = WienerParams()
    assert p.to_dict() == {"balance": 0.01, "pad_mode": "reflect"}
    assert WienerParams.from_dict(p.to_dict()) == p
    sd = SD15Img2ImgParams()
    assert sd.prompt == "a sharp, high quality, detailed photograph"
    assert sd.negative_prompt.startswith("blurry")
    assert (sd.strength, sd.scheduler, sd.max_side, sd.precision) == (0.4, "dpmpp_2m", 512,
                                                                      "auto")
    assert SD15Img2ImgParams(steps=10.0).steps == 10  # integral float from JSON is accepted
    described = {d["name"]: d for d in SD15Img2ImgParams.describe()}
    assert described["strength"]["allowed"] == "a number, 0 < strength <= 1"
    assert described["scheduler"]["default"] == "dpmpp_2m"


@pytest.mark.parametrize(
    "cls, raw, words",
    [
        (WienerParams, {"balance": -1.0}, ["balance", "0 < balance <= 10"]),
        (WienerParams, {"balance": 0.0}, ["balance", "0 < balance"]),
        (WienerParams, {"pad_mode": "wrap"}, ["pad_mode", "reflect", "edge"]),
        (WienerParams, {"balanse": 0.1}, ["balanse", "valid parameters", "balance"]),
        (WienerParams, {"balance": "a lot"}, ["balance", "a number"]),
        (WienerParams, {"balance": float("nan")}, ["balance"]),
        (SD15Img2ImgParams, {"strength": 1.5}, ["strength", "0 < strength <= 1"]),
        (SD15Img2ImgParams, {"strength": 0.0}, ["strength"]),
        (SD15Img2ImgParams, {"steps": 0}, ["steps", "1 <= steps <= 200"]),
        (SD15Img2ImgParams, {"steps": 2.5}, ["steps", "an integer"]),
        (SD15Img2ImgParams, {"seed": -1}, ["seed", "0 <= seed"]),
        (SD15Img2ImgParams, {"seed": True}, ["seed"]),
        (SD15Img2ImgParams, {"strength": 0.05, "steps": 10}, ["strength", "0 denoising steps"]),
        (SD15Img2ImgParams, {"precision": "int8"}, ["precision", "bf16", "fp16"]),
        (SD15Img2ImgParams, {"max_side": 32}, ["max_side", "64 <= max_side <= 2048"]),
        (SD15Txt2ImgParams, {"width": 100}, ["width", "multiple of 8"]),
    ],
)
def test_params_validation(cls: type, raw: dict, words: list[str]) -> None:
    with pytest.raises(ValueError) as err:
        cls.from_dict(raw)
    for w in words:
        assert w in str(err.value), (w, str(err.value))


def test_scheduler_string_validation_lists_valid_ones() -> None:
    with pytest.raises(ValueError) as err:
        SD15Img2ImgParams(scheduler="dpm++")
    for name in ("ddim", "dpmpp_2m", "euler_a", "euler", "pndm", "lms"):
        assert name in str(err.value)


# ----------------------------------------------------------------------------- input


def test_restore_input_validation(astronaut: Image.Image) -> None:
    small = astronaut.resize((64, 64))
    with pytest.raises(ValueError, match="pixel-aligned"):
        RestoreInput(astronaut, reference=small)
    gray = RestoreInput(small.convert("L"), kernel=np.ones((3, 3)))
    assert gray.degraded.mode == "RGB"
    assert gray.kernel.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="kernel"):
        RestoreInput(small, kernel=np.array([[1.0, -2.0]]))


# ----------------------------------------------------------------------------- classical

MODERATE = [
    BlurSpec("defocus", 3),
    BlurSpec("defocus", 5),
    BlurSpec("motion_line", 9, angle=30),
    BlurSpec("motion_line", 15),
    BlurSpec("gaussian", 2),
]


@pytest.mark.parametrize("method", ["wiener", "unsupervised_wiener", "richardson_lucy"])
@pytest.mark.parametrize("spec", MODERATE, ids=lambda s: f"{s.kind}{s.level:g}")
@pytest.mark.slow
def test_classical_beats_blurred(astronaut: Image.Image, method: str, spec: BlurSpec) -> None:
    d = degrade(astronaut, spec)
    res = get_restorer(method).restore(RestoreInput.from_degraded(d, reference=astronaut))
    assert res.image.size == astronaut.size
    blurred_psnr = _psnr(astronaut, d.image)
    assert res.metrics["psnr_input"] == pytest.approx(blurred_psnr)
    assert res.metrics["psnr"] == pytest.approx(_psnr(astronaut, res.image))
    # at least 1 dB better than the blurred input (measured margins: 1.7 to 5.0 dB)
    assert res.metrics["psnr"] > blurred_psnr + 1.0, (res.metrics, blurred_psnr)
    assert res.metrics["ssim"] > res.metrics["ssim_input"]
    assert res.metrics["blur_effect_output"] < res.metrics["blur_effect_input"]


@pytest.mark.parametrize("spec", [BlurSpec("defocus", 4, noise_sigma=2, seed=1),
                                  BlurSpec("motion_line", 12, angle=45, noise_sigma=2, seed=2)],
                         ids=["defocus4", "motion12"])
def test_wiener_with_noise(astronaut: Image.Image, spec: BlurSpec) -> None:
    d = degrade(astronaut, spec)
    inp = RestoreInput.from_degraded(d, reference=astronaut)
    res = get_restorer("wiener").restore(inp, {"balance": 0.02})
    assert res.metrics["psnr"] > _psnr(astronaut, d.image) + 1.0, res.metrics


def test_border_handling_beats_plain_skimage(astronaut: Image.Image) -> None:
    """Pad + edgetaper + crop removes the border ringing of a plain circular deconvolution."""
    d = degrade(astronaut, BlurSpec("motion_line", 15))
    blurred = _arr(d.image)
    plain = np.stack([restoration.wiener(blurred[..., c], d.kernel, 0.01, clip=False)
                      for c in range(3)], axis=2)
    plain_psnr = peak_signal_noise_ratio(_arr(astronaut), np.clip(plain, 0, 1), data_range=1.0)
    ours = get_restorer("wiener").restore(RestoreInput.from_degraded(d, reference=astronaut))
    assert ours.metrics["psnr"] > plain_psnr + 3.0, (ours.metrics["psnr"], plain_psnr)


def test_edgetaper_keeps_constant_and_interior() -> None:
    psf = np.ones((5, 5)) / 25
    const = np.full((40, 50), 0.3)
    assert np.allclose(edgetaper(const, psf), 0.3)
    rng = np.random.default_rng(0)
    img = rng.random((40, 50))
    tapered = edgetaper(img, psf)
    assert np.allclose(tapered[6:-6, 6:-6], img[6:-6, 6:-6])  # interior untouched
    assert not np.allclose(tapered[0], img[0])  # the seam is blended


def test_classical_needs_kernel(astronaut: Image.Image) -> None:
    for method in ("wiener", "unsupervised_wiener", "richardson_lucy"):
        with pytest.raises(ValueError, match="known blur kernel"):
            get_restorer(method).restore(RestoreInput(astronaut))


def test_classical_provenance(astronaut: Image.Image) -> None:
    small = astronaut.resize((96, 80))
    d = degrade(small, BlurSpec("defocus", 2))
    res = get_restorer("unsupervised_wiener").restore(RestoreInput.from_degraded(d), {"seed": 3})
    prov = res.provenance
    assert prov["method"] == "unsupervised_wiener"
    assert prov["params"] == {"seed": 3, "min_balance": 3e-3, "pad_mode": "reflect"}
    assert prov["seed"] == 3 and prov["model_identity"] is None and prov["smoke_test"] is False
    assert prov["versions"]["scikit-image"] and prov["versions"]["numpy"]
    assert prov["device"] == "cpu" and prov["wall_time_s"] > 0
    assert len(prov["estimated_balance"]) == 3
    assert set(res.metrics) == {"blur_effect_input", "blur_effect_output"}  # no reference
    again = get_restorer("unsupervised_wiener").restore(RestoreInput.from_degraded(d),
                                                        {"seed": 3})
    assert np.array_equal(np.asarray(res.image), np.asarray(again.image))


# ----------------------------------------------------------------------------- controls


def test_controls(astronaut: Image.Image) -> None:
    d = degrade(astronaut, BlurSpec("defocus", 6))
    inp = RestoreInput.from_degraded(d, reference=astronaut)
    blurred = get_restorer("blurred").restore(inp)
    assert np.array_equal(np.asarray(blurred.image), np.asarray(d.image))
    assert blurred.metrics["psnr"] == pytest.approx(blurred.metrics["psnr_input"])
    assert blurred.metrics["blur_effect_output"] == pytest.approx(
        blur_effect(np.asarray(d.image.convert("RGB"), float).dot([0.2125, 0.7154, 0.0721])
                    / 255.0))
    hidden = get_restorer("hidden_reference").restore(inp)
    assert np.array_equal(np.asarray(hidden.image), np.asarray(astronaut))
    assert hidden.metrics["psnr"] == 100.0  # identical: capped, JSON-safe
    assert hidden.metrics["ssim"] == pytest.approx(1.0)
    assert hidden.metrics["ssim_input"] == pytest.approx(structural_similarity(
        _arr(astronaut), _arr(d.image), channel_axis=2, data_range=1.0))
    with pytest.raises(ValueError, match="needs the sharp reference"):
        get_restorer("hidden_reference").restore(RestoreInput(d.image))
    with pytest.raises(ValueError, match="unknown parameter"):
        get_restorer("blurred").restore(inp, {"strength": 0.5})


# ----------------------------------------------------------------------------- the restore command


@pytest.mark.parametrize("case", ["missing folder", "read-only folder", "no image suffix"])
def test_restore_refuses_an_unwritable_output_before_any_work(tmp_path: Path, monkeypatch,
                                                              case: str) -> None:
    """`restore` checks OUTPUT first: a missing or read-only folder, or a suffix no image format
    has, is refused before the input is read or a restorer runs (it used to fail after the whole
    restoration)."""
    import os

    from click.testing import CliRunner

    from review.cli import cli
    from review.media.restore import runner

    calls: list[str] = []
    monkeypatch.setattr(runner, "run_restorer", lambda *a, **k: calls.append("ran"))
    monkeypatch.setenv("REVIEW_DATA_DIR", str(tmp_path / "data"))
    src = tmp_path / "in.png"
    Image.new("RGB", (16, 16), (90, 120, 200)).save(src)
    out = {"missing folder": tmp_path / "nowhere" / "out.png",
           "read-only folder": tmp_path / "ro" / "out.png",
           "no image suffix": tmp_path / "out.restored"}[case]
    if case == "read-only folder":
        out.parent.mkdir()
        out.parent.chmod(0o500)
        if os.access(out.parent, os.W_OK):  # running as root: permissions do not bind
            pytest.skip("the file system lets this user write anywhere")
    result = CliRunner().invoke(cli, ["restore", str(src), str(out), "--method", "blurred",
                                      "--blur", "defocus:2"])
    assert result.exit_code == 2, result.output
    expected = {"missing folder": "does not exist", "read-only folder": "not writable",
                "no image suffix": "no image suffix"}[case]
    assert expected in result.output and "OUTPUT" in result.output
    assert calls == [] and not list(tmp_path.rglob("*_blurred.png"))
