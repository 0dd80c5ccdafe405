"""The agreement statistics report: :func:`build_report` turns a long-format rating table into a
:class:`~review.analysis.report_types.Report` (rendered as JSON by review.analysis.report_json,
as Markdown by review.analysis.markdown_report, as HTML by review.analysis.html_report).

Why: analysts, the UI and exports all need the same numbers with the same caveats, so they are
computed once here from a long-format rating table (see :mod:`review.analysis.agreement`).

What the figures are (the parts' fields are in review.analysis.report_types):

- Krippendorff's alpha at three levels; Fleiss' kappa on the items with the most common number
  of ratings (``notes`` says which); percent agreement, the mean share of agreeing rater pairs
  per multiply-rated item (inflated by imbalanced categories: show it only beside alpha or
  kappa). Their 95% intervals are a percentile item bootstrap (none unless ``bootstrap > 0``).
- ICC, Shrout & Fleiss forms: ICC1 one-way random, ICC2 two-way random absolute agreement, ICC3
  two-way mixed consistency, single rater; ``k``: mean of k raters. 95% CIs from the F
  distribution, on a complete item x rater table (``notes`` says which subset).
- Cohen's kappa per rater pair (unweighted, linear, quadratic weights by distance on the scale)
  on the items both rated, for the pairs sharing at least ``MIN_PAIR_ITEMS`` (5) items, at most
  ``MAX_LISTED_PAIRS`` of them (those sharing the most items); with ``all_pairs=True`` every pair
  sharing an item. Both stay within the memory budgets of
  :func:`review.analysis.agreement.pair_tables` (the most active raters first). The summary
  (computed plus skipped is every pair, and the kappas' distribution) costs memory in proportion
  to the ratings, not to raters squared.
- Per item: MOS with its CI, the P.910 subject model's quality, Dawid-Skene's label, the majority
  label; DMOS when ``reference_group`` and ``is_hidden_reference`` are present; the gold pass
  rate with gold; every characteristic column that is constant within an item.
- Per rater: ITU-T P.910 / P.913 subject model bias and inconsistency (MLE), BT.500 screening,
  Dawid-Skene accuracy and confusion; with gold, gold accuracy judged on the rater's own score
  (``reviewer_score`` when present, the score before any QA correction; see
  :func:`review.analysis.agreement.gold_of`), with a Wilson 95% CI.
- Breakdowns by each characteristic column present (``guideline_version, qa_cohort, blur_kind,
  blur_level, restorer, content``): alpha (ordinal), MOS and gold accuracy per group.
- Comparisons (A minus B) for ``guideline_version`` and ``qa_cohort``: alpha CIs resample each
  group's items independently (needs ``bootstrap > 0``), gold accuracy CIs are Newcombe's.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from concurrent.futures import Future
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from review.analysis import agreement as ag
from review.analysis.agreement import Coef, Ratings
from review.analysis.report_types import (
    AlphaLevels,
    BootstrapSettings,
    BreakdownGroup,
    Comparison,
    IccForms,
    ItemDawidSkene,
    ItemDmos,
    KappaDistribution,
    KappaDistributions,
    PairKappa,
    PairSkips,
    PairwiseSummary,
    PerItem,
    PerRater,
    RaterDawidSkene,
    RaterGold,
    Report,
    json_safe,
    reported,
)
from review.performance import running_beside

if TYPE_CHECKING:  # the file reader imports this module's column names
    from review.analysis.ratings_file import MissingScores

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
    uniq = [json_safe(u) for u in uniques.tolist()] + [None]  # code -1 -> None
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


def _kappa_distribution(k: np.ndarray) -> KappaDistribution:
    """Summary of the defined kappas of one weighting: n, mean and quartiles."""
    k = k[np.isfinite(k)]
    if k.size == 0:
        return KappaDistribution(0)
    q = np.quantile(k, [0.0, 0.25, 0.5, 0.75, 1.0])
    return KappaDistribution(int(k.size), float(k.mean()), float(q[0]), float(q[1]), float(q[2]),
                             float(q[3]), float(q[4]))


def _distributions(kappas: dict[str, np.ndarray]) -> KappaDistributions:
    none = KappaDistribution(0)
    if not kappas:
        return KappaDistributions(none, none, none)
    return KappaDistributions(*(_kappa_distribution(kappas[wt]) for wt in ag.KAPPA_WEIGHTS))


def _pairwise(r: Ratings, pairs: ag.PairTables | None, kappas: dict[str, np.ndarray],
              boot: ag.AgreementBootstrap | None, all_pairs: bool,
              warnings: list[str]) -> tuple[tuple[PairKappa, ...], PairwiseSummary]:
    """The pair table (bounded) and its summary: how many pairs, which were skipped and why,
    and the distribution of the kappas computed."""
    min_items = 1 if all_pairs else ag.MIN_PAIR_ITEMS
    n_all = r.n_raters * (r.n_raters - 1) // 2
    if pairs is None:
        return (), PairwiseSummary(min_items, n_all, 0, 0, PairSkips(n_all, 0, 0),
                                   _distributions({}))
    n_pairs = int(pairs.tables.shape[0])
    n_shared = pairs.tables.sum(axis=(1, 2))
    undefined = int((~np.isfinite(kappas["unweighted"])).sum()) if kappas else 0
    if pairs.n_over_budget:
        warnings.append(f"Pairwise kappa: {pairs.n_over_budget} rater pairs were not computed "
                        f"(memory budget); only pairs among the {pairs.n_raters_scanned} most "
                        f"active of {pairs.n_raters_eligible} eligible raters were.")
    listed = np.arange(n_pairs)
    if not all_pairs and n_pairs > MAX_LISTED_PAIRS:
        listed = np.sort(np.argsort(-n_shared, kind="stable")[:MAX_LISTED_PAIRS])
    summary = PairwiseSummary(
        min_items, n_all, n_pairs - undefined, int(listed.size),
        PairSkips(pairs.n_fewer_items, pairs.n_over_budget, undefined), _distributions(kappas))
    rows: list[PairKappa] = []
    few_pairs = 0
    for j in listed.tolist():
        n = int(n_shared[j])
        if n < ag.MIN_RELIABLE_ITEMS:
            few_pairs += 1
        by_weight: list[Coef] = []
        for wt in ag.KAPPA_WEIGHTS:
            val = float(kappas[wt][j])
            if not math.isfinite(val):
                by_weight.append(reported(Coef.missing(
                    "both raters gave one and the same score on their shared items: kappa is "
                    "undefined")))
                continue
            ci = boot.kappa[wt][j] if boot is not None and boot.kappa.get(wt) else None
            by_weight.append(reported(Coef(val, n, ci)))
        rows.append(PairKappa(json_safe(r.raters[pairs.rater_a[j]]),
                              json_safe(r.raters[pairs.rater_b[j]]), n, *by_weight))
    if few_pairs:
        warnings.append(f"{few_pairs} of {len(rows)} listed rater pairs share fewer than "
                        f"{ag.MIN_RELIABLE_ITEMS} items: their kappas are mostly noise.")
    return tuple(rows), summary


#: The agreement section of a report, in the making: pairwise kappas and their summary, alpha,
#: Fleiss' kappa, the ICC forms, percent agreement (Report's fields of those names).
_Agreement = tuple[tuple[PairKappa, ...], PairwiseSummary, AlphaLevels, Coef, IccForms, Coef]


def _agreement_section(r: Ratings, bootstrap: int, seed: int, all_pairs: bool,
                       warnings: list[str], notes: list[str]) -> _Agreement:
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

    pair_rows, pair_summary = _pairwise(r, pairs, kappas, boot, all_pairs, warnings)
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

    return (pair_rows, pair_summary,
            AlphaLevels(reported(alpha["nominal"]), reported(alpha["ordinal"]),
                        reported(alpha["interval"])),
            reported(fleiss), IccForms.of({f: reported(c) for f, c in icc.items()}), reported(percent))


def _per_item(df: pd.DataFrame, cols_in: _Columns, r: Ratings, scale: tuple[int, int],
              model: ag.SubjectModel, ds: ag.DawidSkeneResult | None, gold: ag.GoldResult | None,
              warnings: list[str]) -> PerItem:
    if r.n_items == 0:
        return PerItem((), (), (), (), (), (), (), None, (), None, None, {})
    mos = ag.item_mos(r)
    dawid_skene = None
    if ds is not None:
        dawid_skene = ItemDawidSkene(r.values[ds.labels].astype(np.int64).tolist(),
                                     ds.posteriors.max(axis=1).tolist())
    dmos = None
    if all(c in df.columns for c in DMOS_COLUMNS):
        dm = ag.item_dmos(r, r.column(df, "reference_group"),
                          r.column(df, "is_hidden_reference"), float(scale[1]))
        dmos = ItemDmos(_nan_to_none(dm["dmos"].to_numpy()),
                        _ci_list(dm["dmos"].to_numpy(), dm["dmos_ci95_half"].to_numpy()),
                        dm["dmos_n"].tolist())
        if int((dm["dmos_n"] > 0).sum()) == 0:
            warnings.append("DMOS: no item has a rater who also rated its hidden reference.")
    pass_rate = None
    if gold is not None:
        n_g = np.bincount(r.item, weights=np.isfinite(gold.correct), minlength=r.n_items)
        k_g = np.bincount(r.item, weights=np.nan_to_num(gold.correct), minlength=r.n_items)
        with np.errstate(invalid="ignore", divide="ignore"):
            pass_rate = _nan_to_none(np.where(n_g > 0, k_g / n_g, np.nan))
    characteristics: dict[str, list[Any]] = {}
    for name in OPTIONAL_COLUMNS:
        if name in df.columns and name not in ag.REQUIRED_COLUMNS:
            per = _per_item_constant(r, cols_in, name)
            if per is not None:
                characteristics[name] = per
    return PerItem(
        item=[json_safe(x) for x in r.items.tolist()],
        n_ratings=mos["n_ratings"].tolist(),
        mos=_nan_to_none(mos["mos"].to_numpy()),
        mos_std=_nan_to_none(mos["mos_std"].to_numpy()),
        mos_ci95=_ci_list(mos["mos"].to_numpy(), mos["mos_ci95_half"].to_numpy()),
        mle_quality=_nan_to_none(model.quality),
        mle_quality_ci95=_ci_list(model.quality, model.quality_ci95_half),
        dawid_skene=dawid_skene,
        majority_label=r.values[ag.majority_vote(r.counts)].astype(np.int64).tolist(),
        dmos=dmos, gold_pass_rate=pass_rate, characteristics=characteristics)


def _per_rater(r: Ratings, model: ag.SubjectModel, ds: ag.DawidSkeneResult | None,
               gold: ag.GoldResult | None) -> PerRater:
    """One entry per rater of native Python values, None for anything not finite."""
    if r.n_raters == 0:
        return PerRater((), (), (), (), (), (), (), (), (), (), (), (), None, None)
    n = r.ratings_per_rater
    mean = np.bincount(r.rater, weights=r.score, minlength=r.n_raters) / np.maximum(n, 1)
    bt = ag.bt500_screening(r)
    dawid_skene = None
    if ds is not None:
        conf = np.round(ds.confusion, 4)
        cells = conf.astype(object)
        cells[~np.isfinite(conf)] = None
        dawid_skene = RaterDawidSkene(_nan_to_none(ds.rater_accuracy()), cells.tolist())
    rater_gold = None
    if gold is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            acc = np.where(gold.per_rater_n > 0, gold.per_rater_correct / gold.per_rater_n,
                           np.nan)
        rater_gold = RaterGold(
            gold.per_rater_n.tolist(), gold.per_rater_correct.tolist(), _nan_to_none(acc),
            [(list(ci) if (ci := ag.wilson_ci(int(k), int(m))) else None)
             for k, m in zip(gold.per_rater_correct, gold.per_rater_n, strict=True)])
    lo_hi = model.inconsistency_ci95
    return PerRater(
        rater=[json_safe(x) for x in r.raters.tolist()],
        n_ratings=n.tolist(),
        mean_score=_nan_to_none(mean),
        bias=_nan_to_none(model.bias),
        bias_ci95=_ci_list(model.bias, model.bias_ci95_half),
        inconsistency=_nan_to_none(model.inconsistency),
        inconsistency_ci95=_ci_list((lo_hi[:, 0] + lo_hi[:, 1]) / 2, (lo_hi[:, 1] - lo_hi[:, 0]) / 2),
        inconsistency_at_floor=[bool(x) for x in model.at_floor.tolist()],
        bt500_items=bt["bt500_items"].tolist(),
        bt500_p=_nan_to_none(bt["bt500_p"].to_numpy()),
        bt500_q=_nan_to_none(bt["bt500_q"].to_numpy()),
        bt500_rejected=[bool(x) for x in bt["bt500_rejected"].tolist()],
        dawid_skene=dawid_skene, gold=rater_gold)


def _breakdowns(cols: _Columns, r: Ratings, columns: Sequence[str], bootstrap: int, seed: int,
                gold: ag.GoldResult | None,
                warnings: list[str]) -> dict[str, tuple[BreakdownGroup, ...]]:
    out: dict[str, tuple[BreakdownGroup, ...]] = {}
    for col in columns:
        rows = []
        few = 0
        for value, mask, sub in _split(r, cols, col):
            if sub.n_pairable_items < ag.MIN_RELIABLE_ITEMS:
                few += 1
            rows.append(BreakdownGroup(
                json_safe(value), sub.n_items, sub.n_raters, sub.n_ratings,
                reported(_alpha_coef(sub, "ordinal", bootstrap, seed, "breakdown", col, value)),
                reported(_mos_of_group(sub)),
                None if gold is None else reported(_gold_coef(gold.correct[mask]))))
        if few:
            warnings.append(f"Breakdown by {col}: {few} of {len(rows)} groups have fewer than "
                            f"{ag.MIN_RELIABLE_ITEMS} multiply-rated items.")
        out[col] = tuple(rows)
    return out


def _comparisons(cols: _Columns, r: Ratings, columns: Sequence[str], bootstrap: int,
                 seed: int, gold: ag.GoldResult | None) -> tuple[Comparison, ...]:
    out = []
    for col in columns:
        groups = [g for g in _split(r, cols, col) if g[0] is not None]
        for (va, ma, sa), (vb, mb, sb) in itertools.combinations(groups, 2):
            gold_diff = None
            if gold is not None:
                ca, cb = gold.correct[ma], gold.correct[mb]
                ca, cb = ca[np.isfinite(ca)], cb[np.isfinite(cb)]
                gold_diff = reported(ag.compare_proportions(int(ca.sum()), int(ca.size),
                                                            int(cb.sum()), int(cb.size)))
            out.append(Comparison(
                col, json_safe(va), json_safe(vb),
                reported(ag.compare_alpha(sa, sb, "ordinal", bootstrap, seed, f"{col}:{va}:{vb}")),
                gold_diff))
    return tuple(out)


def build_report(df: pd.DataFrame, *, bootstrap: int = 0, seed: int = 0,
                 scale: Sequence[int] = (1, 5),
                 breakdown_by: Sequence[str] | None = None,
                 all_pairs: bool = False, missing_scores: MissingScores | None = None) -> Report:
    """All agreement statistics of a long-format rating table (figures: module docstring).

    ``bootstrap`` is the number of item resamples for CIs (0: no bootstrap CIs);
    ``breakdown_by`` defaults to the characteristic columns present in ``df``;
    ``all_pairs`` lists the kappa of every rater pair sharing an item (still within the memory
    budgets of :func:`review.analysis.agreement.pair_tables`) instead of the pairs sharing at
    least ``MIN_PAIR_ITEMS`` items, at most ``MAX_LISTED_PAIRS`` of them;
    ``missing_scores`` are the rows a ratings file lost on reading
    (:func:`review.analysis.ratings_file.read_ratings_file`), for a warning.
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
    if missing_scores is not None:
        warnings.append(missing_scores.warning())
    if r.n_duplicates:
        warnings.append(f"{r.n_duplicates} repeated (item, rater) ratings: the last row of each "
                        f"was used (a later rating supersedes an earlier one).")
    if r.n_ratings == 0:
        warnings.append("No ratings: nothing to analyse.")

    # Dawid-Skene's EM runs on a second core while the rest is computed (running_beside says why)
    with running_beside(ag.dawid_skene, r) if r.n_ratings else nullcontext() as ds_running:
        pairs, pair_summary, alpha, fleiss, icc, percent = _agreement_section(
            r, bootstrap, seed, all_pairs, warnings, notes)
        rest = _after_agreement(df, r, (lo, hi), ds_running, bootstrap, seed, breakdown_by,
                                warnings, notes)
    return Report(
        n_items=r.n_items, n_raters=r.n_raters, n_ratings=r.n_ratings,
        n_multiply_rated_items=r.n_pairable_items,
        pairwise_kappa=pairs, pairwise_kappa_summary=pair_summary, krippendorff_alpha=alpha,
        fleiss_kappa=fleiss, icc=icc, percent_agreement=percent,
        breakdowns=rest.breakdowns, comparisons=rest.comparisons,
        warnings=tuple(warnings), notes=tuple(notes), scale=(lo, hi),
        bootstrap=BootstrapSettings(bootstrap, int(seed)),
        per_item=rest.per_item, per_rater=rest.per_rater)


@dataclass(frozen=True)
class _Rest:
    """Everything of a report after the agreement coefficients."""

    breakdowns: dict[str, tuple[BreakdownGroup, ...]]
    comparisons: tuple[Comparison, ...]
    per_item: PerItem
    per_rater: PerRater


def _after_agreement(df: pd.DataFrame, r: Ratings, scale: tuple[int, int],
                     ds_running: Future[ag.DawidSkeneResult] | None, bootstrap: int, seed: int,
                     breakdown_by: Sequence[str] | None, warnings: list[str],
                     notes: list[str]) -> _Rest:
    """Gold, the subject model, Dawid-Skene's result, the per-item and per-rater tables,
    breakdowns and comparisons."""
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
        names = ", ".join(str(json_safe(x)) for x in r.raters[model.at_floor][:10])
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
    breakdowns: dict[str, tuple[BreakdownGroup, ...]] = (
        _breakdowns(cols, r, breakdown_by, bootstrap, seed, gold, warnings) if r.n_ratings
        else {c: () for c in breakdown_by})
    cmp_cols = [c for c in COMPARISON_COLUMNS if c in df.columns]
    comparisons = _comparisons(cols, r, cmp_cols, bootstrap, seed, gold) if r.n_ratings else ()
    return _Rest(breakdowns, comparisons, per_item, per_rater)
