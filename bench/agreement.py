"""Benchmark: the full agreement report on 1M ratings, and our alpha against `krippendorff`.

Why: the analyst page recomputes the report on every study; it must stay interactive at
100k items x 10 raters. The baseline (`krippendorff.alpha`, the PyPI reference) is timed in
the same run on the same data, and its value is compared with ours.

Run: .venv/bin/python bench/agreement.py [--items 100000] [--raters 10] [--repeat 5]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import krippendorff  # noqa: E402
from machine import describe  # noqa: E402  (bench/machine.py, beside this script)

from review.analysis.agreement import krippendorff_alpha  # noqa: E402
from review.analysis.report import build_report  # noqa: E402
from review.analysis.report_json import report_dict  # noqa: E402


def make_study(n_items: int = 100_000, n_raters: int = 10, missing: float = 0.1,
               seed: int = 0) -> pd.DataFrame:
    """Synthetic 5-point fidelity ratings with rater bias and inconsistency, gold items,
    hidden references and breakdown columns; ``missing`` of the cells are left unrated."""
    rng = np.random.default_rng(seed)
    quality = rng.uniform(1.0, 5.0, n_items)
    ref = np.arange(n_items) % 10 == 0  # one hidden reference per group of 10 items
    quality[ref] = rng.uniform(4.3, 5.0, int(ref.sum()))
    bias = rng.normal(0.0, 0.4, n_raters)
    bias -= bias.mean()
    noise = rng.uniform(0.4, 1.2, n_raters)
    item = np.repeat(np.arange(n_items), n_raters)
    rater = np.tile(np.arange(n_raters), n_items)
    raw = quality[item] + bias[rater] + noise[rater] * rng.standard_normal(item.size)
    score = np.clip(np.rint(raw), 1, 5).astype(np.int64)
    keep = rng.random(item.size) >= missing
    item, rater, score = item[keep], rater[keep], score[keep]
    gold = (np.arange(n_items) % 50 == 7)[item]
    expected = np.clip(np.rint(quality[item]), 1, 5)
    restorers = np.array(["sd15_img2img", "wiener", "richardson_lucy", "blurred"])
    levels = np.array([2, 4, 8, 16, 32])
    return pd.DataFrame({
        "item": item,
        "rater": np.char.add("rater-", rater.astype(str)),
        "score": score,
        "restorer": restorers[item % 4],
        "blur_level": levels[(item // 4) % 5],
        "guideline_version": np.where(rater % 2 == 0, "v1", "v2"),
        "qa_cohort": np.where(rater < n_raters // 2, "qa", "no_qa"),
        "is_gold": gold,
        "expected_min": np.where(gold, expected - 1, np.nan),
        "expected_max": np.where(gold, expected + 1, np.nan),
        "reference_group": item // 10,
        "is_hidden_reference": ref[item],
    })


def _time(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--raters", type=int, default=10)
    ap.add_argument("--missing", type=float, default=0.1)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--report-repeat", type=int, default=2)
    args = ap.parse_args()

    print(describe())
    print(f"numpy {np.__version__}, pandas {pd.__version__}, "
          f"krippendorff {importlib.metadata.version('krippendorff')}")
    df = make_study(args.items, args.raters, args.missing)
    print(f"data: {args.items} items x {args.raters} raters, {len(df)} ratings "
          f"({args.missing:.0%} missing), 5-point scale")

    # Baseline input: the raters x items matrix with NaN for missing (pivot timed separately).
    t0 = time.perf_counter()
    wide = np.full((args.raters, args.items), np.nan)
    codes = df["rater"].str.slice(6).astype(int).to_numpy()
    wide[codes, df["item"].to_numpy()] = df["score"].to_numpy()
    pivot_s = time.perf_counter() - t0

    theirs_s, theirs = _time(lambda: krippendorff.alpha(reliability_data=wide,
                                                         level_of_measurement="ordinal"),
                             args.repeat)
    ours_s, ours = _time(lambda: krippendorff_alpha(df, "ordinal"), args.repeat)
    print("ordinal alpha, median of", args.repeat, "runs:")
    print(f"  krippendorff.alpha (reliability matrix, pivot {pivot_s:.3f}s not counted): "
          f"{theirs_s:.4f}s  value {theirs:.12f}")
    print(f"  review.analysis.agreement.krippendorff_alpha (from the long DataFrame): "
          f"{ours_s:.4f}s  value {ours:.12f}")
    ratio = ours_s / theirs_s
    diff = abs(float(ours) - float(theirs))
    print(f"  ratio ours/theirs: {ratio:.2f} (goal <= 1.5)  |difference|: {diff:.2e} "
          f"(goal <= 1e-9)")

    report_s, report = _time(lambda: build_report(df), args.report_repeat)
    text = json.dumps(report_dict(report), allow_nan=False)
    print(f"build_report (no bootstrap), median of {args.report_repeat}: {report_s:.2f}s "
          f"(goal <= 10 s); JSON {len(text) / 1e6:.1f} MB; "
          f"{len(report.pairwise_kappa)} rater pairs")
    a = report.krippendorff_alpha
    print(f"  alpha nominal/ordinal/interval: {a.nominal.value:.4f} / "
          f"{a.ordinal.value:.4f} / {a.interval.value:.4f}; "
          f"Fleiss {report.fleiss_kappa.value:.4f}; ICC2 {report.icc.icc2.value:.4f}")
    ok = diff <= 1e-9 and ratio <= 1.5 and report_s <= 10
    print("RESULT:", "PASS" if ok else "FAIL")


if __name__ == "__main__":
    main()
