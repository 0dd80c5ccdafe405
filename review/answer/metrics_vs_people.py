"""Objective metrics against people: do PSNR, SSIM and blur_effect rank restorations the way the
raters do? Per restoration (scikit-image, against its sharp source; blur_effect needs no
reference), the Spearman correlation with the item's mean opinion score per restorer with a
Fisher-z 95 % interval (standard error sqrt(1.06 / (n - 3)), Fieller, Hartley & Pearson 1957,
the usual one for Spearman's rho), and the items where a metric and people disagree most (the
largest gap between the item's percentile rank by the metric and by MOS).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from PIL import Image
from scipy.stats import spearmanr
from skimage.measure import blur_effect
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import DegradedImage, Restoration, SourceImage, Study, StudyItem
from review.media.restore import names

#: Metric -> does a larger value mean a better (sharper, closer) restoration?
METRICS = {"psnr": True, "ssim": True, "blur_effect": False}


@dataclass
class MetricsVsPeople:
    """Per item metrics and MOS, the correlations per restorer, and the worst disagreements."""

    items: pd.DataFrame  # item, restorer, mos, ratings, psnr, ssim, blur_effect, paths
    correlations: pd.DataFrame  # restorer, metric, n, rho, lo, hi, p
    disagreements: pd.DataFrame  # item, restorer, metric, value, mos, gap


def image_metrics(reference: Image.Image, restored: Image.Image) -> dict[str, float]:
    """PSNR (dB) and SSIM of a restoration against its sharp source, and its blur_effect (0 sharp
    .. 1 blurred, no reference); PSNR and SSIM are NaN when the sizes differ."""
    out = np.asarray(restored.convert("RGB"))
    gray = np.asarray(restored.convert("L"), dtype=float) / 255.0
    metrics = {"psnr": math.nan, "ssim": math.nan, "blur_effect": float(blur_effect(gray))}
    ref = np.asarray(reference.convert("RGB"))
    if ref.shape == out.shape:
        metrics["psnr"] = float(peak_signal_noise_ratio(ref, out, data_range=255))
        metrics["ssim"] = float(structural_similarity(ref, out, channel_axis=2, data_range=255))
    return metrics


def item_paths(session: Session, study: Study) -> pd.DataFrame:
    """Each item's restoration and sharp source (store paths and sha256) and its blur level."""
    rows = session.execute(
        select(StudyItem.id, Restoration.method, DegradedImage.kind, DegradedImage.level, Restoration.path,
               Restoration.sha256, SourceImage.path, SourceImage.sha256)
        .join(Restoration, Restoration.id == StudyItem.restoration_id)
        .join(DegradedImage, DegradedImage.id == Restoration.degraded_id)
        .join(SourceImage, SourceImage.id == DegradedImage.source_id)
        .where(StudyItem.study_id == study.id, SourceImage.is_reference.is_(True),
               DegradedImage.level.is_not(None),
               Restoration.method.not_in(names(is_restoration=False)))).all()
    return pd.DataFrame(rows, columns=["item", "restorer", "blur_kind", "blur_level", "restored_path",
                                       "restored_sha256", "source_path", "source_sha256"])


def spearman_ci(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """Spearman's rho, its Fisher-z 95 % interval and p-value (NaN below 4 pairs or a constant)."""
    n = len(x)
    if n < 4 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan, math.nan, math.nan, math.nan
    res = spearmanr(x, y)
    rho = float(res.statistic)
    z = math.atanh(max(min(rho, 0.999999), -0.999999))
    half = 1.96 * math.sqrt(1.06 / (n - 3))
    return rho, math.tanh(z - half), math.tanh(z + half), float(res.pvalue)


def compare(items: pd.DataFrame, k: int = 6) -> MetricsVsPeople:
    """Correlations and disagreements from per-item metrics and MOS (columns item, restorer, mos
    and the METRICS)."""
    corr, gaps = [], []
    for restorer, g in items.groupby("restorer", sort=True):
        for metric, larger_better in METRICS.items():
            ok = g[g[metric].notna()]
            rho, lo, hi, p = spearman_ci(ok[metric].to_numpy(float), ok["mos"].to_numpy(float))
            corr.append({"restorer": restorer, "metric": metric, "n": len(ok), "rho": rho, "lo": lo,
                         "hi": hi, "p": p})
            if len(ok) >= 2:
                by_metric = ok[metric].rank(pct=True, ascending=larger_better)
                by_people = ok["mos"].rank(pct=True)
                gaps.append(ok.assign(metric=metric, value=ok[metric], gap=(by_metric - by_people).abs()))
    dis = (pd.concat(gaps).sort_values(["gap", "item"], ascending=[False, True]).head(k)
           if gaps else pd.DataFrame(columns=["item", "restorer", "metric", "value", "mos", "gap"]))
    return MetricsVsPeople(items, pd.DataFrame(corr), dis.reset_index(drop=True))


def metrics_vs_people(session: Session, study: Study, ratings: pd.DataFrame,
                      open_image: Callable[[str], Image.Image], k: int = 6) -> MetricsVsPeople:
    """The whole comparison for a study: `ratings` is its review.analysis.export.ratings_frame,
    `open_image` reads a store path (the image store's open_image)."""
    paths = item_paths(session, study)
    mos = ratings.groupby("item")["score"].agg(mos="mean", ratings="size").reset_index()
    rated = paths.merge(mos, on="item")
    refs: dict[str, Image.Image] = {}
    measured = []
    for source_path, restored_path in zip(rated["source_path"].tolist(), rated["restored_path"].tolist(),
                                          strict=True):
        ref = refs.setdefault(source_path, open_image(source_path))
        measured.append(image_metrics(ref, open_image(restored_path)))
    items = pd.concat([rated.reset_index(drop=True), pd.DataFrame(measured, columns=list(METRICS))], axis=1)
    return compare(items, k)
