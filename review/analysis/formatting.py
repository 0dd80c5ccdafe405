"""Reading report coefficients and writing numbers for people.

Why one module: the Markdown report, the HTML report and the Analyst page print the same figures,
so they share these rules and a figure reads the same everywhere: "—" for a missing or non-finite
number, never "nan"; a coefficient as "0.712 [0.60, 0.80]". The report's JSON and the CSV
formula-cell quoting live here too, not in `export`, so `python -m review stats` does not
import the database layer (~0.4 s).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson

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


def coef_value(c: Mapping[str, Any] | None) -> float | None:
    """The value of a report coefficient ({"value", "ci95", ...}), None when not computable."""
    return finite((c or {}).get("value"))


def coef_ci(c: Mapping[str, Any] | None) -> tuple[float, float] | None:
    """The coefficient's 95% interval, None when it has none."""
    ci = (c or {}).get("ci95")
    if not ci:
        return None
    lo, hi = finite(ci[0]), finite(ci[1])
    return None if lo is None or hi is None else (lo, hi)


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


def format_coef(c: Mapping[str, Any] | None, digits: int = 3) -> str:
    """"0.712 [0.60, 0.80]", "0.712" without an interval, "— (reason)" when not computable."""
    if not c:
        return MISSING
    v = coef_value(c)
    if v is None:
        return f"{MISSING} ({c.get('reason', 'not computable')})"
    ci = coef_ci(c)
    return f"{v:.{digits}f}" + (f" {format_ci(ci, digits)}" if ci else "")


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


#: Reports whose JSON is longer than this are written compact (1M ratings: 58 MB instead of
#: 86 MB indented); same content.
INDENT_MAX_CHARS = 1_000_000

#: Keys as `json` writes them (a breakdown by blur level has numbers as keys).
_ORJSON = orjson.OPT_NON_STR_KEYS


def report_json(report: Mapping[str, Any]) -> str:
    """The report as strict JSON (a NaN becomes null), by orjson (1M ratings: 0.16 s where the standard
    library's encoder took 1.2-1.6 s): indented for reading, compact when it is big."""
    text = orjson.dumps(report, option=_ORJSON)
    if len(text) <= INDENT_MAX_CHARS:
        text = orjson.dumps(report, option=_ORJSON | orjson.OPT_INDENT_2)
    return text.decode("utf-8")
