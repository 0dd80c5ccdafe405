"""Benchmark: how many ratings the usable-blur boundary needs, active design vs a uniform grid.

Why: human ratings are the lab's scarce resource. Over seeded ground truths (a logistic faithful
share per restorer with a known boundary, review.labeling.simulated_panel), the same estimator
(review.analysis.boundary: GP + level-set boundary) is fed by two designs at equal rating budgets:
- uniform grid: the budget spread evenly over every candidate blur level;
- active design: a small start (lowest, middle, highest level), then each batch of ratings goes
  to the level with the highest Straddle score 1.96*sd - |mean - h|.
It prints the boundary error against the rating budget side by side, the budget each design
needs for 90 % of the runs to land within one level step of the true boundary (the baseline is
the uniform grid, measured in the same run; goal: active <= 40 % of it), and how often the
boundary's 95 % interval holds the true boundary.

Ratings are a crowd panel: each rating is by a fresh rater (P.910 bias and inconsistency) on a
fresh item, so the true faithful share at a level is exactly the ground-truth curve.

Run: .venv/bin/python bench/assurance.py [--truths 40] [--batch 5] [--seed 0] [--jobs N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from machine import describe  # noqa: E402  (bench/machine.py, beside this script)

from review.analysis.boundary import THRESHOLD, boundary_of, fit_share, propose  # noqa: E402
from review.labeling.simulated_panel import PanelSpec, TrueCurve, sample_faithful  # noqa: E402

LEVELS = np.arange(2.0, 32.0, 2.0)  # candidate blur levels (px): 15 levels, one step = 2 px
STEP = 2.0
GRID = np.linspace(LEVELS[0], LEVELS[-1], 141)
BUDGETS = (30, 45, 60, 75, 90, 120, 150, 180, 240, 300, 360)  # ratings; multiples of the 15 levels
TARGET = 0.9  # share of runs within one level step that counts as "found"
SPEC = PanelSpec(inconsistency_spread=0.0)  # fixed inconsistency: the crowd's share is the truth's


def truths(n: int, seed: int) -> list[TrueCurve]:
    """Seeded ground truths: boundaries 6-24 px, transition widths 1.5-3.5 px."""
    rng = np.random.default_rng(seed)
    return [TrueCurve(float(b), width=float(w)) for b, w in
            zip(rng.uniform(6.0, 24.0, n), rng.uniform(1.5, 3.5, n), strict=True)]


def estimate(levels: list[float], faithful: list[int], ratings: list[int], seed: int) \
        -> tuple[float, tuple[float, float]]:
    """The boundary (edge of the range when the curve never crosses) and its 95 % interval."""
    counts: dict[float, list[int]] = {}
    for lv, k, n in zip(levels, faithful, ratings, strict=True):
        counts.setdefault(lv, [0, 0])
        counts[lv][0] += k
        counts[lv][1] += n
    x = np.array(sorted(counts))
    fit = fit_share(x, np.array([counts[v][0] for v in x]), np.array([counts[v][1] for v in x]), seed=seed)
    b = boundary_of(fit, GRID, THRESHOLD, seed=seed)
    level = b.level if b.level is not None else (GRID[-1] if b.status == "usable throughout" else GRID[0])
    return level, b.interval


def uniform_run(truth: TrueCurve, budget: int, rng: np.random.Generator, seed: int):  # noqa: ANN201
    per = budget // len(LEVELS)
    k = [sample_faithful(truth, SPEC, lv, per, rng) for lv in LEVELS]
    return estimate(list(LEVELS), k, [per] * len(LEVELS), seed)


def active_run(truth: TrueCurve, batch: int, rng: np.random.Generator, seed: int) -> dict[int, tuple]:
    """One active design up to the largest budget, the estimate recorded at every budget."""
    levels: list[float] = []
    faithful: list[int] = []
    ratings: list[int] = []
    out: dict[int, tuple] = {}
    for lv in (LEVELS[0], LEVELS[len(LEVELS) // 2], LEVELS[-1]):
        levels.append(float(lv))
        faithful.append(sample_faithful(truth, SPEC, lv, batch, rng))
        ratings.append(batch)
    pending = sorted(BUDGETS)
    while pending:
        spent = sum(ratings)
        if spent >= pending[0]:
            out[pending.pop(0)] = estimate(levels, faithful, ratings, seed)
            continue
        x = np.array(sorted(set(levels)))
        k = np.array([sum(f for lv, f in zip(levels, faithful, strict=True) if lv == v) for v in x])
        n = np.array([sum(r for lv, r in zip(levels, ratings, strict=True) if lv == v) for v in x])
        fit = fit_share(x, k, n, seed=seed)
        (best, _score), = propose(fit, LEVELS[:, None], THRESHOLD, 1)
        levels.append(float(best[0]))
        faithful.append(sample_faithful(truth, SPEC, float(best[0]), batch, rng))
        ratings.append(batch)
    return out


def needed(errors: dict[int, list[float]]) -> int | None:
    """The smallest budget at which TARGET of the runs are within one level step of the truth."""
    for budget in sorted(errors):
        if np.mean(np.array(errors[budget]) <= STEP) >= TARGET:
            return budget
    return None


def run_truth(i: int, truth: TrueCurve, batch: int, seed: int) -> dict[str, dict[int, tuple[float, bool]]]:
    """Both designs on one ground truth: per design and budget, (error in px, interval covers)."""
    rng = np.random.default_rng([seed, i])
    out: dict[str, dict[int, tuple[float, bool]]] = {"active": {}, "uniform": {}}
    for budget, (level, (lo, hi)) in active_run(truth, batch, rng, i).items():
        out["active"][budget] = (abs(level - truth.boundary), lo <= truth.boundary <= hi)
    for budget in BUDGETS:
        level, (lo, hi) = uniform_run(truth, budget, rng, i)
        out["uniform"][budget] = (abs(level - truth.boundary), lo <= truth.boundary <= hi)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--truths", type=int, default=40)
    ap.add_argument("--batch", type=int, default=5, help="ratings per active-design step")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="ground truths run in parallel")
    args = ap.parse_args()
    print(describe(), flush=True)
    t0 = time.perf_counter()
    err = {"active": {b: [] for b in BUDGETS}, "uniform": {b: [] for b in BUDGETS}}
    cover = {"active": {b: [] for b in BUDGETS}, "uniform": {b: [] for b in BUDGETS}}
    gts = truths(args.truths, args.seed)
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        runs = pool.map(run_truth, range(len(gts)), gts, [args.batch] * len(gts), [args.seed] * len(gts))
        for run in runs:
            for design, per_budget in run.items():
                for budget, (e, covered) in per_budget.items():
                    err[design][budget].append(e)
                    cover[design][budget].append(covered)
    print(f"{args.truths} seeded ground truths (boundary 6-24 px, levels {LEVELS[0]:g}-{LEVELS[-1]:g} px "
          f"step {STEP:g}), h = {THRESHOLD}, active batches of {args.batch} ratings")
    print(f"{'ratings':>8} | {'active: median err':>18} {'within 1 step':>13} {'95% CI covers':>13} | "
          f"{'uniform: median err':>19} {'within 1 step':>13} {'95% CI covers':>13}")
    for b in BUDGETS:
        cells = []
        for design in ("active", "uniform"):
            e = np.array(err[design][b])
            covered = np.mean(cover[design][b])
            cells.append(f"{np.median(e):>15.2f} px {np.mean(e <= STEP):>13.0%} {covered:>13.0%}")
        print(f"{b:>8} | {cells[0]:>18} | {cells[1]:>19}")
    need_a, need_u = needed(err["active"]), needed(err["uniform"])
    print(f"budget for {TARGET:.0%} of runs within one level step ({STEP:g} px): active {need_a}, "
          f"uniform grid {need_u}")
    if need_a is not None and need_u is not None:
        print(f"active design needs {need_a / need_u:.0%} of the uniform grid's ratings (goal <= 40 %)")
    else:
        print("one design did not reach the target within the largest budget "
              f"({max(BUDGETS)} ratings): no ratio")
    all_cover = [c for d in cover.values() for b in BUDGETS for c in d[b]]
    print(f"95 % interval coverage over all runs and budgets: {np.mean(all_cover):.1%} "
          f"({len(all_cover)} intervals)")
    print(f"took {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
