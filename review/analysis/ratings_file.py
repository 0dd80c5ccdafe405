"""Reading a long-format ratings file (CSV, JSON Lines, Parquet) into the frame the statistics
report and the import read, with what was left out said apart: no ``df.attrs`` passing it along.

Why its own module: a file's encodings, delimiters, spreadsheet row numbers and refusals are not
statistics; `python -m review stats --input` and `import` read files here, build_report only warns
about the rows a file lost (:class:`MissingScores`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from review.analysis import agreement as ag
from review.analysis.formatting import restore_cell
from review.analysis.report import OPTIONAL_COLUMNS
from review.analysis.report_types import json_safe
from review.errors import ReviewError

#: How many dropped rows a warning names.
SHOWN_ROWS = 10


@dataclass(frozen=True)
class MissingScores:
    """Rows of a file without a score, dropped on reading: how many, and the first
    :data:`SHOWN_ROWS` of them as a spreadsheet numbers rows (a CSV's header is row 1)."""

    count: int
    rows: tuple[int, ...]

    def warning(self) -> str:
        """The report's warning about them."""
        shown = ", ".join(str(v) for v in self.rows)
        more = ", ..." if self.count > SHOWN_ROWS else ""
        return f"{self.count} rows of the file without a score were dropped (rows {shown}{more})."


@dataclass(frozen=True, eq=False)
class RatingsFile:
    """A ratings file as read: the validated frame and the rows without a score left out of it
    (None when every row had one)."""

    frame: pd.DataFrame
    missing_scores: MissingScores | None


class RatingsFileError(ReviewError):
    """A ratings file that cannot be read: the message names the file, the row and the fix."""


#: Delimiters a ratings CSV may use: comma, semicolon (Excel where the decimal mark is a comma),
#: tab, pipe. The one found most often in the header line wins.
CSV_DELIMITERS = (",", ";", "\t", "|")
_BOMS = ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))


def _decode(p: Path) -> str:
    """The file's text: UTF-16 or UTF-8 by their byte-order mark, else UTF-8, else Windows-1252
    (what Excel writes for "CSV" on Western-European Windows)."""
    raw = p.read_bytes()
    for bom, codec in _BOMS:
        if raw.startswith(bom):
            try:
                return raw.decode(codec)
            except UnicodeDecodeError as exc:
                raise RatingsFileError(f"{p.name}: starts with a {codec} byte-order mark but is "
                                       f"not valid {codec} (byte {exc.start}); save it again as "
                                       f"CSV UTF-8.") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("cp1252")
    except UnicodeDecodeError as exc:
        raise RatingsFileError(f"{p.name}: not UTF-8, UTF-16 or Windows-1252 text (byte "
                               f"{exc.start}); save it as CSV UTF-8.") from None


def _read_csv(p: Path) -> tuple[pd.DataFrame, int]:
    """A CSV as strings for the required columns, with its delimiter sniffed from the header;
    returns the frame (index: position of the line after the header) and the spreadsheet row
    of its first data line."""
    text = _decode(p)
    header = next((line for line in text[:1 << 16].splitlines() if line.strip()), "")
    sep = max(CSV_DELIMITERS, key=header.count)
    try:
        # as UTF-8 bytes: pandas' C parser reads them ~30 % faster than a str buffer
        df = pd.read_csv(io.BytesIO(text.encode("utf-8")), sep=sep, skip_blank_lines=False,
                         dtype={"item": "string", "rater": "string", "score": "string"})
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else "no data"
        raise RatingsFileError(f"{p.name}: not a readable CSV ({detail}); give a header line "
                               f"item{sep}rater{sep}score and one rating per line.") from None
    df.columns = [restore_cell(str(c).strip()) for c in df.columns]
    for c in df.columns:  # cells our CSV export neutralised against formulas ("'=...") come back
        if not pd.api.types.is_numeric_dtype(df[c]):
            # only the quoted cells go through Python (a per-cell map was 3 s of 1M ratings)
            quoted = df[c].str.startswith("'", na=False).to_numpy(dtype=bool)
            if quoted.any():
                df.loc[quoted, c] = df.loc[quoted, c].map(restore_cell)
    if "score" in df.columns and sep != ",":  # a decimal comma ("4,0") where ';' separates
        df["score"] = df["score"].str.replace(",", ".", regex=False)
    return df, 2  # line 1 is the header


def _strip_ids(col: pd.Series) -> pd.Series:
    """Ids without surrounding spaces (" a" and "a" are one rater); blank ids become missing."""
    if isinstance(col.dtype, pd.StringDtype):  # kept as strings: no 1M Python objects
        return col.str.strip().replace({"": pd.NA})
    if col.dtype == object:
        return col.map(lambda v: (v.strip() or None) if isinstance(v, str) else v)
    return col


def _scores_as_floats(raw: pd.Series) -> np.ndarray:
    """The scores as floats, NaN where missing or not a number (the caller says which row)."""
    if pd.api.types.is_bool_dtype(raw.dtype):
        return np.full(len(raw), np.nan)
    if isinstance(raw.dtype, pd.StringDtype):
        try:  # Arrow's parser: 1M scores in ~30 ms, where to_numeric takes ~1.5 s
            return raw.astype("float64[pyarrow]").to_numpy(dtype=np.float64, na_value=np.nan)
        except (ValueError, TypeError):
            pass  # some cell is not a plain number: to_numeric marks it NaN
    return pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


#: Columns whose cells are single values (ids, scores, labels, numbers): an object or a list
#: there is refused; `restorer_params` is an object by design, and other columns are not read.
SINGLE_VALUE_COLUMNS = (*ag.REQUIRED_COLUMNS, *OPTIONAL_COLUMNS, "flags", "comment", "time_taken_ms",
                        "created_at", "cohort", "strength", "seed", "rater_id")


def _refuse_nested(df: pd.DataFrame, name: str, unit: str) -> None:
    """Refuse the first JSON object or list (or other container) in a single-value column,
    naming the line (JSON Lines, 1-based) or row and the field. A list of flag names is read as
    the comma-separated flags an export writes."""
    if "flags" in df.columns and df["flags"].dtype == object:
        df["flags"] = df["flags"].map(lambda v: ",".join(v) if isinstance(v, list)
                                      and all(isinstance(f, str) for f in v) else v)
    for c in (c for c in SINGLE_VALUE_COLUMNS if c in df.columns):
        if df[c].dtype != object:
            continue
        nested = df[c].map(lambda v: isinstance(v, (dict, list, tuple, set, np.ndarray))).to_numpy(bool)
        if nested.any():
            pos = int(np.flatnonzero(nested)[0])
            value = df[c].iloc[pos]
            shown = repr(value.tolist() if isinstance(value, np.ndarray) else value)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise RatingsFileError(f"{name}, {unit} {int(df.index[pos]) + 1}, field {c!r}: an object "
                                   f"or list (got {shown}) where a single value belongs; write the "
                                   f"{c} as one string or number.")


def read_ratings_file(path: str | Path, *, scale: Sequence[int] | None = None) -> RatingsFile:
    """Read long-format ratings from CSV, JSON Lines (.jsonl/.ndjson) or Parquet, validated.

    CSVs may be comma-, semicolon-, tab- or pipe-separated, UTF-8 (with or without BOM),
    UTF-16 or Windows-1252, with empty rows (dropped). Ids are stripped of surrounding spaces.
    Rows without a score are dropped and counted in the result's ``missing_scores`` (pass it to
    build_report, which warns about them). Anything else that does not fit raises
    :class:`RatingsFileError`, one line naming the file, the row as a spreadsheet numbers it (a
    CSV's header is row 1) and the fix.
    """
    p = Path(path)
    suffix = "".join(p.suffixes[-1:]).lower()
    first_row = 1
    try:
        if suffix in (".csv", ".txt"):
            df, first_row = _read_csv(p)
        elif suffix in (".jsonl", ".ndjson"):
            df = pd.read_json(p, lines=True, dtype=False)
        elif suffix in (".parquet", ".pq"):
            df = pd.read_parquet(p)
        else:
            raise RatingsFileError(f"{p.name}: unknown ratings file type {suffix!r}; use .csv, "
                                   f".jsonl or .parquet.")
    except (ValueError, OSError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RatingsFileError(f"{p.name}: cannot be read as {suffix.lstrip('.')} ({detail}); "
                               f"check the file type and its contents.") from None
    missing = [c for c in ag.REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise RatingsFileError(f"{p.name}: missing required column(s): "
                               f"{', '.join(repr(c) for c in missing)} (found: "
                               f"{list(df.columns)}); the header needs item, rater and score.")
    if suffix not in (".csv", ".txt"):  # JSON and Parquet can hold objects and lists in a cell
        _refuse_nested(df, p.name, "line" if suffix in (".jsonl", ".ndjson") else "row")
    for c in ("item", "rater"):
        df[c] = _strip_ids(df[c])
    if isinstance(df["score"].dtype, pd.StringDtype):
        df["score"] = df["score"].str.strip().replace({"": pd.NA})
    empty = df.isna().all(axis=1).to_numpy()
    if empty.any():
        df = df[~empty]
    row_of = df.index.to_numpy() + first_row  # spreadsheet row of each remaining line

    def refuse(pos: int, column: str, problem: str, fix: str) -> RatingsFileError:
        return RatingsFileError(f"{p.name}, row {int(row_of[pos])}, column {column!r}: "
                                f"{problem}; {fix}.")

    for c in ("item", "rater"):
        bad = df[c].isna().to_numpy()
        if bad.any():
            raise refuse(int(np.flatnonzero(bad)[0]), c, "missing value",
                         f"give every rating its {c} (or delete the row)")
    lo_hi = ag.check_scale(scale) if scale is not None else None
    on_scale = f"give a whole number from {lo_hi[0]} to {lo_hi[1]}" if lo_hi else \
        "give a whole number"
    raw = df["score"]
    x = _scores_as_floats(raw)
    blank = raw.isna().to_numpy()
    with np.errstate(invalid="ignore"):
        checks = [(np.isnan(x) & ~blank, "not a number"),
                  (~np.isnan(x) & (x != np.round(x)), "not a whole number")]
        if lo_hi:
            checks.append((~np.isnan(x) & ((x < lo_hi[0]) | (x > lo_hi[1])),
                           f"outside the scale {lo_hi[0]}..{lo_hi[1]}"))
    for bad, problem in checks:
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise refuse(pos, "score", f"{problem} (got {json_safe(raw.iloc[pos])!r})",
                         f"{on_scale} (or give the right scale)" if lo_hi else on_scale)
    n_blank = int(blank.sum())
    missing_scores = None
    if n_blank:
        missing_scores = MissingScores(n_blank, tuple(int(v) for v in row_of[blank][:SHOWN_ROWS]))
        df = df[~blank].copy()
        x = x[~blank]
    df["score"] = x.astype(np.int64)
    return RatingsFile(df, missing_scores)
