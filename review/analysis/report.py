"""The agreement statistics report: one JSON-safe dict (rendered by review.analysis.markdown_report
and review.analysis.html_report).

Why: analysts, the UI and exports all need the same numbers with the same caveats, so they are
computed once here from a long-format rating table (see :mod:`review.analysis.agreement`).

``build_report(df, *, bootstrap=0, seed=0, scale=(1, 5), all_pairs=False)`` returns a dict with
these top-level keys (all values strict-JSON: ``json.dumps(report, allow_nan=False)`` works):

- ``n_items``, ``n_raters``, ``n_ratings`` (ints, after dropping rows without a score and
  keeping the last of repeated (item, rater) rows), ``n_multiply_rated_items``.
- ``krippendorff_alpha``: ``{"nominal": C, "ordinal": C, "interval": C}``.
- ``fleiss_kappa``: C (on the items with the most common number of ratings; see ``notes``).
- ``icc``: ``{"ICC1": C, "ICC2": C, "ICC3": C, "ICC1k": C, "ICC2k": C, "ICC3k": C}``, Shrout &
  Fleiss forms: ICC1 one-way random, ICC2 two-way random absolute agreement, ICC3 two-way
  mixed consistency, single rater; ``k``: mean of k raters. 95% CIs from the F distribution.
  Computed on a complete item x rater table; ``notes`` says which subset.
- ``pairwise_kappa``: list of ``{"rater_a", "rater_b", "n_items", "unweighted": C,
  "linear": C, "quadratic": C}`` (Cohen's kappa on the items both rated; weights by distance
  on the scale) for the rater pairs sharing at least ``MIN_PAIR_ITEMS`` (5) items, at most
  ``MAX_LISTED_PAIRS`` of them (those sharing the most items); with ``all_pairs=True`` every
  pair sharing an item. Both stay within the memory budgets of
  :func:`review.analysis.agreement.pair_tables` (the most active raters first).
- ``pairwise_kappa_summary``: ``{min_shared_items, n_rater_pairs, n_pairs_computed,
  n_pairs_listed, skipped: {fewer_shared_items, over_budget, kappa_undefined}, distribution:
  {weights: {n_pairs, mean, min, q25, median, q75, max}}}``; computed plus skipped is every
  pair. It costs memory in proportion to the ratings, not to raters squared.
- ``percent_agreement``: C, the mean share of agreeing rater pairs per multiply-rated item.
  Inflated by imbalanced categories: show it only beside alpha or kappa.
- ``warnings``: list of strings (few items behind a figure, dropped rows, ...).
- ``notes``: list of strings saying how a figure was computed (subsets used).
- ``per_item``: list of rows ``{item, n_ratings, mos, mos_std, mos_ci95, mle_quality,
  mle_quality_ci95, ds_label, ds_confidence, majority_label}`` plus ``dmos, dmos_ci95,
  dmos_n`` when ``reference_group`` and ``is_hidden_reference`` are present, gold columns
  (``is_gold, expected_min, expected_max, gold_pass_rate``) when ``is_gold`` is present, and
  every characteristic column that is constant within an item.
- ``per_rater``: list of rows ``{rater, n_ratings, mean_score, bias, bias_ci95, inconsistency,
  inconsistency_ci95, inconsistency_at_floor, bt500_items, bt500_p, bt500_q, bt500_rejected,
  ds_accuracy, ds_confusion}`` plus ``gold_n, gold_correct, gold_accuracy, gold_accuracy_ci95`` with gold.
  Bias and inconsistency come from the ITU-T P.910 / P.913 subject model (MLE). Gold accuracy
  judges the rater's own score (``reviewer_score`` when present, the score before any QA
  correction; see :func:`review.analysis.agreement.gold_of`), with a Wilson 95% CI.
- ``breakdowns``: ``{column: [{group, n_items, n_raters, n_ratings, alpha_ordinal: C,
  mos: C, gold_accuracy: C (with gold)}]}`` for each characteristic column present
  (``guideline_version, qa_cohort, blur_kind, blur_level, restorer, content``).
- ``comparisons``: list of ``{column, group_a, group_b, alpha_ordinal_diff: C,
  gold_accuracy_diff: C}`` (A minus B) for ``guideline_version`` and ``qa_cohort``; alpha
  CIs come from resampling each group's items independently (needs ``bootstrap > 0``), gold
  accuracy CIs from Newcombe's interval.
- ``scale`` ([low, high]) and ``bootstrap`` (``{"resamples", "seed"}``).

C, a coefficient, is ``{"value": float, "ci95": [low, high] or None, "n_items": int}`` or
``{"value": None, "reason": str}`` when it cannot be computed. ``ci95`` is a percentile item
bootstrap for alpha, kappa and percent agreement (``None`` unless ``bootstrap > 0``).
CIs in table rows (``mos_ci95`` etc.) are ``[low, high]`` or ``None``; missing numbers are
``None``, never NaN.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from review.analysis import agreement as ag
from review.analysis.agreement import Coef, Ratings
from review.analysis.formatting import restore_cell
from review.errors import ReviewError

BREAKDOWN_COLUMNS = ("guideline_version", "qa_cohort", "blur_kind", "blur_level", "restorer",
                     "content")
COMPARISON_COLUMNS = ("guideline_version", "qa_cohort")
GOLD_COLUMNS = ("is_gold", "expected_min", "expected_max")
DMOS_COLUMNS = ("reference_group", "is_hidden_reference")
#: Every optional column build_report reads (breakdowns, gold, DMOS, per-item characteristics).
OPTIONAL_COLUMNS = (*BREAKDOWN_COLUMNS, *GOLD_COLUMNS, *DMOS_COLUMNS, "source", "degradation")
#: Most rater pairs listed in ``pairwise_kappa`` by default (those sharing the most items); the
#: summary covers every pair computed.
MAX_LISTED_PAIRS = 1_000
#: BT.500 asks for at least 15 observers.
MIN_OBSERVERS_BT500 = 15
#: What each ICC form means, for tables and captions.
ICC_LABELS = {
    "ICC1": "ICC(1,1) one-way random, single rater",
    "ICC2": "ICC(2,1) two-way random, absolute agreement, single rater",
    "ICC3": "ICC(3,1) two-way mixed, consistency, single rater",
    "ICC1k": "ICC(1,k) one-way random, mean of k raters",
    "ICC2k": "ICC(2,k) two-way random, absolute agreement, mean of k raters",
    "ICC3k": "ICC(3,k) two-way mixed, consistency, mean of k raters",
}


def _py(x: Any) -> Any:
    """A JSON-safe Python value: numpy scalars unboxed, NaN/inf -> None."""
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, pd.Timestamp):
        return x.isoformat()
    return x


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(_py(k)): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_clean(v) for v in obj.tolist()]
    return _py(obj)


def _ci_list(center: np.ndarray, half: np.ndarray) -> list[list[float] | None]:
    """[low, high] per row (native floats), None where either bound is not finite."""
    lo, hi = center - half, center + half
    out: list[Any] = np.stack([lo, hi], axis=1).tolist()
    for i in np.flatnonzero(~(np.isfinite(lo) & np.isfinite(hi))).tolist():
        out[i] = None
    return out


def _nan_to_none(a: np.ndarray) -> list[Any]:
    a = np.asarray(a, dtype=np.float64)
    out: list[Any] = a.tolist()
    for i in np.flatnonzero(~np.isfinite(a)).tolist():
        out[i] = None
    return out


class _Columns:
    """Optional columns of the input, factorized once and aligned with the encoded ratings."""

    def __init__(self, df: pd.DataFrame, r: Ratings) -> None:
        self.df, self.r = df, r
        self._codes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        #: splits the comparisons reuse from the breakdowns
        self.splits: dict[str, list[tuple[Any, np.ndarray, Ratings]]] = {}

    def codes(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(code per rating, -1 where missing; distinct values, sorted where sortable)."""
        if name not in self._codes:
            codes, uniques = pd.factorize(self.df[name], sort=False)
            codes = np.asarray(codes, dtype=np.int64)[self.r.rows]
            vals = np.asarray(uniques, dtype=object)
            if vals.size == 0:  # the column has no values at all (e.g. no gold items)
                self._codes[name] = (np.full(codes.shape, -1, dtype=np.int64), vals)
                return self._codes[name]
            try:
                order = np.argsort(vals, kind="stable")
                rank = np.empty_like(order)
                rank[order] = np.arange(order.size)
                codes = np.where(codes >= 0, rank[np.maximum(codes, 0)], -1)
                vals = vals[order]
            except TypeError:
                pass
            self._codes[name] = (codes, vals)
        return self._codes[name]

    def values(self, name: str) -> np.ndarray:
        return self.r.column(self.df, name)


def _group_starts(r: Ratings) -> np.ndarray:
    """Start positions of each item's run in sorted ratings (every item has >= 1 rating)."""
    return np.concatenate([[0], np.cumsum(r.ratings_per_item)[:-1]]).astype(np.int64)


def _per_item_constant(r: Ratings, cols: _Columns, name: str) -> list[Any] | None:
    """The column's value per item if it never varies within an item, else None."""
    codes, uniques = cols.codes(name)
    starts = _group_starts(r)
    lo = np.minimum.reduceat(codes, starts)
    hi = np.maximum.reduceat(codes, starts)
    if (lo != hi).any():
        return None
    uniq = [_py(u) for u in uniques.tolist()] + [None]  # code -1 -> None
    return [uniq[c] for c in lo.tolist()]


def _mos_of_group(r: Ratings) -> Coef:
    """Mean of item MOS over the group's items, CI 1.96 * sd(item MOS) / sqrt(n_items)."""
    if r.n_items == 0:
        return Coef.missing("no ratings in this group")
    mos = ag.item_mos(r)["mos"].to_numpy()
    m = float(mos.mean())
    if mos.size < 2:
        return Coef(m, int(mos.size), None)
    half = 1.96 * float(mos.std(ddof=1)) / math.sqrt(mos.size)
    return Coef(m, int(mos.size), (m - half, m + half))


def _gold_coef(correct: np.ndarray) -> Coef:
    c = correct[np.isfinite(correct)]
    if c.size == 0:
        return Coef.missing("no judgeable gold ratings")
    k = int(c.sum())
    return Coef(k / c.size, int(c.size), ag.wilson_ci(k, int(c.size)))


def _alpha_coef(r: Ratings, level: str, bootstrap: int, seed: int, *names: object) -> Coef:
    coef = ag.coef_of(lambda: (ag.alpha_from_counts(r.counts, level, r.values),
                             r.n_pairable_items))
    if coef.ok and bootstrap > 0:
        s = ag.alpha_bootstrap_samples(r.counts, [level], r.values, bootstrap,
                                       ag.derived_rng(seed, *names))[level]
        coef = coef.with_ci(ag.percentile_ci(s))
    return coef


def _split(r: Ratings, cols: _Columns, name: str) -> list[tuple[Any, np.ndarray, Ratings]]:
    """Ratings split by a column's value: (value, mask over r, subset); sorted groups, missing
    values last as None. The comparison columns' splits are kept for the comparisons."""
    if name in cols.splits:
        return cols.splits[name]
    codes, uniques = cols.codes(name)
    masks = [(uniques[g], codes == g) for g in range(len(uniques))]
    if (codes < 0).any():
        masks.append((None, codes < 0))
    out = [(v, m, r.subset(m)) for v, m in masks]
    if name in COMPARISON_COLUMNS:
        cols.splits[name] = out
    return out


def _kappa_distribution(k: np.ndarray) -> dict[str, Any]:
    """Summary of the defined kappas of one weighting: n, mean and quartiles."""
    k = k[np.isfinite(k)]
    if k.size == 0:
        return {"n_pairs": 0}
    q = np.quantile(k, [0.0, 0.25, 0.5, 0.75, 1.0])
    return {"n_pairs": int(k.size), "mean": float(k.mean()), "min": float(q[0]),
            "q25": float(q[1]), "median": float(q[2]), "q75": float(q[3]), "max": float(q[4])}


def _pairwise(r: Ratings, pairs: ag.PairTables | None, kappas: dict[str, np.ndarray],
              boot: ag.AgreementBootstrap | None, all_pairs: bool,
              warnings: list[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The pair table (bounded) and its summary: how many pairs, which were skipped and why,
    and the distribution of the kappas computed."""
    min_items = 1 if all_pairs else ag.MIN_PAIR_ITEMS
    n_all = r.n_raters * (r.n_raters - 1) // 2
    summary: dict[str, Any] = {
        "min_shared_items": min_items, "n_rater_pairs": n_all, "n_pairs_computed": 0,
        "n_pairs_listed": 0,
        "skipped": {"fewer_shared_items": n_all, "over_budget": 0, "kappa_undefined": 0},
        "distribution": {wt: {"n_pairs": 0} for wt in ag.KAPPA_WEIGHTS},
    }
    if pairs is None:
        return [], summary
    n_pairs = int(pairs.tables.shape[0])
    n_shared = pairs.tables.sum(axis=(1, 2))
    undefined = int((~np.isfinite(kappas["unweighted"])).sum()) if kappas else 0
    summary.update(n_pairs_computed=n_pairs - undefined, skipped={
        "fewer_shared_items": pairs.n_fewer_items, "over_budget": pairs.n_over_budget,
        "kappa_undefined": undefined})
    summary["distribution"] = {wt: _kappa_distribution(kappas[wt]) if kappas else {"n_pairs": 0}
                               for wt in ag.KAPPA_WEIGHTS}
    if pairs.n_over_budget:
        warnings.append(f"Pairwise kappa: {pairs.n_over_budget} rater pairs were not computed "
                        f"(memory budget); only pairs among the {pairs.n_raters_scanned} most "
                        f"active of {pairs.n_raters_eligible} eligible raters were.")
    listed = np.arange(n_pairs)
    if not all_pairs and n_pairs > MAX_LISTED_PAIRS:
        listed = np.sort(np.argsort(-n_shared, kind="stable")[:MAX_LISTED_PAIRS])
    summary["n_pairs_listed"] = int(listed.size)
    rows: list[dict[str, Any]] = []
    few_pairs = 0
    for j in listed.tolist():
        row: dict[str, Any] = {"rater_a": _py(r.raters[pairs.rater_a[j]]),
                               "rater_b": _py(r.raters[pairs.rater_b[j]]),
                               "n_items": int(n_shared[j])}
        if n_shared[j] < ag.MIN_RELIABLE_ITEMS:
            few_pairs += 1
        for wt in ag.KAPPA_WEIGHTS:
            val = float(kappas[wt][j])
            if not math.isfinite(val):
                row[wt] = Coef.missing("both raters gave one and the same score on their "
                                       "shared items: kappa is undefined").to_dict()
                continue
            ci = boot.kappa[wt][j] if boot is not None and boot.kappa.get(wt) else None
            row[wt] = Coef(val, int(n_shared[j]), ci).to_dict()
        rows.append(row)
    if few_pairs:
        warnings.append(f"{few_pairs} of {len(rows)} listed rater pairs share fewer than "
                        f"{ag.MIN_RELIABLE_ITEMS} items: their kappas are mostly noise.")
    return rows, summary


def _agreement_section(r: Ratings, bootstrap: int, seed: int, all_pairs: bool,
                       warnings: list[str], notes: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    n_multi = r.n_pairable_items
    alpha = {lvl: _alpha_coef(r, lvl, 0, seed) for lvl in ("nominal", "ordinal", "interval")}
    try:
        fk, f_n, f_k, f_excl = ag.fleiss_kappa_from_counts(r.counts)
        fleiss = Coef(fk, f_n)
        if f_excl:
            notes.append(f"Fleiss' kappa needs the same number of ratings per item: it uses the "
                         f"{f_n} items rated exactly {f_k} times (the most common count) and "
                         f"leaves out {f_excl} multiply-rated items with other counts.")
        else:
            notes.append(f"Fleiss' kappa uses all {f_n} multiply-rated items "
                         f"({f_k} ratings each).")
    except ag.NotEnoughData as exc:
        fleiss, f_n = Coef.missing(str(exc)), 0
    percent = ag.coef_of(ag.percent_agreement_from_counts, r.counts)

    min_items = 1 if all_pairs else ag.MIN_PAIR_ITEMS
    pairs = ag.pair_tables(r, min_items) if r.n_ratings else None
    kappas: dict[str, np.ndarray] = {}
    if pairs is not None and pairs.tables.shape[0]:
        kappas = {wt: ag.kappa_from_tables(pairs.tables, wt) for wt in ag.KAPPA_WEIGHTS}

    boot = None
    if bootstrap > 0 and n_multi > 0:
        boot = ag.bootstrap_agreement(r, bootstrap, seed, pairs)
        alpha = {lvl: c.with_ci(boot.alpha.get(lvl)) if c.ok else c for lvl, c in alpha.items()}
        fleiss = fleiss.with_ci(boot.fleiss) if fleiss.ok else fleiss
        percent = percent.with_ci(boot.percent) if percent.ok else percent

    out["pairwise_kappa"], out["pairwise_kappa_summary"] = _pairwise(r, pairs, kappas, boot,
                                                                     all_pairs, warnings)
    try:
        sub = ag.icc_subset(r)
        icc = ag.icc(sub.matrix)
        notes.append(sub.description + ".")
        if sub.matrix.shape[0] < ag.MIN_RELIABLE_ITEMS:
            warnings.append(f"ICC rests on only {sub.matrix.shape[0]} complete items "
                            f"(< {ag.MIN_RELIABLE_ITEMS}): treat it as noise.")
    except ag.NotEnoughData as exc:
        icc = {f: Coef.missing(str(exc)) for f in ag.ICC_FORMS}

    if n_multi == 0 and r.n_ratings:
        warnings.append("No item has two or more ratings: no agreement figure can be computed "
                        "(agreement from fewer than 20 multiply-rated items would be noise).")
    elif 0 < n_multi < ag.MIN_RELIABLE_ITEMS:
        warnings.append(f"Only {n_multi} items have two or more ratings (< "
                        f"{ag.MIN_RELIABLE_ITEMS}): alpha, Fleiss' kappa and percent agreement "
                        f"are mostly noise.")
    elif f_n and f_n < ag.MIN_RELIABLE_ITEMS <= n_multi:
        warnings.append(f"Fleiss' kappa rests on only {f_n} items (< {ag.MIN_RELIABLE_ITEMS}).")

    out["krippendorff_alpha"] = {lvl: c.to_dict() for lvl, c in alpha.items()}
    out["fleiss_kappa"] = fleiss.to_dict()
    out["icc"] = {f: c.to_dict() for f, c in icc.items()}
    out["percent_agreement"] = percent.to_dict()
    return out


def _per_item(df: pd.DataFrame, cols_in: _Columns, r: Ratings, scale: tuple[int, int], model: ag.SubjectModel,
              ds: ag.DawidSkeneResult | None, gold: ag.GoldResult | None,
              warnings: list[str]) -> list[dict[str, Any]]:
    if r.n_items == 0:
        return []
    mos = ag.item_mos(r)
    cols: dict[str, Any] = {
        "item": [_py(x) for x in r.items.tolist()],
        "n_ratings": mos["n_ratings"].tolist(),
        "mos": _nan_to_none(mos["mos"].to_numpy()),
        "mos_std": _nan_to_none(mos["mos_std"].to_numpy()),
        "mos_ci95": _ci_list(mos["mos"].to_numpy(), mos["mos_ci95_half"].to_numpy()),
        "mle_quality": _nan_to_none(model.quality),
        "mle_quality_ci95": _ci_list(model.quality, model.quality_ci95_half),
    }
    if ds is not None:
        cols["ds_label"] = r.values[ds.labels].astype(np.int64).tolist()
        cols["ds_confidence"] = ds.posteriors.max(axis=1).tolist()
    cols["majority_label"] = r.values[ag.majority_vote(r.counts)].astype(np.int64).tolist()
    if all(c in df.columns for c in DMOS_COLUMNS):
        dm = ag.item_dmos(r, r.column(df, "reference_group"),
                          r.column(df, "is_hidden_reference"), float(scale[1]))
        cols["dmos"] = _nan_to_none(dm["dmos"].to_numpy())
        cols["dmos_ci95"] = _ci_list(dm["dmos"].to_numpy(), dm["dmos_ci95_half"].to_numpy())
        cols["dmos_n"] = dm["dmos_n"].tolist()
        if int((dm["dmos_n"] > 0).sum()) == 0:
            warnings.append("DMOS: no item has a rater who also rated its hidden reference.")
    if gold is not None:
        n_g = np.bincount(r.item, weights=np.isfinite(gold.correct), minlength=r.n_items)
        k_g = np.bincount(r.item, weights=np.nan_to_num(gold.correct), minlength=r.n_items)
        with np.errstate(invalid="ignore", divide="ignore"):
            cols["gold_pass_rate"] = _nan_to_none(np.where(n_g > 0, k_g / n_g, np.nan))
    skip = set(ag.REQUIRED_COLUMNS)
    for name in OPTIONAL_COLUMNS:
        if name in df.columns and name not in skip and name not in cols:
            per = _per_item_constant(r, cols_in, name)
            if per is not None:
                cols[name] = per
    keys = list(cols)
    return [dict(zip(keys, vals, strict=True)) for vals in zip(*cols.values(), strict=True)]


def _per_rater(r: Ratings, model: ag.SubjectModel, ds: ag.DawidSkeneResult | None,
               gold: ag.GoldResult | None) -> list[dict[str, Any]]:
    """One row per rater of native Python values, None for anything not finite."""
    if r.n_raters == 0:
        return []
    n = r.ratings_per_rater
    mean = np.bincount(r.rater, weights=r.score, minlength=r.n_raters) / np.maximum(n, 1)
    bt = ag.bt500_screening(r)
    cols: dict[str, Any] = {
        "rater": [_py(x) for x in r.raters.tolist()],
        "n_ratings": n.tolist(),
        "mean_score": _nan_to_none(mean),
        "bias": _nan_to_none(model.bias),
        "bias_ci95": _ci_list(model.bias, model.bias_ci95_half),
        "inconsistency": _nan_to_none(model.inconsistency),
        "inconsistency_ci95": _ci_list((model.inconsistency_ci95[:, 0]
                                        + model.inconsistency_ci95[:, 1]) / 2,
                                       (model.inconsistency_ci95[:, 1]
                                        - model.inconsistency_ci95[:, 0]) / 2),
        "inconsistency_at_floor": [bool(x) for x in model.at_floor.tolist()],
        "bt500_items": bt["bt500_items"].tolist(),
        "bt500_p": _nan_to_none(bt["bt500_p"].to_numpy()),
        "bt500_q": _nan_to_none(bt["bt500_q"].to_numpy()),
        "bt500_rejected": [bool(x) for x in bt["bt500_rejected"].tolist()],
    }
    if ds is not None:
        cols["ds_accuracy"] = _nan_to_none(ds.rater_accuracy())
        conf = np.round(ds.confusion, 4)
        cols["ds_confusion"] = np.where(np.isfinite(conf), conf, None).tolist()
    if gold is not None:
        cols["gold_n"] = gold.per_rater_n.tolist()
        cols["gold_correct"] = gold.per_rater_correct.tolist()
        with np.errstate(invalid="ignore", divide="ignore"):
            acc = np.where(gold.per_rater_n > 0, gold.per_rater_correct / gold.per_rater_n,
                           np.nan)
        cols["gold_accuracy"] = _nan_to_none(acc)
        cols["gold_accuracy_ci95"] = [
            (list(ci) if (ci := ag.wilson_ci(int(k), int(m))) else None)
            for k, m in zip(gold.per_rater_correct, gold.per_rater_n, strict=True)]
    keys = list(cols)
    return [dict(zip(keys, vals, strict=True)) for vals in zip(*cols.values(), strict=True)]


def _breakdowns(cols: _Columns, r: Ratings, columns: Sequence[str], bootstrap: int, seed: int,
                gold: ag.GoldResult | None, warnings: list[str]) -> dict[str, list[dict]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for col in columns:
        rows = []
        few = 0
        for value, mask, sub in _split(r, cols, col):
            if sub.n_pairable_items < ag.MIN_RELIABLE_ITEMS:
                few += 1
            row: dict[str, Any] = {
                "group": _py(value), "n_items": sub.n_items, "n_raters": sub.n_raters,
                "n_ratings": sub.n_ratings,
                "alpha_ordinal": _alpha_coef(sub, "ordinal", bootstrap, seed, "breakdown", col,
                                             value).to_dict(),
                "mos": _mos_of_group(sub).to_dict(),
            }
            if gold is not None:
                row["gold_accuracy"] = _gold_coef(gold.correct[mask]).to_dict()
            rows.append(row)
        if few:
            warnings.append(f"Breakdown by {col}: {few} of {len(rows)} groups have fewer than "
                            f"{ag.MIN_RELIABLE_ITEMS} multiply-rated items.")
        out[col] = rows
    return out


def _comparisons(cols: _Columns, r: Ratings, columns: Sequence[str], bootstrap: int,
                 seed: int, gold: ag.GoldResult | None) -> list[dict[str, Any]]:
    out = []
    for col in columns:
        groups = [g for g in _split(r, cols, col) if g[0] is not None]
        for (va, ma, sa), (vb, mb, sb) in itertools.combinations(groups, 2):
            label = f"{col}:{va}:{vb}"
            row: dict[str, Any] = {
                "column": col, "group_a": _py(va), "group_b": _py(vb),
                "alpha_ordinal_diff": ag.compare_alpha(sa, sb, "ordinal", bootstrap, seed,
                                                       label).to_dict(),
            }
            if gold is not None:
                ca, cb = gold.correct[ma], gold.correct[mb]
                ca, cb = ca[np.isfinite(ca)], cb[np.isfinite(cb)]
                row["gold_accuracy_diff"] = ag.compare_proportions(
                    int(ca.sum()), int(ca.size), int(cb.sum()), int(cb.size)).to_dict()
            out.append(row)
    return out


def build_report(df: pd.DataFrame, *, bootstrap: int = 0, seed: int = 0,
                 scale: Sequence[int] = (1, 5),
                 breakdown_by: Sequence[str] | None = None,
                 all_pairs: bool = False) -> dict[str, Any]:
    """All agreement statistics of a long-format rating table (keys: module docstring).

    ``bootstrap`` is the number of item resamples for CIs (0: no bootstrap CIs);
    ``breakdown_by`` defaults to the characteristic columns present in ``df``;
    ``all_pairs`` lists the kappa of every rater pair sharing an item (still within the memory
    budgets of :func:`review.analysis.agreement.pair_tables`) instead of the pairs sharing at
    least ``MIN_PAIR_ITEMS`` items, at most ``MAX_LISTED_PAIRS`` of them.
    Raises ValueError for malformed input (missing column, non-integer or off-scale score).
    """
    lo, hi = ag.check_scale(scale)
    bootstrap = int(bootstrap)
    if bootstrap < 0:
        raise ValueError("bootstrap must be >= 0")
    r = ag.encode_ratings(df, (lo, hi))
    if r.n_ratings:
        r = r.sorted()
    warnings: list[str] = []
    notes: list[str] = []
    if r.n_missing_scores:
        warnings.append(f"{r.n_missing_scores} rows without a score were ignored.")
    if df.attrs.get("n_missing_scores"):
        rows = ", ".join(str(v) for v in df.attrs.get("missing_score_rows", []))
        warnings.append(f"{df.attrs['n_missing_scores']} rows of the file without a score were "
                        f"dropped (rows {rows}{', ...' if df.attrs['n_missing_scores'] > 10 else ''}).")
    if r.n_duplicates:
        warnings.append(f"{r.n_duplicates} repeated (item, rater) ratings: the last row of each "
                        f"was used (a later rating supersedes an earlier one).")
    if r.n_ratings == 0:
        warnings.append("No ratings: nothing to analyse.")

    report: dict[str, Any] = {
        "n_items": r.n_items, "n_raters": r.n_raters, "n_ratings": r.n_ratings,
        "n_multiply_rated_items": r.n_pairable_items,
    }
    # Dawid-Skene's EM (sparse products and array maths, which release the GIL) runs on a second
    # core while the rest is computed: 1M ratings, ~0.6 s of ~3 s
    with ThreadPoolExecutor(max_workers=1) as pool:
        ds_running = pool.submit(ag.dawid_skene, r) if r.n_ratings else None
        report.update(_agreement_section(r, bootstrap, seed, all_pairs, warnings, notes))
        per_item, per_rater = _after_agreement(report, df, r, (lo, hi), ds_running, bootstrap, seed,
                                               breakdown_by, warnings, notes)
    report = _clean(report)
    # the two big tables are built from native, JSON-safe values already: a recursive clean of
    # per_rater took ~3 s for one item rated by 20,000 raters
    report["per_item"] = per_item
    report["per_rater"] = per_rater
    return report


def _after_agreement(report: dict[str, Any], df: pd.DataFrame, r: Ratings, scale: tuple[int, int],
          ds_running: Future | None, bootstrap: int, seed: int, breakdown_by: Sequence[str] | None,
          warnings: list[str], notes: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Everything after the agreement coefficients, into `report`: gold, the subject model,
    Dawid-Skene's result, breakdowns and comparisons; returns the per-item and per-rater tables."""
    lo, hi = scale

    gold = ag.gold_of(df, r) if r.n_ratings else None
    if "is_gold" in df.columns and r.n_ratings:
        if gold is None:
            warnings.append("is_gold is present but expected_min / expected_max are not: "
                            "gold accuracy is not computed.")
        elif gold.n == 0:
            warnings.append("Gold items are marked but none has an expected score range.")

    model = ag.subject_model(r)
    if r.n_ratings and not model.converged and np.isfinite(model.bias).any():
        warnings.append(f"The P.910 subject model did not converge in {model.n_iter} "
                        f"iterations; bias and inconsistency are approximate.")
    if model.at_floor.any():
        names = ", ".join(str(_py(x)) for x in r.raters[model.at_floor][:10])
        warnings.append(f"Subject model: the inconsistency of {int(model.at_floor.sum())} "
                        f"rater(s) ({names}) sits at the floor 1/sqrt(12) = "
                        f"{ag.MIN_INCONSISTENCY:.3f}: they are much more consistent than the "
                        f"other raters of their items combined, and the model's likelihood has "
                        f"no interior maximum for them (their votes alone would define the "
                        f"item scores). Read it as 'very consistent', not as an estimate; "
                        f"MOS is unaffected.")
    single = int((r.ratings_per_rater == 1).sum()) if r.n_raters else 0
    if single:
        warnings.append(f"{single} raters have a single rating: no bias or inconsistency "
                        f"estimate for them.")
    ds = None
    if ds_running is not None:
        ds = ds_running.result()
        if not ds.converged:
            warnings.append(f"Dawid-Skene did not converge in {ds.n_iter} iterations.")
    if 0 < r.n_raters < MIN_OBSERVERS_BT500:
        notes.append(f"BT.500 observer screening ran on {r.n_raters} raters; BT.500 asks for "
                     f"at least {MIN_OBSERVERS_BT500} observers.")
    cols = _Columns(df, r)
    per_item = _per_item(df, cols, r, (lo, hi), model, ds, gold, warnings)
    per_rater = _per_rater(r, model, ds, gold)

    if breakdown_by is None:
        breakdown_by = [c for c in BREAKDOWN_COLUMNS if c in df.columns]
    missing = [c for c in breakdown_by if c not in df.columns]
    if missing:
        raise ValueError(f"breakdown column(s) not in the data: {', '.join(missing)}")
    report["breakdowns"] = (_breakdowns(cols, r, breakdown_by, bootstrap, seed, gold, warnings)
                            if r.n_ratings else {c: [] for c in breakdown_by})
    cmp_cols = [c for c in COMPARISON_COLUMNS if c in df.columns]
    report["comparisons"] = (_comparisons(cols, r, cmp_cols, bootstrap, seed, gold)
                             if r.n_ratings else [])
    report["warnings"] = warnings
    report["notes"] = notes
    report["scale"] = [lo, hi]
    report["bootstrap"] = {"resamples": bootstrap, "seed": int(seed)}
    return per_item, per_rater


# --------------------------------------------------------------------------------------------
# Reading rating files
# --------------------------------------------------------------------------------------------


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
        return col.str.strip().replace("", pd.NA)
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


def read_ratings_file(path: str | Path, *, scale: Sequence[int] | None = None) -> pd.DataFrame:
    """Read long-format ratings from CSV, JSON Lines (.jsonl/.ndjson) or Parquet, validated.

    CSVs may be comma-, semicolon-, tab- or pipe-separated, UTF-8 (with or without BOM),
    UTF-16 or Windows-1252, with empty rows (dropped). Ids are stripped of surrounding spaces.
    Rows without a score are dropped; their count and first rows are in
    ``df.attrs["n_missing_scores"]`` / ``["missing_score_rows"]``, which build_report warns
    about. Anything else that does not fit raises :class:`RatingsFileError`, one line naming
    the file, the row as a spreadsheet numbers it (a CSV's header is row 1) and the fix.
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
        df["score"] = df["score"].str.strip().replace("", pd.NA)
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
            raise refuse(pos, "score", f"{problem} (got {_py(raw.iloc[pos])!r})",
                         f"{on_scale} (or give the right scale)" if lo_hi else on_scale)
    n_blank = int(blank.sum())
    if n_blank:
        dropped = row_of[blank]
        df = df[~blank].copy()
        x = x[~blank]
    df["score"] = x.astype(np.int64)
    if n_blank:
        df.attrs["n_missing_scores"] = n_blank
        df.attrs["missing_score_rows"] = [int(v) for v in dropped[:10]]
    return df
