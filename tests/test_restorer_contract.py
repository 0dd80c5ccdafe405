"""Every registered restorer keeps the promises its class declares (review.media.restore.registry):
one run each on a small image checks the output and the capabilities (kernel, reference, strength,
seed, weights, control expectations). The SD1.5 ones run on the tiny in-code pipeline, in the sd15
lane; the others are fast."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from PIL import Image
from skimage import data

from review.media.degrade import BlurSpec, degrade
from review.media.restore import RESTORERS, RestoreInput, Restorer, RestoreResult, get_restorer
from review.media.restore.base import Params, param
from review.media.restore.registry import check, names, register, unregister

#: Parameters that keep one run small wherever a restorer has them (the tiny model's steps, fp32
#: so that CPUs without bf16 units give the same numbers, a generator's smallest size).
FAST = {"steps": 4, "precision": "fp32", "device": "cpu", "num_iter": 5, "width": 64, "height": 64}


def _cases() -> list[Any]:
    return [pytest.param(name, marks=pytest.mark.sd15) if cls.uses_weights else name
            for name, cls in RESTORERS.items()]


@pytest.fixture(scope="module")
def sharp() -> Image.Image:
    # 48x32: the tiny SD1.5 model's VAE halves it to a 24x16 latent, fast on 2 cores
    return Image.fromarray(data.astronaut()).resize((48, 32), Image.Resampling.LANCZOS)


@pytest.fixture(scope="module")
def blurred(sharp: Image.Image) -> Any:
    return degrade(sharp, BlurSpec("defocus", 2.0))


def _restorer(name: str, request: pytest.FixtureRequest) -> Restorer:
    if RESTORERS[name].uses_weights:  # the tiny pipeline, on one torch thread as the sd15 lane runs
        request.getfixturevalue("one_torch_thread")
        return get_restorer(name, sd15_path="tiny", models_dir=request.getfixturevalue("models_dir"))
    return get_restorer(name)


def _run(restorer: Restorer, inp: RestoreInput, **params: Any) -> RestoreResult:
    fields = {f.name for f in dataclasses.fields(restorer.Params)}
    params = {**{k: v for k, v in FAST.items() if k in fields}, **params}
    if restorer.takes_input:
        return restorer.restore(inp, params)
    return restorer.generate(params)  # type: ignore[attr-defined]  # a generator of references


def _u8(result: RestoreResult) -> np.ndarray:
    return np.asarray(result.image, dtype=np.int16)


@pytest.mark.parametrize("name", _cases())
def test_restorer_keeps_its_declared_contract(name: str, request: pytest.FixtureRequest,
                                              sharp: Image.Image, blurred: Any) -> None:
    cls = RESTORERS[name]
    check(cls)
    restorer = _restorer(name, request)
    full = RestoreInput(blurred.image, kernel=blurred.kernel, reference=sharp)
    out = _run(restorer, full)

    # output: RGB at the input's size (a generator's at the size asked), provenance names it
    assert out.image.mode == "RGB"
    assert out.image.size == (sharp.size if cls.takes_input else (FAST["width"], FAST["height"]))
    assert out.provenance["method"] == name
    assert set(out.provenance["params"]) == {f.name for f in dataclasses.fields(cls.Params)}
    assert bool(out.provenance["model_identity"]) == cls.uses_weights

    # what it needs from the input: refused without it, in words that name it
    if not cls.takes_input:
        with pytest.raises(ValueError, match="takes no degraded input"):
            restorer.restore(full)
    if cls.needs_kernel:
        with pytest.raises(ValueError, match="kernel"):
            _run(restorer, dataclasses.replace(full, kernel=None))
    elif cls.takes_input and not cls.needs_reference:  # a real photo, as it arrived
        assert _run(restorer, RestoreInput(blurred.image)).image.size == sharp.size
    if cls.needs_reference:
        with pytest.raises(ValueError, match="reference"):
            _run(restorer, dataclasses.replace(full, reference=None))

    # same parameters, same image; a stochastic one changes with the seed
    assert np.array_equal(_u8(_run(restorer, full)), _u8(out))
    if cls.stochastic:
        seeds = [_u8(_run(restorer, full, seed=s)) for s in (1, 2)]
        assert not np.array_equal(*seeds)
    if cls.has_strength:
        low, high = (_u8(_run(restorer, full, strength=s)) for s in (0.5, 1.0))
        assert not np.array_equal(low, high)
    if cls.grid_keys:
        assert callable(getattr(restorer, "restore_grid", None))

    # a control looks as a careful rater is expected to score it
    if cls.control is not None:
        lo, hi = cls.control
        if lo >= 4:  # expected faithful: the sharp original
            assert out.metrics["psnr"] >= 40
        if hi <= 3:  # expected not faithful: no closer to the original than the blurred input
            assert out.metrics["psnr"] <= out.metrics["psnr_input"] + 0.5


def test_declarations_contradicting_the_parameters_are_refused() -> None:
    @dataclasses.dataclass(frozen=True)
    class NoStrength(Params):
        size: int = param(3, lo=1, hi=9)

    class Claims(Restorer):
        name = "claims"
        title = "claims a strength it has not"
        Params = NoStrength
        has_strength = True

        def _run(self, inp: RestoreInput, params: Any) -> tuple[Image.Image, dict]:
            return inp.degraded, {}

    with pytest.raises(ValueError, match="strength"):
        register(Claims)
    with pytest.raises(ValueError, match="already registered"):
        register(RESTORERS["wiener"])
    with pytest.raises(ValueError, match="unknown capabilities"):
        names(needs_kernal=True)
    with pytest.raises(ValueError, match="unknown restorer"):
        unregister("claims")
    assert "claims" not in RESTORERS
