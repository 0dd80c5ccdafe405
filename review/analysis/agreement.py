"""Agreement statistics for fidelity ratings: pure functions on long-format tables.

People disagree about how faithful a restoration is, so every number the lab reports about
ratings must say how far raters agree and how sure we are. This module computes those numbers
from a long-format ``pandas.DataFrame`` with one row per rating: ``item``, ``rater``, ``score``
(integers on an ordinal scale, default 1..5), plus optional columns used by some figures
(``is_gold``, ``expected_min``, ``expected_max``, ``reference_group``, ``is_hidden_reference``)
and characteristic columns for breakdowns (``guideline_version``, ``qa_cohort``, ...).

No database, no Streamlit: everything here is numpy/scipy on arrays, vectorised so that a
study of 100k items x 10 raters is analysed in seconds. scipy.stats and statsmodels are not
imported (~0.4 s of every `python -m review stats`): the few quantiles and intervals taken from
them are computed here step for step as they do, and the tests check them bit for bit.

Conventions
- Ratings are encoded once (:func:`encode_ratings`) into integer codes; when the same rater rated
  the same item twice, the *last* row wins (ratings are superseded, never overwritten).
- A figure that cannot be computed raises :class:`NotEnoughData` with the reason, or is returned
  as a :class:`Coef` whose ``value`` is ``None`` and whose ``reason`` says why. NaN never leaves
  this module as a number.
- Bootstrap confidence intervals resample *items* with replacement (percentile intervals,
  seeded); F-distribution intervals are used for ICC as in Shrout & Fleiss (1979) and
  McGraw & Wong (1996), the same formulas as R ``psych::ICC`` and pingouin.

Sources for the formulas are cited next to each function.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse, special

REQUIRED_COLUMNS = ("item", "rater", "score")
LEVELS = ("nominal", "ordinal", "interval", "ratio")
KAPPA_WEIGHTS = ("unweighted", "linear", "quadratic")
ICC_FORMS = ("ICC1", "ICC2", "ICC3", "ICC1k", "ICC2k", "ICC3k")
#: Below this many multiply-rated items an agreement figure is mostly noise: a rule of thumb, after
#: Krippendorff, Content Analysis (2nd ed., 2004), ch. 11 on how many units reliability data need.
MIN_RELIABLE_ITEMS = 20
#: Pairwise Cohen's kappa is computed only for rater pairs sharing at least this many items:
#: on fewer, a pair's table has at most four filled cells and kappa jumps between a handful of
#: values (and listing every pair that shares one item grows with raters squared).
MIN_PAIR_ITEMS = 5
#: Most (rating, rating) pairs on shared items that pairwise kappa scans (~64 bytes each).
MAX_PAIR_CO_RATINGS = 10_000_000
#: Most confusion-table cells (pairs x categories^2) pairwise kappa holds (8 bytes each).
MAX_PAIR_CELLS = 2_500_000
#: Pair tables come from one sparse product while (raters x scale values)^2 stays under this
#: (its result holds every rater pair twice); beyond it, from the list of rating pairs.
MAX_PAIR_PRODUCT_CELLS = 4_000_000
#: Most categories a scale may have: 0..100, the widest rating scale in use (percent, VAS).
#: Several figures hold categories x categories numbers per item, rater or rater pair
#: (coincidences, Dawid-Skene confusions, pair tables), so memory grows with its square.
MAX_SCALE_CATEGORIES = 101
#: The score a rater gave themselves, before any QA correction (review.analysis.export); gold
#: accuracy judges it where a table has it (see gold_of).
OWN_SCORE = "reviewer_score"
Z95 = 1.959963984540054
#: Inconsistency floor for the P.910 subject model: 1/sqrt(12), the standard deviation that
#: rounding a continuous opinion to an integer vote adds by itself, so a smaller inconsistency
#: cannot be resolved from integer votes. Without a floor the likelihood is unbounded: a rater
#: whose votes alone define the item scores gets nu -> 0 and infinite weight (sureal's
#: content-oblivious MLE collapses the same way on small studies).
MIN_INCONSISTENCY = 1.0 / math.sqrt(12.0)


def _f_ppf(q: float, dfn: Any, dfd: Any) -> Any:
    """scipy.stats.f.ppf(q, dfn, dfd) for 0 < q < 1, from scipy.special as scipy.stats computes
    it (NaN unless both degrees of freedom are > 0): importing scipy.stats costs ~0.4 s of
    every `python -m review stats`."""
    with np.errstate(invalid="ignore"):
        return np.where((np.asarray(dfn) > 0) & (np.asarray(dfd) > 0), special.fdtri(dfn, dfd, q),
                        np.nan)[()]


def _chi2_ppf(q: float, df: Any) -> Any:
    """scipy.stats.chi2.ppf(q, df) for 0 < q < 1 (NaN unless df > 0); see _f_ppf."""
    with np.errstate(invalid="ignore"):
        return np.where(np.asarray(df) > 0, 2 * special.gammaincinv(np.asarray(df) / 2, q), np.nan)[()]


class NotEnoughData(ValueError):
    """A figure cannot be computed from the data given; the message says why."""


@dataclass(frozen=True)
class Coef:
    """One reported figure: a value with its 95% CI and the number of items behind it."""

    value: float | None
    n_items: int = 0
    ci95: tuple[float, float] | None = None
    reason: str | None = None

    @classmethod
    def missing(cls, reason: str, n_items: int = 0) -> Coef:
        return cls(value=None, n_items=n_items, reason=reason)

    @property
    def ok(self) -> bool:
        return self.value is not None and math.isfinite(self.value)

    def with_ci(self, ci: tuple[float, float] | None) -> Coef:
        return Coef(self.value, self.n_items, ci, self.reason)

    def to_dict(self) -> dict[str, Any]:
        """The report form: ``{value, ci95, n_items}`` or ``{value: None, reason}``."""
        if self.value is None or not self.ok:
            return {"value": None, "reason": self.reason or "not computable from these data"}
        ci = None
        if self.ci95 is not None and all(math.isfinite(x) for x in self.ci95):
            ci = [float(self.ci95[0]), float(self.ci95[1])]
        return {"value": float(self.value), "ci95": ci, "n_items": int(self.n_items)}


def coef_of(fn: Any, *args: Any, **kwargs: Any) -> Coef:
    """Run a figure function returning (value, n_items); turn NotEnoughData into a reason."""
    try:
        value, n = fn(*args, **kwargs)
    except NotEnoughData as exc:
        return Coef.missing(str(exc))
    if value is None or not math.isfinite(value):
        return Coef.missing("not computable from these data", n)
    return Coef(float(value), int(n))


# --------------------------------------------------------------------------------------------
# Validation and encoding
# --------------------------------------------------------------------------------------------


def check_scale(scale: Sequence[int]) -> tuple[int, int]:
    """Validate an ordinal scale given as (lowest, highest) integers."""
    try:
        lo, hi = (int(scale[0]), int(scale[1]))
    except (TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"scale must be (lowest, highest) integers, got {scale!r}") from exc
    if lo != scale[0] or hi != scale[1] or lo >= hi:
        raise ValueError(f"scale must be (lowest, highest) integers with lowest < highest, "
                         f"got {scale!r}")
    if hi - lo + 1 > MAX_SCALE_CATEGORIES:
        raise ValueError(f"scale {lo}..{hi} has {hi - lo + 1} categories; at most "
                         f"{MAX_SCALE_CATEGORIES} are supported (e.g. 0..100)")
    return lo, hi


def _row_error(column: str, pos: int, value: Any, problem: str) -> ValueError:
    return ValueError(f"column {column!r}, row {pos + 1}: {problem} (got {value!r})")


def scores_as_float(score: pd.Series, scale: Sequence[int] | None = None,
                    *, allow_missing: bool = True) -> np.ndarray:
    """Scores as float64 (NaN where missing); ValueError naming the row of a bad score.

    Rows are counted from 1 over the data rows (the header line of a file is not a row).
    """
    raw = score.to_numpy()
    if pd.api.types.is_bool_dtype(score.dtype):
        raise _row_error("score", 0, raw[0] if len(raw) else None, "scores must be integers")
    if pd.api.types.is_numeric_dtype(score.dtype):
        x = score.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        x = pd.to_numeric(score, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad = np.isnan(x) & score.notna().to_numpy()
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise _row_error("score", pos, raw[pos], "not an integer score")
    nan = np.isnan(x)
    if not allow_missing and nan.any():
        pos = int(np.flatnonzero(nan)[0])
        raise _row_error("score", pos, raw[pos], "missing score")
    with np.errstate(invalid="ignore"):
        frac = ~nan & (x != np.round(x))
    if frac.any():
        pos = int(np.flatnonzero(frac)[0])
        raise _row_error("score", pos, raw[pos], "not an integer score")
    if scale is not None:
        lo, hi = check_scale(scale)
        with np.errstate(invalid="ignore"):
            out = ~nan & ((x < lo) | (x > hi))
        if out.any():
            pos = int(np.flatnonzero(out)[0])
            raise _row_error("score", pos, raw[pos], f"score outside the scale {lo}..{hi}")
    return x


def _factorize(values: pd.Series, column: str, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes and the ids they stand for (ids sorted where they are sortable).

    Dense integer ids take an O(n) path (presence map + cumsum); other ids are hashed by
    pandas without sorting, then only the distinct ids are sorted and the codes remapped.
    """
    n = len(values)
    if n and pd.api.types.is_integer_dtype(values.dtype) and not values.hasnans:
        v = values.to_numpy(dtype=np.int64)
        lo, hi = int(v.min()), int(v.max())
        if hi - lo <= 4 * n + 1024:
            present = np.bincount(v - lo, minlength=hi - lo + 1) > 0
            mapping = np.cumsum(present) - 1
            return mapping[v - lo], np.flatnonzero(present) + lo
    codes, uniques = pd.factorize(values, sort=False)
    codes = np.asarray(codes, dtype=np.int64)
    if n and (codes < 0).any():
        pos = int(rows[int(np.flatnonzero(codes < 0)[0])])
        raise _row_error(column, pos, None, "missing value")
    ids = np.asarray(uniques, dtype=object)
    try:
        order = np.argsort(ids, kind="stable")
    except TypeError:  # mixed types that do not sort: keep first-seen order
        return codes, ids
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return rank[codes], ids[order]


@dataclass
class Ratings:
    """Integer-coded ratings: the shared input of every figure.

    Arrays hold one entry per (item, rater) rating after duplicates were resolved; ``rows`` are
    the positions of those ratings in the input DataFrame (to align optional columns).
    """

    item: np.ndarray
    rater: np.ndarray
    value: np.ndarray  # index into ``values``
    items: np.ndarray  # item id per code
    raters: np.ndarray  # rater id per code
    values: np.ndarray  # the scale values, ascending
    rows: np.ndarray
    n_duplicates: int = 0
    n_missing_scores: int = 0
    _sorted: bool = field(default=False, repr=False)

    @property
    def n_ratings(self) -> int:
        return int(self.item.size)

    @property
    def n_items(self) -> int:
        return int(self.items.size)

    @property
    def n_raters(self) -> int:
        return int(self.raters.size)

    @property
    def n_values(self) -> int:
        return int(self.values.size)

    @cached_property
    def score(self) -> np.ndarray:
        return self.values[self.value]

    @cached_property
    def counts(self) -> np.ndarray:
        """Value-by-unit count matrix (items x scale values)."""
        return value_counts(self)

    @cached_property
    def ratings_per_item(self) -> np.ndarray:
        return np.bincount(self.item, minlength=self.n_items)

    @cached_property
    def ratings_per_rater(self) -> np.ndarray:
        return np.bincount(self.rater, minlength=self.n_raters)

    @property
    def n_pairable_items(self) -> int:
        return int((self.ratings_per_item >= 2).sum())

    def sorted(self) -> Ratings:
        """The same ratings ordered by (item, rater); needed for pair and per-item scans."""
        if self._sorted:
            return self
        key = self.item * max(self.n_raters, 1) + self.rater
        if key.size < 2 or bool(np.all(key[1:] >= key[:-1])):
            order = None
        else:
            order = np.argsort(key, kind="stable")
        if order is None:
            out = Ratings(self.item, self.rater, self.value, self.items, self.raters, self.values,
                          self.rows, self.n_duplicates, self.n_missing_scores, True)
        else:
            out = Ratings(self.item[order], self.rater[order], self.value[order], self.items,
                          self.raters, self.values, self.rows[order], self.n_duplicates,
                          self.n_missing_scores, True)
        return out

    def subset(self, mask: np.ndarray) -> Ratings:
        """Ratings where ``mask`` is true, with items and raters re-coded densely."""
        mask = np.asarray(mask, dtype=bool)
        item, rater = self.item[mask], self.rater[mask]
        ip = np.bincount(item, minlength=self.n_items) > 0
        rp = np.bincount(rater, minlength=self.n_raters) > 0
        imap, rmap = np.cumsum(ip) - 1, np.cumsum(rp) - 1
        return Ratings(imap[item], rmap[rater], self.value[mask], self.items[ip],
                       self.raters[rp], self.values, self.rows[mask], 0, 0, self._sorted)

    def column(self, df: pd.DataFrame, name: str) -> np.ndarray:
        """An optional column of the input DataFrame aligned with these ratings."""
        return df[name].to_numpy()[self.rows]


def empty_ratings(scale: Sequence[int] = (1, 5)) -> Ratings:
    lo, hi = check_scale(scale)
    z = np.zeros(0, dtype=np.int64)
    return Ratings(z, z, z, np.zeros(0, dtype=object), np.zeros(0, dtype=object),
                   np.arange(lo, hi + 1, dtype=np.float64), z, _sorted=True)


def encode_ratings(df: pd.DataFrame, scale: Sequence[int] = (1, 5)) -> Ratings:
    """Validate a long-format rating table and encode it as integer codes.

    Raises ValueError naming the column (and row) when a required column is missing, an id is
    missing, or a score is not an integer on the scale. Rows with a missing score are dropped
    (counted in ``n_missing_scores``); a repeated (item, rater) keeps the last row.
    """
    lo, hi = check_scale(scale)
    if len(df) == 0:
        return empty_ratings(scale)
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"missing required column(s): {', '.join(repr(c) for c in missing)}; "
                         f"the long format needs {', '.join(REQUIRED_COLUMNS)}")
    x = scores_as_float(df["score"], (lo, hi))
    keep = ~np.isnan(x)
    n_missing = int((~keep).sum())
    rows = np.flatnonzero(keep) if n_missing else np.arange(len(df))
    if rows.size == 0:
        out = empty_ratings(scale)
        out.n_missing_scores = n_missing
        return out
    item_col, rater_col = df["item"], df["rater"]
    if n_missing:
        item_col, rater_col = item_col.iloc[rows], rater_col.iloc[rows]
    item, items = _factorize(item_col, "item", rows)
    rater, raters = _factorize(rater_col, "rater", rows)
    value = (x[rows] - lo).astype(np.int64)
    n_items, n_raters = items.size, raters.size
    key = item * n_raters + rater
    n_dup = 0
    if n_items * n_raters <= 4_000_000:  # a 32 MB presence count; beyond that, sort
        has_dup = bool(np.bincount(key, minlength=n_items * n_raters).max() > 1)
    else:
        has_dup = True  # decide by sorting below
    is_sorted = False
    if has_dup:
        order = np.argsort(key, kind="stable")  # stable: later rows stay later
        ks = key[order]
        last = np.ones(ks.size, dtype=bool)
        last[:-1] = ks[1:] != ks[:-1]
        n_dup = int((~last).sum())
        order = order[last]
        item, rater, value, rows = item[order], rater[order], value[order], rows[order]
        is_sorted = True
    return Ratings(item, rater, value, items, raters,
                   np.arange(lo, hi + 1, dtype=np.float64), rows, n_dup, n_missing, is_sorted)


def value_counts(r: Ratings) -> np.ndarray:
    """Items x values matrix: how many raters gave each value to each item (via bincount)."""
    v = r.n_values
    return np.bincount(r.item * v + r.value, minlength=r.n_items * v).reshape(r.n_items, v)


# --------------------------------------------------------------------------------------------
# Krippendorff's alpha (Krippendorff 2011, "Computing Krippendorff's Alpha-Reliability")
# --------------------------------------------------------------------------------------------


def _diag_embed(x: np.ndarray) -> np.ndarray:
    out = np.zeros(x.shape + (x.shape[-1],), dtype=np.float64)
    idx = np.arange(x.shape[-1])
    out[..., idx, idx] = x
    return out


def distance_matrix(level: str, values: np.ndarray, n_v: np.ndarray) -> np.ndarray:
    """Squared distance delta^2(c, k) between scale values for a level of measurement.

    ``n_v`` (the pairable value frequencies, shape (..., V)) is only used by the ordinal metric:
    delta^2(c, k) = (sum_{g=c..k} n_g - (n_c + n_k) / 2)^2 (Krippendorff 2011, section D).
    """
    values = np.asarray(values, dtype=np.float64)
    nv = values.size
    if level == "nominal":
        return 1.0 - np.eye(nv)
    if level == "interval":
        return (values[:, None] - values[None, :]) ** 2
    if level == "ratio":
        s = values[:, None] + values[None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            d = ((values[:, None] - values[None, :]) / s) ** 2
        return np.where(s == 0, 0.0, d)
    if level == "ordinal":
        n_v = np.asarray(n_v, dtype=np.float64)
        idx = np.arange(nv)
        lo = np.minimum.outer(idx, idx)
        hi = np.maximum.outer(idx, idx)
        cs = np.cumsum(n_v, axis=-1)
        between = cs[..., hi] - cs[..., lo] + n_v[..., lo]
        return (between - (n_v[..., lo] + n_v[..., hi]) / 2.0) ** 2
    raise ValueError(f"unknown level of measurement {level!r}; use one of {LEVELS}")


def coincidence_units(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit coincidence contributions (units x V x V) of the pairable units, and their mask.

    o_ck(u) = (n_uc n_uk - [c == k] n_uc) / (m_u - 1); units with fewer than two values are
    unpairable and contribute nothing.
    """
    m = counts.sum(axis=1)
    pairable = m >= 2
    c = counts[pairable].astype(np.float64)
    w = 1.0 / (m[pairable] - 1.0)
    u = np.einsum("ui,uj->uij", c, c) - _diag_embed(c)
    return u * w[:, None, None], pairable


def coincidence_matrix(counts: np.ndarray) -> np.ndarray:
    """The V x V coincidence matrix of Krippendorff's alpha, as one matrix product."""
    c = np.asarray(counts, dtype=np.float64)
    m = c.sum(axis=1)
    with np.errstate(divide="ignore"):
        w = np.where(m >= 2, 1.0 / (m - 1.0), 0.0)  # unpairable units weigh 0
    cw = c * w[:, None]
    return cw.T @ c - np.diag(cw.sum(axis=0))


def alpha_from_coincidences(o: np.ndarray, level: str, values: np.ndarray) -> np.ndarray:
    """alpha = 1 - D_o / D_e from coincidence matrices of shape (..., V, V); NaN if undefined."""
    n_v = o.sum(axis=-1)
    n = n_v.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        e = (n_v[..., :, None] * n_v[..., None, :] - _diag_embed(n_v)) / (n - 1.0)[..., None, None]
        d = distance_matrix(level, values, n_v)
        d_o = (o * d).sum(axis=(-2, -1))
        d_e = (e * d).sum(axis=(-2, -1))
        a = 1.0 - d_o / d_e
    return np.where((d_e > 0) & (n > 1), a, np.nan)


def alpha_from_counts(counts: np.ndarray, level: str = "ordinal",
                      values: np.ndarray | None = None) -> float:
    """Krippendorff's alpha from an items x values count matrix; NotEnoughData if undefined."""
    counts = np.asarray(counts)
    if values is None:
        values = np.arange(counts.shape[1], dtype=np.float64)
    n_pairable = int((counts.sum(axis=1) >= 2).sum())
    if n_pairable == 0:
        raise NotEnoughData("no item has two or more ratings: alpha needs pairable values")
    o = coincidence_matrix(counts)
    a = float(alpha_from_coincidences(o, level, values))
    if not math.isfinite(a):
        raise NotEnoughData("all pairable ratings have the same value (no variation): "
                            "alpha is undefined")
    return a


def krippendorff_alpha(df: pd.DataFrame | Ratings, level: str = "ordinal",
                       scale: Sequence[int] = (1, 5)) -> float:
    """Krippendorff's alpha of a long-format rating table at a level of measurement.

    Equal to ``krippendorff.alpha(reliability_data, level_of_measurement=level)`` (tested to
    1e-9) but built from integer codes with one bincount, so it is fast on millions of ratings.
    """
    if level not in LEVELS:
        raise ValueError(f"unknown level of measurement {level!r}; use one of {LEVELS}")
    r = df if isinstance(df, Ratings) else encode_ratings(df, scale)
    return alpha_from_counts(r.counts, level, r.values)


# --------------------------------------------------------------------------------------------
# Fleiss' kappa, percent agreement
# --------------------------------------------------------------------------------------------


def fleiss_subset(counts: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Items used by Fleiss' kappa, which needs the same number of ratings on every item.

    We keep the items whose rating count equals the most common count among multiply-rated
    items (ties: the larger count). Returns (mask, count, number of excluded pairable items).
    """
    m = np.asarray(counts).sum(axis=1).astype(np.int64)
    pairable = m >= 2
    if not pairable.any():
        return np.zeros(m.size, dtype=bool), 0, 0
    b = np.bincount(m[pairable])
    modal = int(b.size - 1 - np.argmax(b[::-1]))
    mask = m == modal
    return mask, modal, int(pairable.sum() - mask.sum())


def fleiss_kappa_from_counts(counts: np.ndarray) -> tuple[float, int, int, int]:
    """Fleiss' kappa (as statsmodels computes it) on the modal-count items; (kappa, n_items, k,
    n_excluded)."""
    mask, k, excluded = fleiss_subset(np.asarray(counts))
    n = int(mask.sum())
    if n == 0:
        raise NotEnoughData("no item has two or more ratings: Fleiss' kappa needs them")
    table = np.asarray(counts)[mask]
    p = table.sum(axis=0) / table.sum()
    if float((p**2).sum()) >= 1.0 - 1e-15:
        raise NotEnoughData("all ratings used have the same value (no variation): "
                            "Fleiss' kappa is undefined")
    # statsmodels' fleiss_kappa(table, method="fleiss"), step for step (the tests check it)
    table = 1.0 * table
    n_rat = table.sum(1).max()
    p_rat = ((table * table).sum(1) - n_rat) / (n_rat * (n_rat - 1.0))
    p_mean_exp = (p * p).sum()
    return float((p_rat.mean() - p_mean_exp) / (1 - p_mean_exp)), n, k, excluded


def _agreement_per_unit(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = counts.sum(axis=1)
    pairable = m >= 2
    c = counts[pairable].astype(np.float64)
    mp = m[pairable].astype(np.float64)
    return (c * (c - 1)).sum(axis=1) / (mp * (mp - 1)), pairable


def percent_agreement_from_counts(counts: np.ndarray) -> tuple[float, int]:
    """Mean over multiply-rated items of the share of rater pairs that gave the same value.

    Inflated by imbalanced categories: report it only beside a chance-corrected coefficient.
    """
    agree, pairable = _agreement_per_unit(np.asarray(counts))
    if agree.size == 0:
        raise NotEnoughData("no item has two or more ratings")
    return float(agree.mean()), int(agree.size)


# --------------------------------------------------------------------------------------------
# Cohen's kappa (unweighted, linear, quadratic), for every pair of raters
# --------------------------------------------------------------------------------------------


def kappa_weights(n_categories: int, weights: str | None) -> np.ndarray:
    """Disagreement weights w_ij by category position: 0 on the diagonal, 1 at the extremes."""
    i = np.arange(n_categories)
    dist = np.abs(i[:, None] - i[None, :]) / max(n_categories - 1, 1)
    if weights in (None, "unweighted", "none"):
        return (dist > 0).astype(np.float64)
    if weights == "linear":
        return dist
    if weights == "quadratic":
        return dist**2
    raise ValueError(f"unknown kappa weights {weights!r}; use one of {KAPPA_WEIGHTS}")


def kappa_from_tables(tables: np.ndarray, weights: str | None = None) -> np.ndarray:
    """Cohen's (weighted) kappa of confusion tables (..., K, K): 1 - sum(w*O) / sum(w*E).

    E is the table expected from the two raters' marginals. NaN where undefined (both raters
    used one and the same category).
    """
    t = np.asarray(tables, dtype=np.float64)
    w = kappa_weights(t.shape[-1], weights)
    n = t.sum(axis=(-2, -1))
    rows, cols = t.sum(axis=-1), t.sum(axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        e = rows[..., :, None] * cols[..., None, :] / n[..., None, None]
        obs = (w * t).sum(axis=(-2, -1))
        exp = (w * e).sum(axis=(-2, -1))
        k = 1.0 - obs / exp
    return np.where((exp > 0) & (n > 0), k, np.nan)


def cohen_kappa(a: Sequence[Any], b: Sequence[Any], weights: str | None = None,
                categories: Sequence[Any] | None = None) -> float:
    """Cohen's kappa of two raters' labels on the same items (missing: None/NaN, dropped).

    Weights are by position in ``categories`` (default: the sorted union of observed labels,
    as in scikit-learn and R irr).
    """
    sa, sb = pd.Series(list(a), dtype=object), pd.Series(list(b), dtype=object)
    if len(sa) != len(sb):
        raise ValueError("the two raters must rate the same items (equal lengths)")
    ok = (sa.notna() & sb.notna()).to_numpy()
    sa, sb = sa[ok], sb[ok]
    if len(sa) == 0:
        raise NotEnoughData("the two raters share no rated item")
    cats = sorted(set(sa) | set(sb)) if categories is None else list(categories)
    index = {c: i for i, c in enumerate(cats)}
    try:
        ia = np.array([index[x] for x in sa])
        ib = np.array([index[x] for x in sb])
    except KeyError as exc:
        raise ValueError(f"label {exc.args[0]!r} is not among the categories") from exc
    k = len(cats)
    table = np.bincount(ia * k + ib, minlength=k * k).reshape(k, k)
    value = float(kappa_from_tables(table, weights))
    if not math.isfinite(value):
        raise NotEnoughData("both raters used one and the same category: kappa is undefined")
    return value


def rating_pairs(r: Ratings) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every two ratings of the same item in ``r`` (which must be sorted): (rater a, rater b,
    value a, value b, item), a before b. Built from masked slices, not index gathers (1M
    ratings, 4M pairs: ~4x faster)."""
    if not r._sorted:
        raise ValueError("rating_pairs needs Ratings.sorted()")
    item = r.item
    cols: list[list[np.ndarray]] = [[], [], [], [], []]
    d = 1
    while d < item.size:
        same = item[d:] == item[:-d]
        if not same.any():  # an item with L ratings has pairs at distance < L only
            break
        for out, a in zip(cols, (r.rater[:-d], r.rater[d:], r.value[:-d], r.value[d:], item[d:]),
                          strict=True):
            out.append(a[same])
        d += 1
    if not cols[0]:
        z = np.zeros(0, dtype=np.int64)
        return z, z, z, z, z
    ra, rb, va, vb, it = (np.concatenate(c) for c in cols)
    return ra, rb, va, vb, it


@dataclass(frozen=True)
class PairTables:
    """Confusion tables of the rater pairs that share at least ``min_items`` items, with what
    the budgets left out (see :func:`pair_tables`)."""

    rater_a: np.ndarray  # rater codes, rater_a < rater_b
    rater_b: np.ndarray
    tables: np.ndarray  # (pairs, V, V) counts: rows rater_a's value, columns rater_b's
    min_items: int = 1
    n_rater_pairs: int = 0  # C(raters, 2)
    n_fewer_items: int = 0  # pairs sharing fewer than min_items items (none included)
    n_over_budget: int = 0  # pairs that may share enough items but were not scanned (budget)
    n_raters_scanned: int = 0  # raters whose pairs were scanned (the most active ones)
    n_raters_eligible: int = 0  # raters with at least min_items co-rated items


def _pair_candidates(r: Ratings, min_items: int, max_co_ratings: int) -> tuple[np.ndarray, int]:
    """Raters whose pairs may share ``min_items`` items (enough co-rated items), the most
    active first and cut where scanning their co-ratings would exceed ``max_co_ratings``;
    and how many raters were eligible before the cut. O(ratings): no pair is enumerated."""
    co_rated = r.ratings_per_item[r.item] >= 2
    per_rater = np.bincount(r.rater[co_rated], minlength=r.n_raters)
    eligible = np.flatnonzero(per_rater >= max(min_items, 1))
    if eligible.size < 2:
        return eligible[:0], int(eligible.size)
    order = eligible[np.argsort(-per_rater[eligible], kind="stable")]
    rank = np.full(r.n_raters, -1, dtype=np.int64)
    rank[order] = np.arange(order.size)
    sel = np.flatnonzero(rank[r.rater] >= 0)
    # co-ratings a rater adds when raters join in rank order: for each of its ratings, the
    # ratings of higher-ranked raters on the same item
    by_rank = sel[np.lexsort((rank[r.rater[sel]], r.item[sel]))]
    it = r.item[by_rank]
    start = np.r_[0, np.flatnonzero(it[1:] != it[:-1]) + 1]
    before = np.arange(it.size) - np.repeat(start, np.diff(np.r_[start, it.size]))
    added = np.cumsum(np.bincount(rank[r.rater[by_rank]], weights=before, minlength=order.size))
    k = int(np.searchsorted(added, max_co_ratings, side="right"))
    return np.sort(order[:max(k, 0)]), int(eligible.size)


def pair_tables(r: Ratings, min_items: int = 1, *, max_co_ratings: int = MAX_PAIR_CO_RATINGS,
                max_cells: int = MAX_PAIR_CELLS) -> PairTables:
    """Confusion tables of the rater pairs sharing at least ``min_items`` items, from one
    vectorised pass over co-rated items.

    Memory grows with the ratings, not with raters squared: only raters with ``min_items``
    co-rated items are scanned (a pair cannot share more items than either rater co-rated),
    the most active first until ``max_co_ratings`` (rating, rating) pairs; tables are kept for
    at most ``max_cells / V^2`` pairs (those sharing the most items). What was left out is
    counted, combinatorially, in the result.
    """
    r = r.sorted()
    v, n_all = r.n_values, r.n_raters
    n_rater_pairs = n_all * (n_all - 1) // 2
    scanned, n_eligible = _pair_candidates(r, min_items, max_co_ratings)
    k = int(scanned.size)
    pairs_eligible, pairs_scanned = n_eligible * (n_eligible - 1) // 2, k * (k - 1) // 2
    keep_r = np.zeros(n_all, dtype=bool)
    keep_r[scanned] = True
    sub = r.subset(keep_r[r.rater]) if k else empty_ratings((int(r.values[0]), int(r.values[-1])))
    nr = max(sub.n_raters, 1)
    n: np.ndarray | None = None  # (rating, rating) pairs behind each (pid, cell); None: one each
    if (nr * v) ** 2 <= MAX_PAIR_PRODUCT_CELLS:
        # few raters: co[(rater a, value a), (rater b, value b)] = the items rated so by both,
        # one sparse product instead of every (rating, rating) pair (1M ratings: ~2x faster)
        x = sparse.csr_matrix((np.ones(sub.n_ratings, dtype=np.int64),
                               (sub.item, sub.rater * v + sub.value)), shape=(max(sub.n_items, 1), nr * v))
        co = (x.T.tocsr() @ x).tocsr()
        ra, va = np.divmod(np.repeat(np.arange(nr * v, dtype=np.int64), np.diff(co.indptr)), v)
        rb, vb = np.divmod(co.indices.astype(np.int64), v)
        upper = ra < rb
        pid, cell, n = ra[upper] * nr + rb[upper], va[upper] * v + vb[upper], co.data[upper]
    else:  # many raters: the product would hold both halves of a huge table; list the pairs
        ra, rb, va, vb, _ = rating_pairs(sub)  # sorted by rater within an item: ra < rb
        pid, cell = ra * nr + rb, va * v + vb
    if nr * nr <= 4_000_000:
        present = np.bincount(pid, minlength=nr * nr) > 0
        ids = np.flatnonzero(present)
        inv = (np.cumsum(present) - 1)[pid]
    else:
        ids, inv = np.unique(pid, return_inverse=True)
    shared = np.bincount(inv, weights=n, minlength=ids.size).astype(np.int64)  # n: exact in float
    keep = shared >= min_items
    n_fewer = (n_rater_pairs - pairs_eligible) + (pairs_scanned - int(keep.sum()))
    cap = max(max_cells // (v * v), 0)
    n_cut = 0
    if int(keep.sum()) > cap:
        best = np.flatnonzero(keep)[np.argsort(-shared[keep], kind="stable")[:cap]]
        n_cut = int(keep.sum()) - cap
        keep = np.zeros_like(keep)
        keep[best] = True
    if not keep.all():  # re-number the kept pairs (a gather per (rating, rating) pair)
        on = keep[inv]
        inv, cell, n = (np.cumsum(keep) - 1)[inv[on]], cell[on], None if n is None else n[on]
    ids = ids[keep]
    tables = np.bincount(inv * v * v + cell, weights=n,
                         minlength=ids.size * v * v).astype(np.int64).reshape(ids.size, v, v)
    return PairTables(scanned[ids // nr], scanned[ids % nr], tables, min_items, n_rater_pairs,
                      n_fewer, (pairs_eligible - pairs_scanned) + n_cut, k, n_eligible)


# --------------------------------------------------------------------------------------------
# Intraclass correlation (Shrout & Fleiss 1979; McGraw & Wong 1996)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IccSubset:
    """The complete item x rater table ICC is computed on (ICC needs no missing cells)."""

    matrix: np.ndarray  # (n_items, k_raters) scores
    rater_codes: np.ndarray
    item_codes: np.ndarray
    n_items_total: int
    n_raters_total: int

    @property
    def description(self) -> str:
        n, k = self.matrix.shape
        if n == self.n_items_total and k == self.n_raters_total:
            return f"ICC on all {n} items x {k} raters (complete table)"
        return (f"ICC on the complete table of {n} of {self.n_items_total} items x {k} of "
                f"{self.n_raters_total} raters (the {k} raters with most ratings and the items "
                f"all of them rated; this choice maximises the cells used)")


def icc_subset(r: Ratings) -> IccSubset:
    """Pick the complete-case table for ICC: the top-k raters by number of ratings and the
    items rated by all k of them, with k chosen to use the most cells (ties: more raters)."""
    if r.n_ratings == 0:
        raise NotEnoughData("no ratings")
    per_rater = r.ratings_per_rater
    order = np.argsort(-per_rater, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    rk = rank[r.rater]
    m_max = int(r.ratings_per_item.max())
    # items of each rater in rank order; an item is complete for the top k raters when its
    # streak (how many of the top raters in a row rated it) reaches k. Each step touches only
    # that rater's ratings, and stops once fewer than two items are complete (it only shrinks).
    by_rank = np.argsort(rk, kind="stable")
    bounds = np.searchsorted(rk[by_rank], np.arange(order.size + 1))
    streak = np.zeros(r.n_items, dtype=np.int64)
    best = (0, 0, 0)  # (cells, k, n_complete)
    for k in range(1, min(m_max, r.n_raters) + 1):
        its = r.item[by_rank[bounds[k - 1]:bounds[k]]]
        its = its[streak[its] == k - 1]
        streak[its] = k
        n_complete = int(its.size)
        if n_complete < 2:
            break
        if k >= 2 and (n_complete * k, k) >= best[:2]:
            best = (n_complete * k, k, n_complete)
    if best[1] == 0:
        raise NotEnoughData("no two items were rated by the same two or more raters: "
                            "ICC needs a complete item x rater table")
    k = best[1]
    # items complete for the top-k raters: count their top-k ratings again
    top = rk < k
    have_k = np.bincount(r.item[top], minlength=r.n_items)
    complete = have_k == k
    sel = top & complete[r.item]
    item_pos = np.cumsum(complete) - 1
    y = np.empty((int(complete.sum()), k), dtype=np.float64)
    y[item_pos[r.item[sel]], rk[sel]] = r.score[sel]
    return IccSubset(y, order[:k], np.flatnonzero(complete), r.n_items, r.n_raters)


def icc(matrix: np.ndarray) -> dict[str, Coef]:
    """The six Shrout & Fleiss ICC forms with 95% F-distribution CIs for an items x raters
    table without missing cells.

    ICC1 = ICC(1,1) one-way random, single rater; ICC2 = ICC(2,1) two-way random, absolute
    agreement; ICC3 = ICC(3,1) two-way mixed, consistency; ICC1k/2k/3k: the same for the mean
    of k raters. Formulas and CIs as in Shrout & Fleiss (1979), McGraw & Wong (1996) and R
    ``psych::ICC`` / pingouin ``intraclass_corr``.
    """
    y = np.asarray(matrix, dtype=np.float64)
    if y.ndim != 2 or y.shape[0] < 2 or y.shape[1] < 2:
        reason = "ICC needs at least 2 items each rated by the same 2 or more raters"
        return {f: Coef.missing(reason, int(y.shape[0]) if y.ndim == 2 else 0) for f in ICC_FORMS}
    if np.isnan(y).any():
        raise ValueError("icc() needs a complete table; use icc_subset() first")
    n, k = y.shape
    gm = y.mean()
    ss_total = ((y - gm) ** 2).sum()
    ss_rows = k * ((y.mean(axis=1) - gm) ** 2).sum()
    ss_cols = n * ((y.mean(axis=0) - gm) ** 2).sum()
    ss_err = max(ss_total - ss_rows - ss_cols, 0.0)
    df1, df_within, df_err = n - 1, n * (k - 1), (n - 1) * (k - 1)
    msb = ss_rows / df1
    msw = (ss_total - ss_rows) / df_within
    msj = ss_cols / (k - 1)
    mse = ss_err / df_err
    if ss_total <= 0:
        reason = "all scores in the table are identical (no variance): ICC is undefined"
        return {f: Coef.missing(reason, n) for f in ICC_FORMS}
    q = 0.975
    with np.errstate(invalid="ignore", divide="ignore"):
        icc1 = (msb - msw) / (msb + (k - 1) * msw)
        icc2 = (msb - mse) / (msb + (k - 1) * mse + k * (msj - mse) / n)
        icc3 = (msb - mse) / (msb + (k - 1) * mse)
        icc1k = (msb - msw) / msb
        icc2k = (msb - mse) / (msb + (msj - mse) / n)
        icc3k = (msb - mse) / msb
        f1, f3 = msb / msw, msb / mse
        f1l = f1 / _f_ppf(q, df1, df_within)
        f1u = f1 * _f_ppf(q, df_within, df1)
        f3l = f3 / _f_ppf(q, df1, df_err)
        f3u = f3 * _f_ppf(q, df_err, df1)
        l1, u1 = (f1l - 1) / (f1l + k - 1), (f1u - 1) / (f1u + k - 1)
        l3, u3 = (f3l - 1) / (f3l + k - 1), (f3u - 1) / (f3u + k - 1)
        fj = msj / mse
        term = n * (1 + (k - 1) * icc2) - k * icc2
        vn = df_err * (k * icc2 * fj + term) ** 2
        vd = df1 * k**2 * icc2**2 * fj**2 + term**2
        v = vn / vd
        if math.isfinite(v) and v > 0:
            f2u = _f_ppf(q, df1, v)
            f2l = _f_ppf(q, v, df1)
            l2 = n * (msb - f2u * mse) / (f2u * (k * msj + (k * n - k - n) * mse) + n * msb)
            u2 = n * (f2l * msb - mse) / (k * msj + (k * n - k - n) * mse + n * f2l * msb)
        else:
            l2 = u2 = float("nan")
        values = {
            "ICC1": (icc1, (l1, u1)),
            "ICC2": (icc2, (l2, u2)),
            "ICC3": (icc3, (l3, u3)),
            "ICC1k": (icc1k, (1 - 1 / f1l, 1 - 1 / f1u)),
            "ICC2k": (icc2k, (l2 * k / (1 + l2 * (k - 1)), u2 * k / (1 + u2 * (k - 1)))),
            "ICC3k": (icc3k, (1 - 1 / f3l, 1 - 1 / f3u)),
        }
    out: dict[str, Coef] = {}
    for form, (val, ci) in values.items():
        val = float(val)
        if not math.isfinite(val):
            out[form] = Coef.missing("undefined for this table (zero variance in a term)", n)
            continue
        lo, hi = float(ci[0]), float(ci[1])
        # Tiny tables can give bounds that are not finite, or, past the pole of the
        # Spearman-Brown step k x / (1 + (k - 1) x) at x = -1/(k-1), an interval that no
        # longer holds the estimate: report no interval rather than a wrong one.
        ok = math.isfinite(lo) and math.isfinite(hi) and lo <= val + 1e-12 and val <= hi + 1e-12
        out[form] = Coef(val, n, (lo, hi) if ok else None)
    return out


# --------------------------------------------------------------------------------------------
# Per item: MOS, DMOS (ITU-T P.910 ACR-HR)
# --------------------------------------------------------------------------------------------


def item_mos(r: Ratings) -> pd.DataFrame:
    """Per item: n, MOS, std (ddof=1) and the 95% CI half-width 1.96*std/sqrt(n) (sureal's
    MosModel convention); std and CI are NaN for items with one rating."""
    n = r.ratings_per_item.astype(np.float64)
    s = np.bincount(r.item, weights=r.score, minlength=r.n_items)
    ss = np.bincount(r.item, weights=r.score**2, minlength=r.n_items)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s / n
        var = np.where(n >= 2, np.maximum(ss - n * mean**2, 0.0) / (n - 1), np.nan)
        std = np.sqrt(var)
        half = 1.96 * std / np.sqrt(n)
    return pd.DataFrame({"n_ratings": n.astype(np.int64), "mos": mean, "mos_std": std,
                         "mos_ci95_half": half})


def _as_bool(values: np.ndarray) -> np.ndarray:
    s = pd.Series(values)
    if s.dtype == object or pd.api.types.is_string_dtype(s.dtype):
        low = s.astype(str).str.strip().str.lower()
        return low.isin(["1", "true", "t", "yes", "y", "1.0"]).to_numpy()
    return s.fillna(False).astype(bool).to_numpy()


def item_dmos(r: Ratings, reference_group: np.ndarray, is_reference: np.ndarray,
              scale_max: float) -> pd.DataFrame:
    """DMOS per item against the hidden reference of the same source (ITU-T P.910 ACR-HR).

    Per rater: DV = V(item) - V(hidden reference of the same ``reference_group``) + scale max;
    the item's DMOS is the mean DV over raters who rated both, with a 1.96*std/sqrt(n) CI.
    Reference items themselves and items without a rated reference get NaN.
    """
    is_ref = _as_bool(is_reference)
    grp_codes, _ = pd.factorize(pd.Series(reference_group), sort=False)
    grp_codes = np.asarray(grp_codes, dtype=np.int64)
    nr = max(r.n_raters, 1)
    key = grp_codes * nr + r.rater
    ref = is_ref & (grp_codes >= 0)
    ref_keys, inv = np.unique(key[ref], return_inverse=True)
    ref_mean = (np.bincount(inv, weights=r.score[ref], minlength=ref_keys.size)
                / np.maximum(np.bincount(inv, minlength=ref_keys.size), 1))
    cand = ~is_ref & (grp_codes >= 0)
    pos = np.searchsorted(ref_keys, key[cand])
    pos_c = np.minimum(pos, max(ref_keys.size - 1, 0))
    found = (pos < ref_keys.size) & (ref_keys[pos_c] == key[cand]) if ref_keys.size else \
        np.zeros(pos.size, dtype=bool)
    idx = np.flatnonzero(cand)[found]
    dv = r.score[idx] - ref_mean[pos_c[found]] + scale_max
    items = r.item[idx]
    n = np.bincount(items, minlength=r.n_items).astype(np.float64)
    s = np.bincount(items, weights=dv, minlength=r.n_items)
    ss = np.bincount(items, weights=dv**2, minlength=r.n_items)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, s / n, np.nan)
        var = np.where(n >= 2, np.maximum(ss - n * mean**2, 0.0) / (n - 1), np.nan)
        half = 1.96 * np.sqrt(var) / np.sqrt(n)
    return pd.DataFrame({"dmos": mean, "dmos_ci95_half": half, "dmos_n": n.astype(np.int64)})


# --------------------------------------------------------------------------------------------
# Per rater: P.910 / P.913 subject model, BT.500 screening, gold accuracy
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubjectModel:
    """Maximum-likelihood fit of O_ij = psi_j + Delta_i + nu_i X (ITU-T P.910 Annex E,
    P.913 12.6; Netflix sureal's maximum-likelihood model without content ambiguity)."""

    quality: np.ndarray  # psi per item (NaN: not estimable)
    quality_ci95_half: np.ndarray
    bias: np.ndarray  # Delta per rater (NaN: rater excluded)
    bias_ci95_half: np.ndarray
    inconsistency: np.ndarray  # nu per rater
    inconsistency_ci95: np.ndarray  # (raters, 2): low, high
    at_floor: np.ndarray  # bool per rater: nu is the floor, not an estimate
    n_iter: int
    converged: bool


def subject_model(r: Ratings, *, max_iter: int = 1000, tol: float = 1e-6,
                  min_inconsistency: float = MIN_INCONSISTENCY) -> SubjectModel:
    """Fit the P.910 subject model by alternating maximum-likelihood updates.

    Starting from psi = MOS, each step sets Delta_i = mean_j(O_ij - psi_j) (then subtracts the
    mean bias, which is fixed at 0), nu_i^2 = mean_j (O_ij - psi_j - Delta_i)^2 (floored at
    ``min_inconsistency``), and psi_j = the mean of O_ij - Delta_i weighted by 1/nu_i^2: the
    likelihood's stationary equations, solved in turn (sureal takes damped Newton steps towards
    the same equations). Stops when no psi moves by ``tol``. Uses items with two or more
    ratings and raters with two or more such ratings; an item outside the fit gets the weighted
    mean of O - Delta of its fitted raters.

    Identifiability: per item, rater i's nu-update has an interior fixed point only when
    y^2 + (1 - W s) y + 1 = 0 has a positive root (s: the rater's vote variance, W: the other
    raters' combined precision sum_k 1/nu_k^2, y = W nu_i^2), i.e. when W s >= 3. A rater much
    more consistent than the others combined drives nu_i -> 0 (its votes become the item
    scores); the floor stops that and ``at_floor`` flags it. 95% CIs as in sureal: psi +- 1.96/sqrt(sum_i
    1/nu_i^2), Delta +- 1.96 nu_i/sqrt(n_i), and nu_i * sqrt(n_i / chi2_{0.975, 0.025}(n_i)).
    """
    ni, nr = r.n_items, r.n_raters
    nan_i, nan_r = np.full(ni, np.nan), np.full(nr, np.nan)
    multi = r.ratings_per_item[r.item] >= 2
    per_rater = np.bincount(r.rater[multi], minlength=nr)
    use = multi & (per_rater[r.rater] >= 2)
    # raters dropping out can leave items with one rating: drop those, then raters left with
    # fewer than two ratings (one pass: enough to keep every fitted parameter identifiable)
    per_item = np.bincount(r.item[use], minlength=ni)
    use &= per_item[r.item] >= 2
    fit_r = np.bincount(r.rater[use], minlength=nr)
    use &= fit_r[r.rater] >= 2
    if not use.any():
        return SubjectModel(nan_i, nan_i, nan_r, nan_r, nan_r, np.full((nr, 2), np.nan),
                            np.zeros(nr, dtype=bool), 0, False)
    it, rt, o = r.item[use], r.rater[use], r.score[use]
    n_r = np.bincount(rt, minlength=nr).astype(np.float64)
    n_i = np.bincount(it, minlength=ni).astype(np.float64)
    active = n_r > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        psi = np.bincount(it, weights=o, minlength=ni) / n_i
    delta = np.zeros(nr)
    nu = np.ones(nr)
    converged = False
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007 - n_iter is reported
        with np.errstate(invalid="ignore", divide="ignore"):
            a = o - psi[it]
            delta = np.bincount(rt, weights=a, minlength=nr) / n_r
            delta[active] -= delta[active].mean()
            delta[~active] = 0.0
            d_rt = delta[rt]
            res = a - d_rt
            nu = np.sqrt(np.bincount(rt, weights=res * res, minlength=nr) / n_r)
            nu = np.maximum(np.nan_to_num(nu, nan=1.0), min_inconsistency)
            wr = (1.0 / nu**2)[rt]
            psi_new = (np.bincount(it, weights=wr * (o - d_rt), minlength=ni)
                       / np.bincount(it, weights=wr, minlength=ni))
        change = np.nanmax(np.abs(psi_new - psi)) if ni else 0.0
        psi = psi_new
        if change < tol:
            converged = True
            break
    w = 1.0 / nu**2
    with np.errstate(invalid="ignore", divide="ignore"):
        psi_half = Z95 / np.sqrt(np.bincount(it, weights=w[rt], minlength=ni))
        bias_half = np.where(active, Z95 * nu / np.sqrt(n_r), np.nan)
        dof = np.maximum(n_r, 1.0)
        nu_ci = np.stack([nu * np.sqrt(dof / _chi2_ppf(0.975, dof)),
                          nu * np.sqrt(dof / _chi2_ppf(0.025, dof))], axis=1)
    psi_half = np.where(n_i > 0, psi_half, np.nan)
    psi = np.where(n_i > 0, psi, np.nan)
    nu_ci[~active] = np.nan
    at_floor = active & (nu <= min_inconsistency * (1 + 1e-9))
    # items outside the fit but rated by a fitted rater: psi = weighted mean of (O - Delta)
    rest = ~use & active[r.rater] & np.isnan(psi[r.item])
    if rest.any():
        ri, rr = r.item[rest], r.rater[rest]
        cnt = np.bincount(ri, weights=w[rr], minlength=ni)
        est = np.bincount(ri, weights=w[rr] * (r.score[rest] - delta[rr]), minlength=ni)
        fill = cnt > 0
        psi[fill] = est[fill] / cnt[fill]
        psi_half[fill] = Z95 / np.sqrt(cnt[fill])
    return SubjectModel(psi, psi_half, np.where(active, delta, np.nan), bias_half,
                        np.where(active, nu, np.nan), nu_ci, at_floor, n_iter, converged)


def bt500_screening(r: Ratings) -> pd.DataFrame:
    """Observer screening of ITU-R BT.500 Annex 1, clause A1-2.3.1, per rater.

    Per item: b2 = m4 / m2^2 with m_x = sum((u - mean)^x) / N, S the standard deviation (N - 1);
    the band is mean +- 2S when 2 <= b2 <= 4 (normal-ish) and mean +- sqrt(20) S otherwise. P
    counts a rater's votes >= the upper bound, Q votes <= the lower bound. Reject the rater if
    (P + Q) / items > 0.05 and |(P - Q) / (P + Q)| < 0.3. Items with fewer than two votes or no
    spread (S = 0) cannot hold an outlier and are skipped; ``items`` is the number of items the
    rater rated among those with two or more votes.
    """
    ni, nr = r.n_items, r.n_raters
    n = r.ratings_per_item.astype(np.float64)
    u = r.score
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(r.item, weights=u, minlength=ni) / n
        dev = u - mean[r.item]
        m2 = np.bincount(r.item, weights=dev**2, minlength=ni) / n
        m4 = np.bincount(r.item, weights=dev**4, minlength=ni) / n
        s = np.sqrt(m2 * n / (n - 1))
        b2 = m4 / m2**2
    normal = (b2 >= 2) & (b2 <= 4)
    band = np.where(normal, 2.0, math.sqrt(20.0)) * s
    valid = (n >= 2) & (s > 0)
    eps = 1e-9
    vi = valid[r.item]
    p_hit = vi & (dev >= band[r.item] - eps)
    q_hit = vi & (dev <= -band[r.item] + eps)
    counted = (n >= 2)[r.item]
    items = np.bincount(r.rater[counted], minlength=nr)
    p = np.bincount(r.rater[p_hit], minlength=nr)
    q = np.bincount(r.rater[q_hit], minlength=nr)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = (p + q) / items
        skew = np.abs((p - q) / (p + q))
    rejected = (items > 0) & (share > 0.05) & (p + q > 0) & (skew < 0.3)
    return pd.DataFrame({"bt500_items": items, "bt500_p": p, "bt500_q": q,
                         "bt500_rejected": rejected})


@dataclass(frozen=True)
class GoldResult:
    """Accuracy on gold items (score within [expected_min, expected_max])."""

    correct: np.ndarray  # per rating: 1.0 / 0.0 for judgeable gold ratings, NaN otherwise
    per_rater_n: np.ndarray
    per_rater_correct: np.ndarray

    @property
    def n(self) -> int:
        return int(self.per_rater_n.sum())

    @property
    def n_correct(self) -> int:
        return int(self.per_rater_correct.sum())


def gold_correct(r: Ratings, is_gold: np.ndarray, expected_min: np.ndarray,
                 expected_max: np.ndarray, score: np.ndarray | None = None) -> GoldResult:
    """Mark each gold rating correct or not (judging `score`, by default the ratings' scores);
    gold rows without an expected range are skipped."""
    score = r.score if score is None else score
    g = _as_bool(is_gold)
    lo = pd.to_numeric(pd.Series(expected_min), errors="coerce").to_numpy(np.float64)
    hi = pd.to_numeric(pd.Series(expected_max), errors="coerce").to_numpy(np.float64)
    lo = np.where(np.isnan(lo) & ~np.isnan(hi), -np.inf, lo)
    hi = np.where(np.isnan(hi) & ~np.isnan(lo), np.inf, hi)
    judge = g & ~(np.isnan(lo) & np.isnan(hi))
    ok = (score >= lo) & (score <= hi)
    correct = np.where(judge, ok.astype(np.float64), np.nan)
    nr = r.n_raters
    return GoldResult(correct, np.bincount(r.rater[judge], minlength=nr),
                      np.bincount(r.rater[judge & ok], minlength=nr))


def gold_of(df: pd.DataFrame, r: Ratings) -> GoldResult | None:
    """Gold judgements of a rating table (``r`` encodes ``df``); None without ``is_gold`` or an
    expected-range column.

    The one definition of gold accuracy (the report's per-rater and per-group figures, and
    review.analysis.qa_stats.gold_accuracy behind the Studies and QA pages): the share of gold
    ratings whose rater's *own* score (``reviewer_score`` where the table has it, else ``score``)
    lies in the item's expected range. Gold accuracy judges the reviewer, so a QA correction
    changes nothing: crediting QA's score would make a reviewer look as good as their checker,
    and leaving corrected ratings out would hide exactly the misses QA caught.
    """
    if "is_gold" not in df.columns or not {"expected_min", "expected_max"} & set(df.columns):
        return None
    unbounded = np.full(r.n_ratings, np.nan)
    lo, hi = (r.column(df, c) if c in df.columns else unbounded for c in ("expected_min", "expected_max"))
    score = r.score
    if OWN_SCORE in df.columns:
        own = pd.to_numeric(pd.Series(r.column(df, OWN_SCORE)), errors="coerce").to_numpy(np.float64)
        score = np.where(np.isnan(own), score, own)
    return gold_correct(r, r.column(df, "is_gold"), lo, hi, score)


#: scipy.stats.norm.isf(0.025), as statsmodels' Wilson interval takes it (one ulp above Z95)
_WILSON_Z = float(-special.ndtri(0.025))


def wilson_ci(successes: int, n: int) -> tuple[float, float] | None:
    """Wilson score 95% interval of a proportion (as statsmodels computes it); None for n = 0,
    where a share is undefined (callers show "—", JSON gets null, never NaN)."""
    return wilson_interval(successes, n) if n > 0 else None


def wilson_interval(successes: int, n: int) -> tuple[float, float]:
    """`wilson_ci` where the caller knows ``n >= 1``, so the interval always exists."""
    if n <= 0:
        raise ValueError(f"a Wilson interval needs at least one trial, got n = {n}")
    # statsmodels' proportion_confint(successes, n, alpha=0.05, method="wilson"), step for step
    q, crit2 = successes / n, _WILSON_Z**2
    denom = 1 + crit2 / n
    center = (q + crit2 / (2 * n)) / denom
    dist = _WILSON_Z * math.sqrt(q * (1.0 - q) / n + crit2 / (4.0 * n**2)) / denom
    return float(min(max(center - dist, 0.0), 1.0)), float(min(max(center + dist, 0.0), 1.0))


def compare_proportions(success_a: int, n_a: int, success_b: int, n_b: int) -> Coef:
    """Difference of two proportions (A - B) with Newcombe's hybrid score 95% CI.

    Treats ratings as independent; good enough to flag a gold-accuracy gap between groups.
    """
    if n_a == 0 or n_b == 0:
        return Coef.missing("one of the groups has no judgeable gold ratings")
    # statsmodels' confint_proportions_2indep(..., method="newcomb", compare="diff")
    p1, p2 = success_a / n_a, success_b / n_b
    diff = p1 - p2
    (low1, upp1), (low2, upp2) = wilson_interval(success_a, n_a), wilson_interval(success_b, n_b)
    lo = diff - math.sqrt((p1 - low1) ** 2 + (upp2 - p2) ** 2)
    hi = diff + math.sqrt((p2 - low2) ** 2 + (upp1 - p1) ** 2)
    return Coef(float(diff), n_a + n_b, (float(lo), float(hi)))


# --------------------------------------------------------------------------------------------
# Dawid-Skene (1979) label aggregation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DawidSkeneResult:
    labels: np.ndarray  # (items,) index into the scale values
    posteriors: np.ndarray  # (items, K)
    confusion: np.ndarray  # (raters, K, K): row = true class, column = given label
    priors: np.ndarray  # (K,)
    n_iter: int
    converged: bool
    log_likelihood: float

    def rater_accuracy(self) -> np.ndarray:
        """Prior-weighted probability that a rater gives the true class."""
        diag = np.diagonal(self.confusion, axis1=1, axis2=2)
        return diag @ self.priors


def majority_vote(counts: np.ndarray) -> np.ndarray:
    """Most frequent value index per item; ties go to the lowest value (deterministic)."""
    return np.argmax(np.asarray(counts), axis=1)


def dawid_skene(r: Ratings, *, max_iter: int = 100, tol: float = 1e-7,
                smoothing: float = 0.01) -> DawidSkeneResult:
    """Classic Dawid & Skene (1979) EM: per-rater confusion matrices and class posteriors.

    Initialised deterministically from the soft majority vote (each item's vote shares), so
    the result does not depend on a random seed. ``smoothing`` is a pseudo-count added to every
    confusion cell and class prior to keep logarithms finite for rare labels.
    """
    ni, nr, k = r.n_items, r.n_raters, r.n_values
    if r.n_ratings == 0:
        raise NotEnoughData("no ratings")
    a = sparse.csr_matrix((np.ones(r.n_ratings), (r.item, r.rater * k + r.value)),
                          shape=(ni, nr * k))
    at = a.T.tocsr()
    counts = r.counts.astype(np.float64)
    t = counts / counts.sum(axis=1, keepdims=True)
    ll_prev = -np.inf
    converged = False
    n_iter = 0

    def m_step(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        priors = (t.sum(axis=0) + smoothing) / (ni + k * smoothing)
        num = np.asarray(at @ t)  # [rater*K + label, true]
        conf = num.reshape(nr, k, k).transpose(0, 2, 1) + smoothing  # [rater, true, label]
        conf /= conf.sum(axis=2, keepdims=True)
        return priors, conf

    ll = -np.inf
    for n_iter in range(1, max_iter + 1):  # noqa: B007 - n_iter is reported
        priors, conf = m_step(t)
        log_l = np.log(conf).transpose(0, 2, 1).reshape(nr * k, k)  # [rater*K + label, true]
        log_t = np.log(priors)[None, :] + np.asarray(a @ log_l)
        # the row maxima as K elementwise maxima of columns: ~6x faster than max(axis=1) on
        # (items, K), the same numbers
        mx = functools.reduce(np.maximum, log_t.T)[:, None]
        t = np.exp(log_t - mx)
        s = t.sum(axis=1, keepdims=True)
        t /= s
        ll = float((mx[:, 0] + np.log(s[:, 0])).sum())
        if abs(ll - ll_prev) <= tol * max(abs(ll), 1.0):
            converged = True
            break
        ll_prev = ll
    priors, conf = m_step(t)
    return DawidSkeneResult(np.argmax(t, axis=1), t, conf, priors, n_iter, converged, ll)


# --------------------------------------------------------------------------------------------
# Bootstrap over items
# --------------------------------------------------------------------------------------------


def derived_rng(seed: int, *names: object) -> np.random.Generator:
    """A generator for one named figure, so each CI is reproducible whatever else is run."""
    return np.random.default_rng([int(seed)] + [zlib.crc32(str(n).encode()) for n in names])


def bootstrap_weights(n: int, n_boot: int, rng: np.random.Generator,
                      max_cells: int = 4_000_000) -> Iterator[np.ndarray]:
    """Chunks of (resamples x n) multiplicities: how often each item is drawn per resample."""
    if n <= 0 or n_boot <= 0:
        return
    chunk = max(1, max_cells // n)
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
        yield np.bincount(idx.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)


def percentile_ci(samples: np.ndarray, min_valid: float = 0.5) -> tuple[float, float] | None:
    """2.5th and 97.5th percentiles of bootstrap replicates (NaN replicates are dropped)."""
    s = np.asarray(samples, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size == 0 or s.size < min_valid * np.asarray(samples).size:
        return None
    lo, hi = np.percentile(s, [2.5, 97.5])
    return float(lo), float(hi)


def alpha_bootstrap_samples(counts: np.ndarray, levels: Sequence[str], values: np.ndarray,
                            n_boot: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Alpha of ``n_boot`` item resamples at each level (one weight matrix for all levels)."""
    units, _ = coincidence_units(np.asarray(counts))
    v = units.shape[-1] if units.ndim == 3 else np.asarray(counts).shape[1]
    flat = units.reshape(units.shape[0], v * v)
    out: dict[str, list[np.ndarray]] = {lvl: [] for lvl in levels}
    for w in bootstrap_weights(flat.shape[0], n_boot, rng):
        o = (w @ flat).reshape(-1, v, v)
        for lvl in levels:
            out[lvl].append(alpha_from_coincidences(o, lvl, values))
    return {lvl: (np.concatenate(x) if x else np.zeros(0)) for lvl, x in out.items()}


@dataclass
class AgreementBootstrap:
    """Percentile CIs for the agreement figures of one slice, from one set of item resamples."""

    alpha: dict[str, tuple[float, float] | None]
    fleiss: tuple[float, float] | None
    percent: tuple[float, float] | None
    kappa: dict[str, list[tuple[float, float] | None]]  # weights -> per pair (PairTables order)


def _pair_item_matrix(r: Ratings, pairs: PairTables) -> sparse.csr_matrix:
    """(pair * V^2 + table cell) x item indicator of the listed pairs' co-ratings: a resample's
    tables are this times its item multiplicities. Only the pairs' raters are scanned."""
    r, v = r.sorted(), r.n_values
    keep_r = np.zeros(r.n_raters, dtype=bool)
    keep_r[pairs.rater_a] = keep_r[pairs.rater_b] = True
    mask = keep_r[r.rater]
    ra, rb, va, vb, item = rating_pairs(r.subset(mask))
    # back to the codes of ``r`` (subset() re-coded raters and items densely, in order)
    rater_of = np.flatnonzero(keep_r)
    item_of = np.flatnonzero(np.bincount(r.item[mask], minlength=r.n_items))
    key = rater_of[ra] * r.n_raters + rater_of[rb]
    listed = pairs.rater_a.astype(np.int64) * r.n_raters + pairs.rater_b  # ascending
    j = np.minimum(np.searchsorted(listed, key), listed.size - 1)
    on = listed[j] == key
    return sparse.csr_matrix((np.ones(int(on.sum())), (j[on] * (v * v) + va[on] * v + vb[on],
                                                       item_of[item[on]])),
                             shape=(listed.size * v * v, r.n_items))


def bootstrap_agreement(r: Ratings, n_boot: int, seed: int,
                        pairs: PairTables | None = None) -> AgreementBootstrap:
    """Item bootstrap of alpha (3 levels), Fleiss' kappa, percent agreement and pairwise kappa.

    All figures use the same resamples of the items (each resample draws N items with
    replacement), and every step is a matrix product over those multiplicities, so 1000
    resamples of 1k items take well under a second.
    """
    rng = derived_rng(seed, "agreement")
    counts = r.counts.astype(np.float64)
    ni, v = r.n_items, r.n_values
    units, pairable = coincidence_units(counts)
    ufull = np.zeros((ni, v * v))
    ufull[pairable] = units.reshape(-1, v * v)
    fmask, fk, _ = fleiss_subset(counts)
    fcounts = np.where(fmask[:, None], counts, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        f_p = np.where(fmask, ((counts**2).sum(axis=1) - fk) / (fk * (fk - 1)), 0.0)
    agree = np.zeros(ni)
    agree_u, pm = _agreement_per_unit(counts)
    agree[pm] = agree_u
    levels = ("nominal", "ordinal", "interval")
    res_alpha: dict[str, list[np.ndarray]] = {lvl: [] for lvl in levels}
    res_f: list[np.ndarray] = []
    res_p: list[np.ndarray] = []
    res_k: dict[str, list[np.ndarray]] = {wt: [] for wt in KAPPA_WEIGHTS}
    mk = _pair_item_matrix(r, pairs) if pairs is not None and pairs.tables.shape[0] else None
    fm = fmask.astype(np.float64)
    for w in bootstrap_weights(ni, n_boot, rng):
        o = (w @ ufull).reshape(-1, v, v)
        for lvl in levels:
            res_alpha[lvl].append(alpha_from_coincidences(o, lvl, values=r.values))
        with np.errstate(invalid="ignore", divide="ignore"):
            nf = w @ fm
            pbar = (w @ f_p) / nf
            pj = (w @ fcounts) / (nf * fk)[:, None]
            pe = (pj**2).sum(axis=1)
            res_f.append(np.where(pe < 1, (pbar - pe) / (1 - pe), np.nan))
            res_p.append((w @ agree) / (w @ pm.astype(np.float64)))
        if mk is not None:
            tabs = np.asarray(mk @ w.T).T.reshape(w.shape[0], -1, v, v)
            for wt in KAPPA_WEIGHTS:
                res_k[wt].append(kappa_from_tables(tabs, wt))
    alpha_ci = {lvl: percentile_ci(np.concatenate(x)) if x else None
                for lvl, x in res_alpha.items()}
    kappa_ci: dict[str, list[tuple[float, float] | None]] = {}
    for wt, chunks in res_k.items():
        if chunks:
            allk = np.concatenate(chunks, axis=0)
            kappa_ci[wt] = [percentile_ci(allk[:, j]) for j in range(allk.shape[1])]
        else:
            kappa_ci[wt] = []
    return AgreementBootstrap(
        alpha_ci,
        percentile_ci(np.concatenate(res_f)) if res_f else None,
        percentile_ci(np.concatenate(res_p)) if res_p else None,
        kappa_ci,
    )


def compare_alpha(a: Ratings, b: Ratings, level: str = "ordinal", n_boot: int = 0,
                  seed: int = 0, label: str = "") -> Coef:
    """Alpha(A) - alpha(B) with a bootstrap CI: each group's items are resampled independently."""
    try:
        va = alpha_from_counts(a.counts, level, a.values)
        vb = alpha_from_counts(b.counts, level, b.values)
    except NotEnoughData as exc:
        return Coef.missing(f"alpha is not computable for one of the groups: {exc}")
    n = a.n_pairable_items + b.n_pairable_items
    ci = None
    if n_boot > 0:
        sa = alpha_bootstrap_samples(a.counts, [level], a.values, n_boot,
                                     derived_rng(seed, "compare", label, "A"))[level]
        sb = alpha_bootstrap_samples(b.counts, [level], b.values, n_boot,
                                     derived_rng(seed, "compare", label, "B"))[level]
        ci = percentile_ci(sa - sb)
    return Coef(va - vb, n, ci)
