"""The study's answer to "how far can it go?", in plain words and as data: one sentence per
restorer, setting and blur kind from review.answer.boundary, how many ratings it rests on (and
how many of them are simulated), and the next blur levels worth rating. Renderings: a JSON-safe
dict (curves, the monotone curve's band, boundary, proposals), Markdown (CLI `answer`, the HTML
report), and a tidy table for CSV export.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from review.analysis.export import default_ratings, frame_csv, ratings_in_use, ratings_read
from review.analysis.report_types import RatingsRead
from review.answer.boundary import MIN_ITEMS, MIN_RATINGS, Curve, Options, curve_groups, curves_of
from review.media.restore import title

#: How each blur kind's level reads in a sentence.
KIND_WORDS = {"motion_line": "motion blur (line length)", "camera_shake": "camera shake",
              "defocus": "defocus (disk radius)", "gaussian": "Gaussian blur (sigma)"}


@dataclass(frozen=True)
class OneLevel:
    """A restorer, setting and blur kind rated at a single blur level: no curve, named instead."""

    restorer: str
    setting: str
    blur_kind: str
    level: float
    ratings: int


@dataclass
class Answer:
    """Every curve of a study with the options that produced it."""

    study: str
    options: Options
    curves: list[Curve]
    include_simulated: bool
    ratings: int  # ratings the curves rest on
    simulated_ratings: int
    one_level: list[OneLevel] = field(default_factory=list)  # left out: a single blur level
    ratings_read: RatingsRead | None = None  # where data cleansing leaves ratings out


def study_answer(df: pd.DataFrame, study: str, options: Options | None = None, *,
                 include_simulated: bool = True, which: str | None = None) -> Answer:
    """The answer from a study's long-format ratings (review.analysis.export.ratings_frame), on
    its used ratings or all of them (`which`; by default used ones once data cleansing leaves
    some out, review.analysis.export.default_ratings)."""
    options = options or Options()
    which = which or default_ratings(df)
    read = ratings_read(df, which)
    df = ratings_in_use(df, which)
    curves = curves_of(df, options, include_simulated=include_simulated)
    one_level = [OneLevel(restorer, setting, kind, float(g["blur_level"].iloc[0]), len(g))
                 for (restorer, setting, kind), g in curve_groups(df, include_simulated=include_simulated)
                 if g["blur_level"].nunique() < 2]
    return Answer(study, options, curves, include_simulated, sum(c.ratings for c in curves),
                  sum(c.simulated_ratings for c in curves), one_level, read)


def ratings_words(answer: Answer) -> str | None:
    """Which ratings the answer rests on, where data cleansing leaves some out (else None)."""
    return None if answer.ratings_read is None else answer.ratings_read.sentence()


def one_level_words(answer: Answer) -> str | None:
    """The sentence naming every restorer left out for having ratings at one blur level only."""
    if not answer.one_level:
        return None
    named = "; ".join(f"{o.restorer}" + (f" ({o.setting})" if o.setting else "")
                      + f" on {KIND_WORDS.get(o.blur_kind, o.blur_kind)} at {_px(o.level)} px only "
                      f"({o.ratings} ratings)" for o in answer.one_level)
    return (f"Left out, rated at one blur level only (a curve needs two or more): {named}. "
            "Rate them at more blur levels to answer for them.")


def _px(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


def _name(curve: Curve, strength: float | None) -> str:
    name = title(curve.restorer)
    if strength is not None:
        name += f" at strength {strength:g}"
    return name + (f" ({curve.setting})" if curve.setting else "")


def faithful_words(options: Options, below: bool = False) -> str:
    """What is estimated, exactly: a share of RATINGS (not of restorations)."""
    return (f"{'<' if below else '>='} {options.threshold * 100:g} % of ratings score it "
            f"{options.faithful_min} or more")


def next_ratings_words(curve: Curve, strength: float | None) -> str:
    """What to rate next for one strength of a curve: the proposed levels and how many ratings."""
    props = [p for p in curve.proposals if p.get("strength") == strength or strength is None]
    levels = sorted({p["level"] for p in props}) or sorted({curve.levels[0], curve.levels[-1]})
    per_level = [s.ratings for s in curve.stats if s.strength == strength or len(curve.strengths) == 1]
    n = max(MIN_RATINGS, int(sorted(per_level)[len(per_level) // 2]) if per_level else MIN_RATINGS)
    at = ", ".join(f"{_px(v)}" for v in levels[:-1]) + (" and " if len(levels) > 1 else "") + _px(levels[-1])
    return f"rate {n} or more ratings of {MIN_ITEMS} or more restored photos at each of {at} px"


def sentences(curve: Curve, options: Options) -> list[str]:
    """The plain-words answer of one curve, one sentence per strength. The estimate is the share
    of ratings that call a restoration faithful, and the sentences say so."""
    kind = KIND_WORDS.get(curve.blur_kind, curve.blur_kind)
    faithful = faithful_words(options)
    out = []
    for strength, b in zip(curve.strengths, curve.boundaries, strict=True):
        name = _name(curve, strength)
        lo, hi = b.interval
        interval = (f"95 % interval {_px(lo)}-{_px(hi)} px"
                    + (", or below the smallest level studied" if b.open_low else "")
                    + (", or beyond the largest level studied" if b.open_high else ""))
        if b.status == "crosses" and b.level is not None:
            out.append(f"{name} stays faithful ({faithful}) up to about {_px(b.level)} px of {kind} "
                       f"({interval}).")
        elif b.status == "usable throughout":
            out.append(f"{name} stays faithful ({faithful}) at every level studied, up to "
                       f"{_px(curve.levels[-1])} px of {kind}; rate larger blur to find its limit.")
        elif b.status == "not usable even at the smallest level":
            out.append(f"{name} is not faithful ({faithful_words(options, below=True)}) even at "
                       f"{_px(curve.levels[0])} px of {kind}, the smallest level studied; rate smaller "
                       "blur to find its limit.")
        else:
            out.append(f"{name} on {kind}: not enough ratings to tell ({b.reason}); "
                       f"{next_ratings_words(curve, strength)}.")
    return out


def _proposal_words(curve: Curve) -> str:
    if not curve.proposals:
        return "none"
    return ", ".join(f"{_px(p['level'])} px" + (f" at strength {p['strength']:g}" if "strength" in p else "")
                     for p in curve.proposals)


def answer_dict(answer: Answer) -> dict[str, Any]:
    """JSON-safe: the options, and per curve the observed points, the curve's mean and bootstrap
    sd on its grid (keys gp_mean / gp_sd), the level classes, the boundary per strength with its
    interval, status and reason, the proposals and the sentences."""
    o = answer.options
    return {
        "study": answer.study,
        "options": {"faithful_min": o.faithful_min, "threshold": o.threshold, "beta": o.beta,
                    "include_simulated": answer.include_simulated},
        "ratings": answer.ratings,
        "simulated_ratings": answer.simulated_ratings,
        **({} if answer.ratings_read is None else {"ratings_read": {
            "which": answer.ratings_read.which, "left_out_ratings": answer.ratings_read.left_out,
            "left_out_participants": answer.ratings_read.participants,
            "sentence": answer.ratings_read.sentence()}}),
        "one_level": [{"restorer": o.restorer, "setting": o.setting, "blur_kind": o.blur_kind,
                       "blur_level": o.level, "ratings": o.ratings} for o in answer.one_level],
        "curves": [{
            "restorer": c.restorer, "setting": c.setting, "blur_kind": c.blur_kind,
            "ratings": c.ratings, "items": c.items, "simulated_ratings": c.simulated_ratings,
            "sentences": sentences(c, o),
            "points": [{"level": s.level, "strength": s.strength, "ratings": s.ratings, "items": s.items,
                        "faithful": s.faithful, "share": s.share,
                        "share_ci": list(s.share_ci) if s.share_ci else None,
                        "mos": s.mos, "mos_ci": list(s.mos_ci) if s.mos_ci else None} for s in c.stats],
            "by_strength": [{
                "strength": st,
                "boundary": b.level, "boundary_ci": list(b.interval), "open_low": b.open_low,
                "open_high": b.open_high, "status": b.status, "reason": b.reason,
                "grid": c.grid, "gp_mean": mean, "gp_sd": sd,
                "level_classes": dict(zip([str(v) for v in c.levels], classes, strict=True)),
            } for st, b, mean, sd, classes in zip(c.strengths, c.boundaries, c.gp_mean, c.gp_sd,
                                                    c.level_classes, strict=True)],
            "proposals": c.proposals,
        } for c in answer.curves],
    }


def answer_markdown(answer: Answer) -> str:
    """The answer as Markdown: sentences, what they rest on, and the next levels to rate."""
    o = answer.options
    lines = [f"# How far can it go? Study {answer.study!r}", ""]
    if (read := ratings_words(answer)) is not None:
        lines += [read, ""]
    left_out = one_level_words(answer)
    if not answer.curves:
        lines.append("No answer yet: no restorer has ratings at two or more blur levels.")
        if left_out:
            lines += ["", left_out]
        return "\n".join(lines) + "\n"
    sim = (f", {answer.simulated_ratings} of them from a simulated panel" if answer.simulated_ratings
           else "" if answer.include_simulated else " (simulated ratings left out)")
    lines += [f"Faithful means a score of {o.faithful_min} or more; a blur level is usable when at "
              f"least {o.threshold * 100:g} % of its ratings are faithful (a share of ratings, not of "
              "restorations). A non-increasing curve over blur level models that share, each rated "
              "item (restored photo) counting once; its 95 % interval comes from a bootstrap over the "
              f"items (level-set estimation, arXiv 2412.20275); a level is uncertain while mean +- "
              f"{o.beta:g} sd straddles {o.threshold * 100:g} %. {answer.ratings} ratings{sim}.",
              ""]
    for c in answer.curves:
        for sentence in sentences(c, o):
            lines.append(f"- {sentence}")
        lines.append(f"  Rests on {c.ratings} ratings of {c.items} items"
                     + (f" ({c.simulated_ratings} simulated)" if c.simulated_ratings else "")
                     + f"; next levels to rate: {_proposal_words(c)}.")
    if left_out:
        lines += ["", left_out]
    lines += ["", "| restorer | setting | blur kind | strength | level (px) | ratings | faithful share "
              "(95 % CI) | MOS | class |", "|---|---|---|---|---|---|---|---|---|"]
    for c in answer.curves:
        for s in c.stats:
            si = c.strengths.index(s.strength) if s.strength in c.strengths else 0
            cls = c.level_classes[si][c.levels.index(s.level)]
            ci = f" ({s.share_ci[0]:.2f}-{s.share_ci[1]:.2f})" if s.share_ci else ""
            lines.append(f"| {c.restorer} | {c.setting or '-'} | {c.blur_kind} | "
                         f"{'-' if s.strength is None else f'{s.strength:g}'} | {_px(s.level)} | "
                         f"{s.ratings} | "
                         f"{s.share:.2f}{ci} | {s.mos:.2f} | {cls} |")
    return "\n".join(lines) + "\n"


def curves_frame(answer: Answer) -> pd.DataFrame:
    """One row per observed level of every curve (CSV export): counts, share with its Wilson
    interval, MOS, the curve's mean and bootstrap sd there (gp_mean, gp_sd), the level's class,
    and the curve's boundary."""
    rows = []
    for c in answer.curves:
        for s in c.stats:
            si = c.strengths.index(s.strength) if s.strength in c.strengths else 0
            b = c.boundaries[si]
            j = min(range(len(c.grid)), key=lambda i: abs(c.grid[i] - s.level))
            rows.append({
                "restorer": c.restorer, "setting": c.setting, "blur_kind": c.blur_kind,
                "strength": s.strength, "blur_level": s.level, "ratings": s.ratings, "items": s.items,
                "faithful": s.faithful, "share": s.share,
                "share_lo": s.share_ci[0] if s.share_ci else math.nan,
                "share_hi": s.share_ci[1] if s.share_ci else math.nan,
                "mos": s.mos, "mos_lo": s.mos_ci[0] if s.mos_ci else math.nan,
                "mos_hi": s.mos_ci[1] if s.mos_ci else math.nan,
                "gp_mean": c.gp_mean[si][j], "gp_sd": c.gp_sd[si][j],
                "level_class": c.level_classes[si][c.levels.index(s.level)],
                "boundary": b.level if b.level is not None else math.nan,
                "boundary_lo": b.interval[0], "boundary_hi": b.interval[1], "boundary_status": b.status,
                "threshold": answer.options.threshold, "faithful_min": answer.options.faithful_min,
                "simulated_in_curve": c.simulated_ratings,
            })
    return pd.DataFrame(rows)


def answer_html(answer: Answer) -> list[str]:
    """The answer's sections of the HTML report (escaped), for review.analysis.html_report."""
    from review.analysis.html_report import html_table

    parts = ["<h2 id='answer'>How far can it go?</h2>"]
    if (read := ratings_words(answer)) is not None:
        parts.append(f"<p class='note'>{html.escape(read)}</p>")
    parts += [f"<p>{html.escape(sentence)}</p>"
              for c in answer.curves for sentence in sentences(c, answer.options)]
    if answer.simulated_ratings:
        parts.append(f"<div class='warn'>{answer.simulated_ratings} of these {answer.ratings} ratings "
                     "come from a SIMULATED panel, not from people.</div>")
    parts.append(html_table(curves_frame(answer)) if answer.curves else
                 "<p class='note'>No answer yet: no restorer has ratings at two or more blur levels.</p>")
    if (left_out := one_level_words(answer)) is not None:
        parts.append(f"<p class='note'>{html.escape(left_out)}</p>")
    return parts


def answer_json(answer: Answer) -> str:
    """The study's answer (curves, fitted band, boundaries, proposals) as JSON."""
    return json.dumps(answer_dict(answer), indent=2, ensure_ascii=False, allow_nan=False)


def answer_csv(answer: Answer) -> bytes:
    """The study's curves and boundaries, one row per observed blur level, as CSV."""
    return frame_csv(curves_frame(answer))
