"""Control "restorers" for rater screening (the hidden-reference idea of ITU-T P.910 ACR-HR).

``blurred`` returns the degraded input unchanged: a careful rater calls it still blurry or
unfaithful. ``hidden_reference`` returns the sharp original: a careful rater calls it fully
faithful. Both double as gold items, and give the two ends of every study's scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image

from review.media.restore.base import Params, RestoreInput, Restorer


@dataclass(frozen=True)
class NoParams(Params):
    """Controls take no parameters."""


class Blurred(Restorer):
    """The degraded input itself."""

    name = "blurred"
    title = "the blurred input itself (control)"
    Params = NoParams
    control = (1, 3)  # still blurry: a careful rater calls it unfaithful
    featured = True
    simulated_truth = {"boundary": 4.0, "width": 1.5}

    def _run(self, inp: RestoreInput, params: NoParams) -> tuple[Image.Image, dict]:
        return inp.degraded.copy(), {"dtype": "uint8"}


class HiddenReference(Restorer):
    """The sharp original; an input without a reference (a real blurry photo) is an error."""

    name = "hidden_reference"
    title = "the sharp original (hidden reference, control)"
    Params = NoParams
    needs_reference = True
    is_restoration = False
    control = (4, 5)  # the original: a careful rater calls it fully faithful
    featured = True
    simulated_truth = {"boundary": math.inf}

    def _run(self, inp: RestoreInput, params: NoParams) -> tuple[Image.Image, dict]:
        assert inp.reference is not None  # checked by Restorer.restore
        return inp.reference.copy(), {"dtype": "uint8"}
