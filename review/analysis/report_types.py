"""The statistics report as typed parts: what :func:`review.analysis.report.build_report` returns.

Why typed (issue 22): the Markdown, HTML and JSON renderings, the Analyst page's tables and charts
and the CLI read the same figures; with attributes a misspelt name fails at once (and in the type
checker) instead of showing an empty table. Coefficients stay :class:`~review.analysis.agreement.Coef`
from computation to rendering; the JSON form is one rendering (:mod:`review.analysis.report_json`).

Every part is frozen. Coefficients in a report are normalised: ``value`` is a finite float or None,
``ci95`` a finite (low, high) or None, ``reason`` set exactly when ``value`` is None. In the
per-item and per-rater columns, numbers that are missing or not finite are None, never NaN, and
an interval is ``[low, high]`` or None.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from review.analysis.agreement import Coef

if TYPE_CHECKING:  # pools_compared builds its figures with this module's parts
    from review.analysis.pools_compared import PoolFigures

#: A column of a per-item or per-rater table: one JSON-safe value per row.
Column = Sequence[Any]


def json_safe(x: Any) -> Any:
    """A JSON-safe Python value: numpy scalars unboxed, NaN/inf -> None, timestamps as ISO text."""
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, pd.Timestamp):
        return x.isoformat()
    return x


def reported(c: Coef) -> Coef:
    """`c` as a report holds it: a finite value with its finite interval, or no value and a reason."""
    if not c.ok or c.value is None:
        return Coef(None, c.n_items, None, c.reason or "not computable from these data")
    ci = c.ci95
    if ci is not None and not all(math.isfinite(x) for x in ci):
        ci = None
    return Coef(float(c.value), int(c.n_items),
                None if ci is None else (float(ci[0]), float(ci[1])), None)


@dataclass(frozen=True)
class AlphaLevels:
    """Krippendorff's alpha at the three levels of measurement."""

    nominal: Coef
    ordinal: Coef
    interval: Coef

    def items(self) -> tuple[tuple[str, Coef], ...]:
        return (("nominal", self.nominal), ("ordinal", self.ordinal), ("interval", self.interval))

    def level(self, level: str) -> Coef:
        """Alpha at `level` ("nominal", "ordinal" or "interval")."""
        for name, c in self.items():
            if name == level:
                return c
        raise ValueError(f"unknown level of measurement {level!r}")


@dataclass(frozen=True)
class IccForms:
    """The six Shrout & Fleiss ICC forms (names as in ``agreement.ICC_FORMS``)."""

    icc1: Coef
    icc2: Coef
    icc3: Coef
    icc1k: Coef
    icc2k: Coef
    icc3k: Coef

    @classmethod
    def of(cls, by_form: Mapping[str, Coef]) -> IccForms:
        return cls(by_form["ICC1"], by_form["ICC2"], by_form["ICC3"], by_form["ICC1k"],
                   by_form["ICC2k"], by_form["ICC3k"])

    def items(self) -> tuple[tuple[str, Coef], ...]:
        """(form, coefficient) in the order ICC1, ICC2, ICC3, ICC1k, ICC2k, ICC3k."""
        return (("ICC1", self.icc1), ("ICC2", self.icc2), ("ICC3", self.icc3),
                ("ICC1k", self.icc1k), ("ICC2k", self.icc2k), ("ICC3k", self.icc3k))


@dataclass(frozen=True)
class PairKappa:
    """Cohen's kappa of one rater pair on the items both rated, by weighting."""

    rater_a: Any
    rater_b: Any
    n_items: int
    unweighted: Coef
    linear: Coef
    quadratic: Coef

    def weighted(self, weight: str) -> Coef:
        """The kappa with `weight` ("unweighted", "linear" or "quadratic")."""
        for name, c in (("unweighted", self.unweighted), ("linear", self.linear),
                        ("quadratic", self.quadratic)):
            if name == weight:
                return c
        raise ValueError(f"unknown kappa weighting {weight!r}")


@dataclass(frozen=True)
class KappaDistribution:
    """The defined kappas of one weighting over the pairs computed: count, mean and quartiles
    (all None when no pair has one)."""

    n_pairs: int
    mean: float | None = None
    min: float | None = None
    q25: float | None = None
    median: float | None = None
    q75: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class KappaDistributions:
    unweighted: KappaDistribution
    linear: KappaDistribution
    quadratic: KappaDistribution

    def items(self) -> tuple[tuple[str, KappaDistribution], ...]:
        return (("unweighted", self.unweighted), ("linear", self.linear),
                ("quadratic", self.quadratic))


@dataclass(frozen=True)
class PairSkips:
    """Rater pairs without a kappa, by reason."""

    fewer_shared_items: int
    over_budget: int
    kappa_undefined: int


@dataclass(frozen=True)
class PairwiseSummary:
    """How many rater pairs there are, how many have a kappa and are listed, which were skipped
    and why; computed plus skipped is every pair."""

    min_shared_items: int
    n_rater_pairs: int
    n_pairs_computed: int
    n_pairs_listed: int
    skipped: PairSkips
    distribution: KappaDistributions


@dataclass(frozen=True)
class BreakdownGroup:
    """Agreement and MOS (and gold accuracy, with gold items) of one value of a column."""

    group: Any
    n_items: int
    n_raters: int
    n_ratings: int
    alpha_ordinal: Coef
    mos: Coef
    gold_accuracy: Coef | None = None


@dataclass(frozen=True)
class Comparison:
    """Group A minus group B of a comparison column (alpha ordinal; gold accuracy with gold)."""

    column: str
    group_a: Any
    group_b: Any
    alpha_ordinal_diff: Coef
    gold_accuracy_diff: Coef | None = None


@dataclass(frozen=True)
class ItemDawidSkene:
    label: Column
    confidence: Column


@dataclass(frozen=True)
class ItemDmos:
    dmos: Column
    ci95: Column
    n: Column


@dataclass(frozen=True)
class PerItem:
    """One entry per item, column by column (a million ratings make 100,000 items: columns, not
    row objects). ``characteristics`` holds every optional input column that is constant within
    each item, in :data:`review.analysis.report.OPTIONAL_COLUMNS` order."""

    item: Column
    n_ratings: Column
    mos: Column
    mos_std: Column
    mos_ci95: Column
    mle_quality: Column
    mle_quality_ci95: Column
    dawid_skene: ItemDawidSkene | None
    majority_label: Column
    dmos: ItemDmos | None
    gold_pass_rate: Column | None
    characteristics: Mapping[str, Column]

    def __len__(self) -> int:
        return len(self.item)

    def columns(self) -> list[tuple[str, Column]]:
        """(name, values) in the report's column order, the optional ones only when present."""
        out: list[tuple[str, Column]] = [
            ("item", self.item), ("n_ratings", self.n_ratings), ("mos", self.mos),
            ("mos_std", self.mos_std), ("mos_ci95", self.mos_ci95),
            ("mle_quality", self.mle_quality), ("mle_quality_ci95", self.mle_quality_ci95)]
        if self.dawid_skene is not None:
            out += [("ds_label", self.dawid_skene.label),
                    ("ds_confidence", self.dawid_skene.confidence)]
        out.append(("majority_label", self.majority_label))
        if self.dmos is not None:
            out += [("dmos", self.dmos.dmos), ("dmos_ci95", self.dmos.ci95),
                    ("dmos_n", self.dmos.n)]
        if self.gold_pass_rate is not None:
            out.append(("gold_pass_rate", self.gold_pass_rate))
        out += list(self.characteristics.items())
        return out


@dataclass(frozen=True)
class RaterDawidSkene:
    accuracy: Column
    confusion: Column


@dataclass(frozen=True)
class RaterGold:
    """Per rater: gold ratings judged, how many fell in the expected range, accuracy, Wilson CI."""

    n: Column
    correct: Column
    accuracy: Column
    accuracy_ci95: Column


@dataclass(frozen=True)
class PerRater:
    """One entry per rater, column by column: the P.910 subject model, BT.500 screening,
    Dawid-Skene's estimate and (with gold items) gold accuracy."""

    rater: Column
    n_ratings: Column
    mean_score: Column
    bias: Column
    bias_ci95: Column
    inconsistency: Column
    inconsistency_ci95: Column
    inconsistency_at_floor: Column
    bt500_items: Column
    bt500_p: Column
    bt500_q: Column
    bt500_rejected: Column
    dawid_skene: RaterDawidSkene | None
    gold: RaterGold | None

    def __len__(self) -> int:
        return len(self.rater)

    def columns(self) -> list[tuple[str, Column]]:
        """(name, values) in the report's column order, the optional ones only when present."""
        out: list[tuple[str, Column]] = [
            ("rater", self.rater), ("n_ratings", self.n_ratings), ("mean_score", self.mean_score),
            ("bias", self.bias), ("bias_ci95", self.bias_ci95),
            ("inconsistency", self.inconsistency), ("inconsistency_ci95", self.inconsistency_ci95),
            ("inconsistency_at_floor", self.inconsistency_at_floor),
            ("bt500_items", self.bt500_items), ("bt500_p", self.bt500_p),
            ("bt500_q", self.bt500_q), ("bt500_rejected", self.bt500_rejected)]
        if self.dawid_skene is not None:
            out += [("ds_accuracy", self.dawid_skene.accuracy),
                    ("ds_confusion", self.dawid_skene.confusion)]
        if self.gold is not None:
            out += [("gold_n", self.gold.n), ("gold_correct", self.gold.correct),
                    ("gold_accuracy", self.gold.accuracy),
                    ("gold_accuracy_ci95", self.gold.accuracy_ci95)]
        return out


def rows(table: PerItem | PerRater) -> Iterator[dict[str, Any]]:
    """The table's rows as dicts (its JSON form), built from the columns in one pass."""
    cols = table.columns()
    keys = [k for k, _ in cols]
    for vals in zip(*(v for _, v in cols), strict=True):
        yield dict(zip(keys, vals, strict=True))


@dataclass(frozen=True)
class BootstrapSettings:
    resamples: int
    seed: int


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


@dataclass(frozen=True)
class RatingsRead:
    """Which ratings a study's figures come from, where data cleansing leaves some out: the used
    ones (the default then) or all of them, and how many ratings of how many participants
    cleansing leaves out (review.analysis.export.ratings_read)."""

    which: str  # "used" or "all" (review.analysis.export.RATINGS_CHOICES)
    left_out: int
    participants: int

    def sentence(self) -> str:
        """The caption every page, report and answer shows."""
        out = f"{_count(self.left_out, 'rating')} of {_count(self.participants, 'participant')}"
        if self.which == "used":
            return f"Figures from used ratings only: data cleansing left {out} out."
        return f"Figures from all ratings, including the {out} that data cleansing leaves out."


@dataclass(frozen=True)
class Report:
    """All agreement statistics of a rating table (see :mod:`review.analysis.report`).

    Counts are after dropping rows without a score and keeping the last of repeated (item, rater)
    rows. ``breakdowns`` maps each breakdown column to its groups (sorted, missing last as None);
    ``warnings`` say where a figure is weak or rows were left out, ``notes`` how a figure was
    computed (subsets used). The last two parts are a crowd study's, set by the caller
    (review.analysis.pools_report.with_crowd_parts) and absent otherwise: ``ratings_read`` where
    data cleansing leaves ratings out, ``pools`` (review.analysis.pools_compared) where the study
    has more than one rater pool.
    """

    n_items: int
    n_raters: int
    n_ratings: int
    n_multiply_rated_items: int
    pairwise_kappa: tuple[PairKappa, ...]
    pairwise_kappa_summary: PairwiseSummary
    krippendorff_alpha: AlphaLevels
    fleiss_kappa: Coef
    icc: IccForms
    percent_agreement: Coef
    breakdowns: Mapping[str, tuple[BreakdownGroup, ...]]
    comparisons: tuple[Comparison, ...]
    warnings: tuple[str, ...]
    notes: tuple[str, ...]
    scale: tuple[int, int]
    bootstrap: BootstrapSettings
    per_item: PerItem
    per_rater: PerRater
    ratings_read: RatingsRead | None = None
    pools: tuple[PoolFigures, ...] = ()
