"""Streaming metrics for metric sinks: accuracy, F1, PSNR, SSIM, MSE, BER, BLER, bpp, symbols per image, mAP.

Pure per-batch functions live in ``functional``; the classes here accumulate them with bounded
memory. ``make_metrics(["accuracy", "psnr_db", ...])`` builds what a sink's ``metrics:`` list names.
"""

from sdjscc_phy.metrics.base import MeanOverItems, Metric, RunningMoments
from sdjscc_phy.metrics.collection import MetricSet
from sdjscc_phy.metrics.registry import available_metrics, make_metric, make_metrics, metric_class, register_metric

# Importing these modules registers their metrics.
from sdjscc_phy.metrics.bits import Ber, Bler, Bpp, SymbolsPerImage
from sdjscc_phy.metrics.classification import Accuracy, F1Macro
from sdjscc_phy.metrics.detection import MeanAveragePrecision, MeanAveragePrecision50
from sdjscc_phy.metrics.image import Mse, Psnr, PsnrOfMeanMse, Ssim

__all__ = [
    "Accuracy",
    "Ber",
    "Bler",
    "Bpp",
    "F1Macro",
    "MeanAveragePrecision",
    "MeanAveragePrecision50",
    "MeanOverItems",
    "Metric",
    "MetricSet",
    "Mse",
    "Psnr",
    "PsnrOfMeanMse",
    "RunningMoments",
    "Ssim",
    "SymbolsPerImage",
    "available_metrics",
    "make_metric",
    "make_metrics",
    "metric_class",
    "register_metric",
]
