"""The one base of every error the lab raises on purpose: a refusal whose message tells the user
what is wrong and how to fix it.

The UI shows a `ReviewError` in one place (`review.ui.common.run_action`) and the CLI in one place
(its command group), both as the plain message without a traceback; anything else is a bug and
keeps its traceback. This module is top-level and imports nothing of the lab, so every layer
(media included) may use it.

`ReviewError` derives from `Exception`, not `ValueError`: several of its kinds are not bad values
(an outdated schema, missing SD1.5 weights, a job in the wrong state), and a handler that means
"the domain refused" should not also swallow the `ValueError` of a bug. Plain `ValueError`s stay
what they were: invalid arguments (a blur level, a restorer parameter, a ratings file) checked by
functions that know nothing of the lab.
"""

from __future__ import annotations

import os
import stat
from typing import ClassVar


class ReviewError(Exception):
    """A refusal with a message meant for the user."""

    level: ClassVar[str] = "error"  # how a page shows it: "error", or "warning" for no mistake


_NOT_REGULAR = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                (stat.S_ISSOCK, "a socket"))


def regular_file_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be read as an input file, or None when it is a regular file.

    Checked with ``os.stat`` before anything opens the path: a FIFO passes ``exists()`` and
    ``is_dir()`` checks, but opening it for reading waits forever for a writer; a device such as
    ``/dev/zero`` never ends. Symbolic links are followed (a link to a file is fine).
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return f"{os.fspath(path)} cannot be read ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _NOT_REGULAR if test(mode)), "an unusual kind of file")
    return f"{os.fspath(path)} is {kind}, not a regular file"
