"""The one base of every error the lab raises on purpose: a refusal whose message tells the user
what is wrong and how to fix it.

The UI shows a `ReviewError` in one place (`review.ui.common.run_action`) and the CLI in one place
(its command group), both as the plain message without a traceback; anything else is a bug and
keeps its traceback. This module is top-level and imports nothing, so every layer (media
included) may use it.

`ReviewError` derives from `Exception`, not `ValueError`: several of its kinds are not bad values
(an outdated schema, missing SD1.5 weights, a job in the wrong state), and a handler that means
"the domain refused" should not also swallow the `ValueError` of a bug. Plain `ValueError`s stay
what they were: invalid arguments (a blur level, a restorer parameter, a ratings file) checked by
functions that know nothing of the lab.
"""

from __future__ import annotations

from typing import ClassVar


class ReviewError(Exception):
    """A refusal with a message meant for the user."""

    level: ClassVar[str] = "error"  # how a page shows it: "error", or "warning" for no mistake
