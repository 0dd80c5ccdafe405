"""Writing numbers for people.

Why one module: the Markdown report, the HTML report and the Analyst page print the same figures,
so they share these rules and a figure reads the same everywhere: "—" for a missing or non-finite
number, never "nan"; a coefficient as "0.712 [0.60, 0.80]". The CSV formula-cell quoting lives
here too, not in `export`, so `python -m review stats` does not import the database layer (~0.4 s).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from review.analysis.agreement import Coef

MISSING = "—"


def finite(x: Any) -> float | None:
    """`x` as a float, or None when it is missing, a boolean, not a number or not finite."""
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def format_number(x: Any, digits: int = 3) -> str:
    """A table cell: "—" for a missing or non-finite number, yes/no for a boolean, a whole number
    as it is, other numbers with `digits` decimals, anything else as text."""
    if x is None:
        return MISSING
    if isinstance(x, bool | np.bool_):
        return "yes" if x else "no"
    if isinstance(x, int | np.integer):
        return str(x)
    if isinstance(x, float | np.floating):
        v = finite(x)
        return MISSING if v is None else f"{v:.{digits}f}"
    return str(x)


def format_ci(ci: Sequence[Any] | None, digits: int = 2) -> str:
    """"[0.60, 0.80]", or "—" without a (finite) interval."""
    if not ci or finite(ci[0]) is None or finite(ci[1]) is None:
        return MISSING
    return f"[{float(ci[0]):.{digits}f}, {float(ci[1]):.{digits}f}]"


def format_coef(c: Coef | None, digits: int = 3) -> str:
    """"0.712 [0.60, 0.80]", "0.712" without an interval, "— (reason)" when not computable."""
    if c is None:
        return MISSING
    if c.value is None or not c.ok:
        return f"{MISSING} ({c.reason or 'not computable'})"
    ci = c.ci95
    return f"{c.value:.{digits}f}" + (f" {format_ci(ci, digits)}" if ci else "")


#: First characters that make a spreadsheet read a CSV cell as a formula (OWASP, CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise_cell(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula, prefixed with a single quote; a text that
    already starts with a quote before such a character gets one more, so `restore_cell` undoes
    exactly this. Anything else (numbers, None, plain text) is returned as it is."""
    if isinstance(value, str) and (value.startswith(FORMULA_START)
                                   or value.startswith("'") and value.lstrip("'").startswith(FORMULA_START)):
        return "'" + value
    return value


def restore_cell(value: Any) -> Any:
    """The inverse of `neutralise_cell`, for reading an exported CSV back."""
    if isinstance(value, str) and value.startswith("'") and value.lstrip("'").startswith(FORMULA_START):
        return value[1:]
    return value
