"""Data cleansing of crowd submissions, in the style of the P.808 and P.910 crowd toolkits.

A submission is one participant's session of items. Each criterion is computed per submission
and reported with its value and reason, so an admin can read why a submission was left out and
override it. The outcome follows the P.808 toolkit's split between paying and using:

- **reject**: an attention check (trapping question) was failed; the platform is told why
  (`rules.rejection_feedback`) and the participant goes on the block list.
- **accept, do not use**: paid, but its ratings stay out of the analysis: gold accuracy below
  `gold_min`, straight-lining (score variance below `min_variance` and below `straight_ratio` of
  the variance of the other participants' means of the same items), speeding (median seconds per
  item below `min_median_seconds`), ITU-R BT.500 observer screening, or (when set) Dawid-Skene
  accuracy below `ds_min`.
- **accept and use**: every criterion passed, or a single slip (one trap, or one gold answer, too
  many) in a session whose scores agree with the other participants' (consensus r at least
  `forgive_r`); the `forgiven` column says so.

Single ratings with |z| >= 3.29 against their item's other ratings (P.808's outlier removal) are
left out of a used submission one by one and counted. Nothing is deleted: cleansing decides which
ratings an analysis uses, never which are kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from review.analysis.agreement import bt500_screening, dawid_skene, encode_ratings
from review.errors import ReviewError

#: The outcomes a submission can have, from the participant's and the analysis' side.
ACCEPT_USE = "accept_use"
ACCEPT_NO_USE = "accept_no_use"
REJECT = "reject"
OUTCOMES = (ACCEPT_USE, ACCEPT_NO_USE, REJECT)

#: Item kinds in a submission: live items are analysed; gold items have a known range of right
#: answers; traps state their right answer in the item itself ("select 2").
LIVE, GOLD, TRAP = "live", "gold", "trap"

#: The columns a submission table needs (one row per rating).
COLUMNS = ("submission", "rater", "item", "score", "seconds", "kind", "expected_min", "expected_max")


class CleansingError(ReviewError, ValueError):
    """The ratings cannot be cleansed as given (a missing column, an unknown item kind), or a rule's
    threshold is out of its range."""


@dataclass(frozen=True)
class CleansingRules:
    """Each criterion's threshold; `None` turns a criterion off. Defaults follow P.808's toolkit
    (gold within one step, every trap right; see each line) and P.910's crowd guidance."""

    max_trap_failures: int | None = 0
    gold_min: float | None = 0.8  # share of gold items answered within `gold_tolerance`
    gold_tolerance: int = 1  # scale steps a gold answer may miss its expected range by
    # straight-lining: variance of a session's live scores. P.808's toolkit uses 0.1; honest sessions
    # spanning the blur levels vary by well over 1, and 0.25 caught every straight-liner who slips
    # in a random answer now and then (bench/cleansing.py tuning seeds 200-211).
    min_variance: float | None = 0.25
    min_median_seconds: float | None = 2.0  # speeding: median seconds per live item
    outlier_z: float | None = 3.29  # per rating, |z| against the item's ratings (P.808)
    bt500: bool = True  # ITU-R BT.500 observer screening over live items
    # Dawid-Skene accuracy (prior-weighted, 5-point scale): always reported, off by default. With
    # 20 ratings a participant it does not separate spammers (about 0.25) from careful raters
    # (about 0.47) well enough: at 0.35 it left 13 % of honest participants out (bench/cleansing.py).
    ds_min: float | None = None
    # Agreement with the crowd: Pearson r of a session's live scores with the other participants'
    # mean on the same items (P.808's toolkit uses this r against the MOS for its quality bonus).
    # Always reported; off by default: with 20 items a session and about 12 ratings an item, r is
    # too noisy to judge by (at 0.3 it left 14 % of honest participants out, bench/cleansing.py
    # tuning seeds 200-211, against 5.6 % without it).
    min_consensus_r: float | None = None
    # One slip forgiven: a session with exactly one check too many missed (one trap, or one gold
    # answer) is still accepted and used when its live scores agree with the other participants'
    # (consensus r at least this). An attentive participant slips now and then; a spammer's scores
    # are unrelated to everyone else's (r about 0). P.808's toolkit forgives nothing: on
    # bench/cleansing.py's tuning seeds 200-231 that left 5.6 % of honest participants out, half
    # of them for one slip; at 0.5 the spammers caught stayed at 94.3 % (0.4: 92.7 %).
    forgive_r: float | None = 0.5
    # Straight-lining is relative: a low variance counts only when it is below this share of how
    # much the same items vary by the other participants' scores (the variance of their means), so
    # a session of items that all look alike is not taken for straight-lining (tuning seeds: 1.7 %
    # of honest participants were, for variances of 0.09-0.25).
    straight_ratio: float | None = 0.5
    rejection_feedback: str = ("Your answers did not pass the study's attention checks. Please read "
                               "each item and answer it as the instructions say.")

    def __post_init__(self) -> None:
        ranges = {"max_trap_failures": (0, math.inf), "gold_min": (0.0, 1.0), "gold_tolerance": (0, math.inf),
                  "min_variance": (0.0, math.inf), "min_median_seconds": (0.0, math.inf),
                  "outlier_z": (0.0, math.inf), "ds_min": (0.0, 1.0), "min_consensus_r": (-1.0, 1.0),
                  "forgive_r": (-1.0, 1.0), "straight_ratio": (0.0, math.inf)}
        for name, (lo, hi) in ranges.items():
            value = getattr(self, name)
            if value is not None and not lo <= value <= hi:
                where = f"at least {lo:g}" if hi == math.inf else f"between {lo:g} and {hi:g}"
                raise CleansingError(f"The cleansing rule {name} must be {where} (got {value:g}).")

    def as_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Cleansing:
    """Per-submission criteria and outcomes, and per-rating use flags."""

    submissions: pd.DataFrame  # one row per submission, every criterion with its value and reason
    used: pd.Series  # per input row (live ratings only): True when the analysis uses it
    rules: CleansingRules

    def outcome_counts(self) -> dict[str, int]:
        counts = self.submissions["outcome"].value_counts()
        return {o: int(counts.get(o, 0)) for o in OUTCOMES}

    def block_list(self) -> list[str]:
        """Raters with a rejected submission: not to be invited again."""
        rejected = self.submissions[self.submissions["outcome"] == REJECT]
        return sorted(map(str, rejected["rater"].unique()))


def _check(df: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise CleansingError(f"The ratings lack the column(s) {', '.join(missing)} that cleansing needs.")
    bad_kind = sorted(set(df["kind"]) - {LIVE, GOLD, TRAP})
    if bad_kind:
        raise CleansingError(f"Unknown item kind(s) {bad_kind}: use {LIVE!r}, {GOLD!r} or {TRAP!r}.")
    return df.reset_index(drop=True)


def _within(score: pd.Series, lo: pd.Series, hi: pd.Series, tolerance: int) -> pd.Series:
    return (score >= lo - tolerance) & (score <= hi + tolerance)


def _outliers(live: pd.DataFrame, z: float) -> pd.Series:
    """Per live rating: |score - item mean| / item sd >= z, with the item's sd over its ratings
    (items with fewer than three ratings or no spread hold no outlier)."""
    grouped = live.groupby("item")["score"]
    mean, sd, n = grouped.transform("mean"), grouped.transform("std"), grouped.transform("size")
    with np.errstate(invalid="ignore", divide="ignore"):
        zscore = (live["score"] - mean).abs() / sd
    return (n >= 3) & (sd > 0) & (zscore >= z)


def _agreement(live: pd.DataFrame) -> dict[object, tuple[float, float]]:
    """Per submission, against the leave-one-out mean of the same items (the other participants'):
    the Pearson r of its live scores with those means (NaN with fewer than 3 items that others
    rated, or no spread), and the variance of those means over its items (how much the items
    themselves differ, by everyone else's scores)."""
    grouped = live.groupby("item")["score"]
    total, count = grouped.transform("sum"), grouped.transform("size")
    with np.errstate(invalid="ignore", divide="ignore"):
        others = (total - live["score"]) / (count - 1)
    frame = pd.DataFrame({"submission": live["submission"], "score": live["score"].astype(float),
                          "others": others.where(count > 1)}).dropna()
    out: dict[object, tuple[float, float]] = {}
    for submission, g in frame.groupby("submission"):
        spread = float(g["others"].var(ddof=0))
        flat = len(g) < 3 or g["score"].std() == 0 or g["others"].std() == 0
        out[submission] = (math.nan if flat else float(np.corrcoef(g["score"], g["others"])[0, 1]), spread)
    return out


def _rater_screens(live: pd.DataFrame, rules: CleansingRules) -> pd.DataFrame:
    """BT.500 rejection and Dawid-Skene accuracy per rater, over every live rating."""
    out = pd.DataFrame(index=pd.Index(sorted(live["rater"].unique(), key=str), name="rater"))
    out["bt500_rejected"], out["ds_accuracy"] = False, math.nan
    if live.empty:
        return out
    r = encode_ratings(live[["item", "rater", "score"]])
    if rules.bt500:
        screen = bt500_screening(r)
        out.loc[list(r.raters), "bt500_rejected"] = screen["bt500_rejected"].to_numpy()
    if r.n_items >= 2:
        out.loc[list(r.raters), "ds_accuracy"] = dawid_skene(r).rater_accuracy()
    return out


def cleanse(ratings: pd.DataFrame, rules: CleansingRules = CleansingRules()) -> Cleansing:
    """Every criterion per submission, its outcome and reasons, and which live ratings are used."""
    df = _check(ratings)
    live_mask = df["kind"] == LIVE
    screens = _rater_screens(df[live_mask], rules)
    agreement = _agreement(df[live_mask])
    rows = []
    for submission, sub in df.groupby("submission", sort=True):
        rater = sub["rater"].iloc[0]
        traps, gold, own = sub[sub["kind"] == TRAP], sub[sub["kind"] == GOLD], sub[sub["kind"] == LIVE]
        trap_failures = int((~_within(traps["score"], traps["expected_min"], traps["expected_max"], 0)).sum())
        gold_right = _within(gold["score"], gold["expected_min"], gold["expected_max"], rules.gold_tolerance)
        gold_accuracy = float(gold_right.mean()) if len(gold) else math.nan
        variance = float(own["score"].var(ddof=0)) if len(own) else math.nan
        median_s = float(own["seconds"].median()) if len(own) else math.nan
        screen = screens.loc[rater] if rater in screens.index else None
        bt500 = bool(screen["bt500_rejected"]) if screen is not None else False
        ds = float(screen["ds_accuracy"]) if screen is not None else math.nan
        consensus_r, others_variance = agreement.get(submission, (math.nan, math.nan))
        reasons: list[str] = []
        # Checks missed beyond what the rules allow: traps failed, gold answers outside tolerance.
        trap_over = (max(trap_failures - rules.max_trap_failures, 0)
                     if rules.max_trap_failures is not None else 0)
        allowed = math.floor(len(gold) * (1 - rules.gold_min) + 1e-9) if rules.gold_min is not None else 0
        gold_over = max(int((~gold_right).sum()) - allowed, 0) if rules.gold_min is not None else 0
        trap_slip, gold_slip = trap_over > 0, gold_over > 0
        # One slip is forgiven when the live scores agree with everyone else's: a spammer's do not
        # (r about 0), an attentive participant's do.
        forgiven = (rules.forgive_r is not None and trap_over + gold_over == 1
                    and bool(consensus_r >= rules.forgive_r))
        forgiven_text = ""
        if forgiven:
            missed = f"1 of {len(traps)} attention checks" if trap_slip else f"1 of {len(gold)} gold answers"
            forgiven_text = (f"missed {missed}, forgiven: scores agree with the others' "
                             f"(r = {consensus_r:.2f})")
        reject = trap_slip and not forgiven
        if reject:
            reasons.append(f"failed {trap_failures} of {len(traps)} attention checks")
        if gold_slip and not forgiven:
            reasons.append(f"gold accuracy {gold_accuracy:.0%} below {rules.gold_min:.0%}")
        flat = rules.min_variance is not None and len(own) > 1 and variance < rules.min_variance
        if flat and rules.straight_ratio is not None and not math.isnan(others_variance):
            flat = variance < rules.straight_ratio * others_variance
        if flat:
            reasons.append(f"straight-lining: score variance {variance:.2f} below {rules.min_variance}"
                           + (f" while the others' scores of the same items vary by {others_variance:.2f}"
                              if not math.isnan(others_variance) else ""))
        if rules.min_median_seconds is not None and len(own) and median_s < rules.min_median_seconds:
            reasons.append(f"speeding: median {median_s:.1f} s per item, below {rules.min_median_seconds} s")
        if bt500:
            reasons.append("rejected by ITU-R BT.500 observer screening")
        if rules.min_consensus_r is not None and not math.isnan(consensus_r) \
                and consensus_r < rules.min_consensus_r:
            reasons.append(f"scores unrelated to the other participants' (r = {consensus_r:.2f}, below "
                           f"{rules.min_consensus_r})")
        if rules.ds_min is not None and not math.isnan(ds) and ds < rules.ds_min:
            reasons.append(f"Dawid-Skene accuracy {ds:.2f} below {rules.ds_min}")
        outcome = REJECT if reject else ACCEPT_NO_USE if reasons else ACCEPT_USE
        rows.append({"submission": submission, "rater": rater, "live_items": len(own),
                     "traps": len(traps), "trap_failures": trap_failures, "gold_items": len(gold),
                     "gold_accuracy": gold_accuracy, "score_variance": variance,
                     "median_seconds": median_s, "bt500_rejected": bt500, "ds_accuracy": ds,
                     "consensus_r": consensus_r, "others_variance": others_variance, "outcome": outcome,
                     "reasons": "; ".join(reasons), "forgiven": forgiven_text,
                     "platform_feedback": rules.rejection_feedback if reject else ""})
    submissions = pd.DataFrame(rows, columns=[
        "submission", "rater", "live_items", "traps", "trap_failures", "gold_items", "gold_accuracy",
        "score_variance", "median_seconds", "bt500_rejected", "ds_accuracy", "consensus_r",
        "others_variance", "outcome", "reasons", "forgiven", "platform_feedback"])
    # P.808 removes outlying ratings among the used submissions only (a spammer's scores would
    # otherwise widen every item's spread and hide them).
    use_sub = set(submissions.loc[submissions["outcome"] == ACCEPT_USE, "submission"])
    used = live_mask & df["submission"].isin(use_sub)
    outlier = pd.Series(False, index=df.index)
    if rules.outlier_z is not None and used.any():
        outlier.loc[used[used].index] = _outliers(df[used], rules.outlier_z)
    counts = outlier.groupby(df["submission"]).sum()
    submissions.insert(11, "outlier_ratings", submissions["submission"].map(counts).fillna(0).astype(int))
    return Cleansing(submissions, used & ~outlier, rules)
