"""Classical non-blind deconvolution baselines on the known blur kernel (scikit-image).

``wiener``, ``unsupervised_wiener`` and ``richardson_lucy`` wrap ``skimage.restoration`` and run
per RGB channel. They answer "what does a method that cannot invent detail recover?", so
generative restorations can be rated against an honest baseline.

Border handling: the FFT-based deconvolutions assume a circular (wrap-around) blur, while real
blur (and ``review.media.degrade``) is not circular, so a plain call rings from every border. Each
channel is therefore padded by the kernel size (``pad_mode``: reflect/symmetric/edge), its outer
frame is tapered towards its own circularly blurred copy (MATLAB's ``edgetaper``: the weight is
one minus the normalised autocorrelation of the kernel's projections, so the image becomes
consistent with a circular blur at the wrap-around seam), deconvolved, and cropped back.

Measured on ``skimage.data.astronaut()`` (PSNR against the sharp original, dB; blurred input
first): defocus r=3 25.8 -> wiener 29.0, r=5 22.9 -> 27.2; motion L=15 21.8 -> 26.4; gaussian
sigma=2 25.0 -> 28.3; defocus r=4 + noise 2/255 24.0 -> 27.6 (wiener, balance 0.01).
``tests/test_restore.py`` asserts that every baseline beats its blurred input at moderate blur.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from PIL import Image

from review.media.decode import from_array, to_array
from review.media.restore.base import Params, RestoreInput, Restorer, param

PadMode = Literal["reflect", "symmetric", "edge"]
PAD_MODES: tuple[PadMode, ...] = ("reflect", "symmetric", "edge")


def edgetaper(channel: np.ndarray, psf: np.ndarray) -> np.ndarray:
    """Blend the frame of ``channel`` into its circularly blurred copy (MATLAB ``edgetaper``).

    alpha = (1 - a_rows) x (1 - a_cols), where a_* is the circular autocorrelation of the
    kernel's projection on that axis normalised to 1 at lag 0: alpha is 0 at the wrap-around
    seam and 1 a kernel-width inside it.
    """
    h, w = channel.shape
    kh, kw = psf.shape
    otf = np.zeros((h, w))
    otf[:kh, :kw] = psf
    otf = np.roll(otf, (-(kh // 2), -(kw // 2)), axis=(0, 1))
    blurred = np.real(np.fft.ifft2(np.fft.fft2(channel) * np.fft.fft2(otf)))
    alpha = np.ones((h, w))
    for axis, n in ((0, h), (1, w)):
        proj = psf.sum(axis=1 - axis)
        auto = np.real(np.fft.ifft(np.abs(np.fft.fft(proj, n)) ** 2))
        weight = 1.0 - auto / auto.max()
        alpha *= weight[:, None] if axis == 0 else weight[None, :]
    return alpha * channel + (1.0 - alpha) * blurred


def _per_channel(img: Image.Image, psf: np.ndarray | None, pad_mode: str, deconv: Any) -> np.ndarray:
    """Pad, taper, deconvolve and crop each RGB channel; returns float (H, W, 3) in [0, 1]."""
    if psf is None:  # Restorer.restore refuses such an input before it gets here
        raise ValueError("deconvolution needs the blur kernel")
    mode = PAD_MODES[PAD_MODES.index(pad_mode)]  # the validated choice, as numpy's literal type
    arr = to_array(img)
    pad = int(max(psf.shape))
    out = np.empty_like(arr)
    for c in range(arr.shape[2]):
        ch = edgetaper(np.pad(arr[..., c], pad, mode=mode), psf)
        out[..., c] = deconv(ch)[pad:-pad, pad:-pad]
    return np.clip(out, 0.0, 1.0)


class Deconvolution(Restorer):
    """What the classical baselines share: they need the known kernel and run on scikit-image."""

    needs_kernel = True
    versions = ("numpy", "scikit-image", "scipy", "pillow")


# ----------------------------------------------------------------------------- wiener


@dataclass(frozen=True)
class WienerParams(Params):
    balance: float = param(
        0.01, lo=0.0, hi=10.0, lo_open=True,
        doc="regularisation (noise-to-signal ratio with a Laplacian prior); raise with noise",
    )
    pad_mode: str = param("reflect", choices=PAD_MODES, doc="how the border is extended")


class Wiener(Deconvolution):
    """skimage.restoration.wiener with a fixed balance."""

    name = "wiener"
    title = "Wiener deconvolution"
    Params = WienerParams
    featured = True
    simulated_truth = {"boundary": 12.0, "width": 2.5}

    def _run(self, inp: RestoreInput, params: WienerParams) -> tuple[Image.Image, dict]:
        from skimage.restoration import wiener

        def deconv(ch: np.ndarray) -> np.ndarray:
            return wiener(ch, inp.kernel, params.balance, clip=False)

        return from_array(_per_channel(inp.degraded, inp.kernel, params.pad_mode, deconv)), {}


# ----------------------------------------------------------------------------- unsupervised


@dataclass(frozen=True)
class UnsupervisedWienerParams(Params):
    seed: int = param(0, lo=0, hi=2**32 - 1, doc="seed of the Gibbs sampler")
    min_balance: float = param(
        3e-3, lo=0.0, hi=10.0,
        doc="floor on the estimated balance; 0 gives skimage's plain result",
    )
    pad_mode: str = param("reflect", choices=PAD_MODES, doc="how the border is extended")


class UnsupervisedWiener(Deconvolution):
    """skimage.restoration.unsupervised_wiener (Orieux et al. 2010): the balance is estimated.

    On noise-free 8-bit inputs the sampler estimates only quantisation noise and picks a balance
    near 1e-4, which rings badly on motion kernels (their spectra have near-zeros): astronaut,
    motion L=15 gives 17.0 dB against 21.8 dB blurred. When the estimated balance (prior
    precision / noise precision, averaged over the last chain samples) is below
    ``min_balance``, the channel is re-deconvolved with ``wiener`` at ``min_balance``;
    provenance records the estimated and used balances per channel.
    """

    name = "unsupervised_wiener"
    title = "unsupervised Wiener deconvolution"
    Params = UnsupervisedWienerParams
    # the sampler's seed is a parameter, but the floored balance makes most outputs seed-free:
    # not stochastic, so a plan's seeds do not multiply it
    simulated_truth = {"boundary": 10.0, "width": 2.5}

    def _run(self, inp: RestoreInput, params: UnsupervisedWienerParams) -> tuple[Image.Image, dict]:
        from skimage.restoration import unsupervised_wiener, wiener

        estimated: list[float] = []
        used: list[float | None] = []

        def deconv(ch: np.ndarray) -> np.ndarray:
            rng = np.random.default_rng(params.seed)
            out, chains = unsupervised_wiener(ch, inp.kernel, clip=False, rng=rng)
            tail = slice(-5, None)
            bal = float(np.mean(chains["prior"][tail]) / np.mean(chains["noise"][tail]))
            estimated.append(bal)
            if bal < params.min_balance:
                used.append(params.min_balance)
                return wiener(ch, inp.kernel, params.min_balance, clip=False)
            used.append(None)  # the sampler's posterior mean was kept
            return out

        img = from_array(_per_channel(inp.degraded, inp.kernel, params.pad_mode, deconv))
        return img, {"estimated_balance": estimated, "floored_balance": used}


# ----------------------------------------------------------------------------- richardson-lucy


@dataclass(frozen=True)
class RichardsonLucyParams(Params):
    num_iter: int = param(30, lo=1, hi=500, doc="iterations; more sharpens and amplifies noise")
    pad_mode: str = param("reflect", choices=PAD_MODES, doc="how the border is extended")


class RichardsonLucy(Deconvolution):
    """skimage.restoration.richardson_lucy (Poisson maximum likelihood, iterative)."""

    name = "richardson_lucy"
    title = "Richardson-Lucy deconvolution"
    Params = RichardsonLucyParams
    simulated_truth = {"boundary": 15.0, "width": 3.0}

    def _run(self, inp: RestoreInput, params: RichardsonLucyParams) -> tuple[Image.Image, dict]:
        from skimage.restoration import richardson_lucy

        def deconv(ch: np.ndarray) -> np.ndarray:
            # RL needs non-negative data; the taper keeps values in [0, 1] up to FFT round-off
            return richardson_lucy(np.clip(ch, 0.0, None), inp.kernel, params.num_iter,
                                   clip=False)

        return from_array(_per_channel(inp.degraded, inp.kernel, params.pad_mode, deconv)), {}
