"""Benchmark: is the usable-blur boundary's 95 % interval calibrated, and when does active design
save ratings?

What is estimated (and what "true boundary" means here): the blur level where the share of
RATINGS that call a restoration faithful (score >= 4) falls below h = 0.8, for items like the
study's and raters like the study's: for a crowd panel (raters drawn from a large pool, each
rating few items) that share is over the rater population; for a fixed panel of 8 raters who rate
everything it is that panel's own share (its raters are known; the answer is for them). Both are
computed exactly from the simulation's model (review.labeling.simulated_panel.Panel.true_share),
and the true boundary is where that share first falls below h (0.005 px resolution).

Part 1, coverage and bias. Five truth shapes (logistic, steep, shallow, plateau-then-cliff,
two-step; review.labeling.simulated_panel.draw_shape, boundaries 6-24 px) x five rater models
(P.910 crowd, scale-use differences, 10 % spammers answering at random, 2 raters per item, a
fixed panel of 8 raters), rated on a uniform design (15 levels 2-30 px, 360 ratings per curve by
default). Per cell: how often the 95 % interval holds the true boundary (with its Monte Carlo
standard error, sqrt(p (1 - p) / runs)), and the bias (mean error, px) and mean absolute error
of the point estimate, for the lab's estimator
(review.answer.boundary: monotone curve over item shares, bootstrap with a design effect pooled
over levels near h, crossings spread over their bracketing step) beside
the simple baseline measured on the same ratings: a Wilson 95 % interval on each level's share
(ratings as independent), the boundary where the observed shares first fall below h (linear
interpolation), the interval from where the Wilson lower and upper bounds first fall below h.

Part 2, active design vs a uniform grid, per rater model, over truths of all five shapes in turn:
the mean |error| of the boundary against the item budget for the uniform grid (the budget spread
evenly over the 15 levels) and for active design (3 items at each of the lowest, middle and
highest level, then each batch of 3 items goes to the level with the highest Straddle score; a
start of 1 item a level gave the bootstrap no spread there, so the first steps trusted one
photo, and active design lost to the grid everywhere: ratio >150 % on seed 1), both read
by the same estimator. The figure: the ratings active design needs to reach the mean error the
uniform grid has at 120 items (8 a level), as a share of the grid's ratings, with a 95 %
bootstrap interval over truths. (The former figure, the budget at which 90 % of runs land within
one level step, was not monotone in budget: one truth in 40 moved it; with these truth shapes
neither design reaches 90 % within 2 px at 180 items.)

Seeds: the estimator's rules (items as the unit, the logit-scale crossing, the cliff rule, the
design effect pooled over levels weighted towards h (DESIGN_NEAR = 0.15), its t widening,
NOISE_SCALE = 0.9, SPREAD = 3/4, percentile rather than bias-corrected, basic or double-bootstrap
intervals) were tuned on seeds 0 and 2 (`--seed 0`, `--seed 2`); the figures in
docs/benchmarks.md are from seeds never used for tuning: the default seed 1, and 3, 4 and 7.
`--part coverage` runs part 1 alone.

Part 3, held out: part 1's measure on six panels no rule was chosen on (HELD_OUT: a linear truth,
and rater models with 4 raters a photo and more inconsistency, 20 % spammers, a fixed panel of 6
with more scale use, photos that differ more, a fixed panel of 4); `--part held-out` runs it alone.

Run: .venv/bin/python bench/assurance.py [--runs 200] [--truths 60] [--seed 1] [--jobs N]
     [--part coverage|active|held-out|all]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from machine import describe  # noqa: E402  (bench/machine.py, beside this script)

from review.analysis.agreement import wilson_ci  # noqa: E402
from review.answer.boundary import THRESHOLD, boundary_of, fit_share, propose  # noqa: E402
from review.labeling.simulated_panel import (  # noqa: E402
    RATER_MODELS,
    SHAPES,
    Panel,
    RaterModel,
    draw_shape,
)

LEVELS = np.arange(2.0, 32.0, 2.0)  # candidate blur levels (px): 15 levels, one step = 2 px
STEP = 2.0
RATINGS = 360  # per curve in part 1 (24 a level)
ITEM_BUDGETS = (15, 30, 45, 60, 90, 120, 180)  # part 2: items per curve (x raters per item = ratings)
BATCH = 3  # part 2: items per active-design step
START = 3  # part 2: items at each of the lowest, middle and highest level first (1 gave the bootstrap
#            no spread there, so Straddle trusted one photo; chosen on seed 0)

Ratings = dict[str, np.ndarray]
Estimator = Callable[[Ratings], tuple[float, float, float]]


def lab_estimate(r: Ratings, seed: int = 0) -> tuple[float, float, float]:
    """The lab's boundary: (point, interval low, interval high); edges of the range when the
    curve never crosses (or starts below) inside it."""
    b = boundary_of(fit_share(r["level"], r["faithful"], r["item"], seed=seed), THRESHOLD, seed=seed)
    return b.estimate, b.interval[0], b.interval[1]


def _first_below(levels: np.ndarray, values: np.ndarray) -> float:
    below = values < THRESHOLD
    if not below.any():
        return float(levels[-1])
    i = int(np.argmax(below))
    if i == 0:
        return float(levels[0])
    y0, y1 = values[i - 1], values[i]
    return float(levels[i - 1] + (y0 - THRESHOLD) / (y0 - y1) * (levels[i] - levels[i - 1]))


def baseline_estimate(r: Ratings, seed: int = 0) -> tuple[float, float, float]:
    """Per-level Wilson 95 % intervals and linear interpolation of the first crossing."""
    levels = np.unique(r["level"])
    k = np.array([int(r["faithful"][r["level"] == lv].sum()) for lv in levels])
    n = np.array([int((r["level"] == lv).sum()) for lv in levels])
    ci = np.array([wilson_ci(int(a), int(b)) for a, b in zip(k, n, strict=True)])
    return _first_below(levels, k / n), _first_below(levels, ci[:, 0]), _first_below(levels, ci[:, 1])


ESTIMATORS: dict[str, Estimator] = {"lab": lab_estimate, "baseline": baseline_estimate}


def coverage_cell(shape_kind: str, model: RaterModel, runs: int, seed: int, stream: tuple[int, ...],
                  estimators: tuple[str, ...] = ("lab", "baseline")) -> dict[str, np.ndarray]:
    """Part 1 for one truth shape and rater model (random stream `seed`, `stream`): per
    estimator, (runs, 3) rows of (error px, covered 0/1, interval width px)."""
    rng = np.random.default_rng([seed, *stream])
    per_level = RATINGS // len(LEVELS) // model.raters_per_item
    out = {e: np.empty((runs, 3)) for e in estimators}
    for run in range(runs):
        shape = draw_shape(shape_kind, rng)
        panel = Panel.draw(model, rng)
        truth = panel.true_boundary(shape, LEVELS[0], LEVELS[-1], THRESHOLD)
        ratings = panel.rate_levels(shape, LEVELS, np.full(len(LEVELS), max(per_level, 1)), rng)
        for e in estimators:
            point, lo, hi = ESTIMATORS[e](ratings, run)
            out[e][run] = (point - truth, lo <= truth <= hi, hi - lo)
    return out


#: Part 3: panels no rule was chosen on, other truth shapes and rater models than part 1's, so
#: that the interval's calibration is seen beyond the 25 cells it was tuned around (the linear
#: truth declines slowly and straight; the models change raters per item, inconsistency, the
#: photos' spread, scale use, spammers and the fixed panel's size).
HELD_OUT: dict[str, tuple[str, RaterModel]] = {
    "linear, P.910 crowd": ("linear", RaterModel("p910_crowd")),
    "logistic, 4 a photo, inconsistent": (
        "logistic", RaterModel("inconsistent", raters_per_item=4, inconsistency=0.9, item_sd=0.5)),
    "steep, 20 % spammers": ("steep", RaterModel("noisy_spammers", inconsistency=1.0, spammers=0.2)),
    "plateau, panel of 6": ("plateau_cliff", RaterModel("fixed_panel_6", fixed_panel=6, raters_per_item=6,
                                                        bias_sd=0.6)),
    "two-step, photos vary": ("two_step", RaterModel("photos_vary", item_sd=0.7)),
    "shallow, panel of 4": ("shallow", RaterModel("fixed_panel_4", fixed_panel=4, raters_per_item=4)),
}


def active_truth(model_name: str, index: int, seed: int) -> dict[str, list[float]]:
    """Part 2 for one truth: |error| (px) per item budget for the uniform grid and active design."""
    model = RATER_MODELS[model_name]
    rng = np.random.default_rng([seed, 99, list(RATER_MODELS).index(model_name), index])
    shape = draw_shape(SHAPES[index % len(SHAPES)], rng)
    panel = Panel.draw(model, rng)
    truth = panel.true_boundary(shape, LEVELS[0], LEVELS[-1], THRESHOLD)
    uniform = []
    for budget in ITEM_BUDGETS:
        r = panel.rate_levels(shape, LEVELS, np.full(len(LEVELS), budget // len(LEVELS)), rng)
        uniform.append(abs(lab_estimate(r, index)[0] - truth))
    parts: list[Ratings] = [panel.rate_levels(shape, LEVELS[[0, 7, 14]], np.full(3, START), rng)]
    active, spent = [], 3 * START
    for budget in ITEM_BUDGETS:
        while spent < budget:
            r = _joined(parts)
            fit = fit_share(r["level"], r["faithful"], r["item"], samples=200, seed=index)
            (best, _s), = propose(fit, LEVELS[:, None], THRESHOLD, 1)
            parts.append(panel.rate_levels(shape, np.array([best[0]]), np.array([BATCH]), rng))
            spent += BATCH
        active.append(abs(lab_estimate(_joined(parts), index)[0] - truth))
    return {"uniform": uniform, "active": active}


def _joined(parts: list[Ratings]) -> Ratings:
    out: Ratings = {}
    offset = 0
    items = []
    for p in parts:
        items.append(p["item"] + offset)
        offset += int(p["item"].max()) + 1
    out["item"] = np.concatenate(items)
    for key in ("level", "rater", "faithful"):
        out[key] = np.concatenate([p[key] for p in parts])
    return out


REFERENCE = 120  # part 2: the uniform grid's budget (items) whose mean error active design must match


def matched(errors_u: np.ndarray, errors_a: np.ndarray) -> float:
    """errors (truths, budgets): the item budget at which active design's mean |error| first falls
    to the uniform grid's at REFERENCE items (linear between budgets), as a share of REFERENCE;
    inf when it never does within the largest budget."""
    target = errors_u[:, ITEM_BUDGETS.index(REFERENCE)].mean()
    mae = errors_a.mean(axis=0)
    below = np.flatnonzero(mae <= target)
    if len(below) == 0:
        return math.inf
    i = int(below[0])
    if i == 0:
        return ITEM_BUDGETS[0] / REFERENCE
    b0, b1, m0, m1 = ITEM_BUDGETS[i - 1], ITEM_BUDGETS[i], mae[i - 1], mae[i]
    return (b0 + (m0 - target) / (m0 - m1) * (b1 - b0)) / REFERENCE


def _cell_job(args: tuple[str, str, RaterModel, int, int, tuple[int, ...]]
              ) -> tuple[str, str, dict[str, np.ndarray]]:
    shape_kind, label, model, runs, seed, stream = args
    return shape_kind, label, coverage_cell(shape_kind, model, runs, seed, stream)


def _active_job(args: tuple[str, int, int]) -> tuple[str, dict[str, list[float]]]:
    model_name, index, seed = args
    return model_name, active_truth(model_name, index, seed)


def cover_se(p: float, runs: int) -> float:
    """The Monte Carlo standard error of a coverage share `p` measured over `runs` runs."""
    return math.sqrt(p * (1 - p) / max(runs, 1))


def part_coverage(runs: int, seed: int, jobs: int) -> None:
    print(f"Part 1: coverage of the 95 % interval and bias, {runs} runs per cell, uniform design "
          f"{LEVELS[0]:g}-{LEVELS[-1]:g} px step {STEP:g}, {RATINGS} ratings per curve, h = {THRESHOLD}")
    models = list(RATER_MODELS)
    _coverage_table([(s, m, RATER_MODELS[m], runs, seed, (SHAPES.index(s), models.index(m)))
                     for s in SHAPES for m in models], runs, jobs)


def part_held_out(runs: int, seed: int, jobs: int) -> None:
    print(f"\nPart 3: the same on {len(HELD_OUT)} panels no rule was chosen on (other truth shapes and "
          f"rater models), {runs} runs each")
    _coverage_table([(shape, label, model, runs, seed, (100 + i,))
                     for i, (label, (shape, model)) in enumerate(HELD_OUT.items())], runs, jobs)


def _coverage_table(tasks: list[tuple[str, str, RaterModel, int, int, tuple[int, ...]]], runs: int,
                    jobs: int) -> None:
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(_cell_job, tasks))
    width = max(14, *(len(label) for _s, label, _m, *_rest in tasks))
    print(f"{'truth shape':<14} {'rater model':<{width}} | {'lab: cover':>10} {'bias':>6} {'MAE':>5} "
          f"{'width':>6} {'se':>5} | {'baseline: cover':>15} {'bias':>6} {'MAE':>5} {'width':>6}")
    cover_all: dict[str, list[float]] = {"lab": [], "baseline": []}
    for shape_kind, label, out in results:
        cells = []
        for e in ("lab", "baseline"):
            a = out[e]
            cover_all[e].append(a[:, 1].mean())
            se = f" {cover_se(a[:, 1].mean(), runs):>5.1%}" if e == "lab" else ""
            cells.append(f"{a[:, 1].mean():>10.1%} {a[:, 0].mean():>+6.2f} {np.abs(a[:, 0]).mean():>5.2f} "
                         f"{np.median(a[:, 2]):>6.2f}{se}")
        print(f"{shape_kind:<14} {label:<{width}} | {cells[0]} | {cells[1]:>15}")
    for e in ("lab", "baseline"):
        c = np.array(cover_all[e])
        inside = int(((c >= 0.93) & (c <= 0.97)).sum())
        print(f"{e}: coverage per cell {c.min():.1%}-{c.max():.1%} (mean {c.mean():.1%}); "
              f"{inside} of {len(c)} cells within 93-97 % (binomial sd of one cell at 95 %: "
              f"{np.sqrt(0.95 * 0.05 / runs):.1%})")
    print("bias = mean (estimate - true boundary), MAE = mean |error|, width = median interval width (px), "
          "se = Monte Carlo standard error of the cell's coverage, sqrt(p (1 - p) / runs):\n"
          "a cell whose true coverage is 95 % often reads outside 93-97 % by chance when 2 % < 2 se")


def part_active(truths: int, seed: int, jobs: int) -> None:
    print(f"\nPart 2: active design vs uniform grid, {truths} truths per rater model (all five shapes "
          f"in turn), budgets {ITEM_BUDGETS} items, active batches of {BATCH} items")
    tasks = [(m, i, seed) for m in RATER_MODELS for i in range(truths)]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(_active_job, tasks))
    rng = np.random.default_rng([seed, 7])
    shown = (ITEM_BUDGETS[1], ITEM_BUDGETS[3], REFERENCE)
    print(f"mean |error| (px) at {', '.join(map(str, shown))} items")
    print(f"{'rater model':<14} {'ratings/item':>12} | {'uniform':>17} {'active':>17} | "
          f"{'active/uniform':>14} {'95 % over truths':>16}")
    for m, model in RATER_MODELS.items():
        u = np.array([r["uniform"] for name, r in results if name == m])
        a = np.array([r["active"] for name, r in results if name == m])
        ratio = matched(u, a)
        boot = []
        for _ in range(1000):
            idx = rng.integers(0, len(u), len(u))
            boot.append(matched(u[idx], a[idx]))
        lo, hi = np.percentile(np.minimum(boot, 99.0), [2.5, 97.5])  # never reached: 99 (> any budget)
        cols = [ITEM_BUDGETS.index(b) for b in shown]
        mu = " ".join(f"{v:5.2f}" for v in u.mean(axis=0)[cols])
        ma = " ".join(f"{v:5.2f}" for v in a.mean(axis=0)[cols])
        print(f"{m:<14} {model.raters_per_item:>12} | {mu:>17} {ma:>17} | {_pct(ratio):>14} "
              f"{_pct(lo) + '-' + _pct(hi):>16}")
    print(f"active/uniform = the ratings active design needs for the mean error the uniform grid has at "
          f"{REFERENCE} items ({REFERENCE // len(LEVELS)} a level), as a share of the grid's; '>150%' = "
          "not reached within the largest budget; the interval is a bootstrap over truths")


def _pct(v: float) -> str:
    return f">{ITEM_BUDGETS[-1] / REFERENCE:.0%}" if v > ITEM_BUDGETS[-1] / REFERENCE else f"{v:.0%}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=200, help="runs per truth shape and rater model (part 1)")
    ap.add_argument("--truths", type=int, default=60, help="truths per rater model (part 2)")
    ap.add_argument("--seed", type=int, default=1, help="1: the reported seed; 0: the tuning seed")
    ap.add_argument("--part", choices=("coverage", "held-out", "active", "all"), default="all")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    args = ap.parse_args()
    print(describe(), flush=True)
    t0 = time.perf_counter()
    jobs = max(1, args.jobs)
    if args.part in ("coverage", "all"):
        part_coverage(args.runs, args.seed, jobs)
    if args.part in ("active", "all"):
        part_active(args.truths, args.seed, jobs)
    if args.part in ("held-out", "all"):
        part_held_out(args.runs, args.seed, jobs)
    print(f"took {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
