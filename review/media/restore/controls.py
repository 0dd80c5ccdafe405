"""Control "restorers" for rater screening (the hidden-reference idea of ITU-T P.910 ACR-HR).

``blurred`` returns the degraded input unchanged: a careful rater calls it still blurry or
unfaithful. ``hidden_reference`` returns the sharp original: a careful rater calls it fully
faithful. Both double as gold items, and give the two ends of every study's scale.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from review.media.restore.base import Params, RestoreInput, Restorer


@dataclass(frozen=True)
class NoParams(Params):
    """Controls take no parameters."""


class Blurred(Restorer):
    """The degraded input itself."""

    name = "blurred"
    Params = NoParams

    def _run(self, inp: RestoreInput, params: NoParams) -> tuple[Image.Image, dict]:
        return inp.degraded.copy(), {"dtype": "uint8"}


class HiddenReference(Restorer):
    """The sharp original; an input without a reference (a real blurry photo) is an error."""

    name = "hidden_reference"
    Params = NoParams
    needs_reference = True

    def _run(self, inp: RestoreInput, params: NoParams) -> tuple[Image.Image, dict]:
        assert inp.reference is not None  # checked by Restorer.restore
        return inp.reference.copy(), {"dtype": "uint8"}
