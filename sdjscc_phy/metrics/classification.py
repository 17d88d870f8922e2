"""Top-1 accuracy and macro F1 over a stream of classified images, on torchmetrics' class counts.

State is torchmetrics' per-class true/false positive/negative counts (4 × num_classes integers), so
memory does not grow with the number of images. ``num_classes`` may be left out when ``logits``
``(N, num_classes)`` are given: the first batch fixes it.
"""

from __future__ import annotations

import math

from sdjscc_phy.errors import DataError, ParameterError
from sdjscc_phy.lazy import lazy_import
from sdjscc_phy.metrics.base import Metric
from sdjscc_phy.metrics.functional import as_tensor
from sdjscc_phy.metrics.registry import register_metric

torch = lazy_import("torch")


class _MulticlassMetric(Metric):
    """Shared input handling; subclasses name the torchmetrics class and its ``average``."""

    higher_is_better = True
    inputs = ("logits|label_hat", "label")
    _torchmetrics_class: str  # class name in torchmetrics.classification
    _average: str

    def __init__(self, num_classes: int | None = None) -> None:
        valid = isinstance(num_classes, int) and not isinstance(num_classes, bool) and num_classes >= 2
        if num_classes is not None and not valid:
            raise ParameterError(f"`num_classes` of metric '{self.name}' must be an integer >= 2; got {num_classes!r}")
        self.num_classes = num_classes
        self._counts = None  # the torchmetrics metric, built by the first update()
        self.num_items = 0

    def input_problems(self, available) -> list[str]:
        problems = super().input_problems(available)
        if "label_hat" in available and "logits" not in available and self.num_classes is None:
            problems.append(f"input port 'label_hat' needs the number of classes: connect input port 'logits' "
                            f"instead, or write the metric as {{{self.name}: {{num_classes: C}}}} in 'metrics'")
        return problems

    def update(self, label, logits=None, label_hat=None) -> None:
        """Add one batch: ``label`` ``(N,)`` integer classes and either ``logits`` ``(N, num_classes)``
        (top-1 = argmax) or predicted classes ``label_hat`` ``(N,)``."""
        if (logits is None) == (label_hat is None):
            raise DataError(f"metric '{self.name}' needs exactly one of `logits` or `label_hat`")
        label = as_tensor(label, "label")
        if label.ndim != 1 or label.is_floating_point() or label.is_complex() or label.dtype == torch.bool:
            raise DataError(f"`label` must be a 1-D integer tensor; got {tuple(label.shape)} {label.dtype}")
        if logits is not None:
            preds = as_tensor(logits, "logits")
            if preds.ndim != 2 or not preds.is_floating_point() or preds.shape[0] != label.shape[0]:
                raise DataError(
                    f"`logits` must be a floating tensor of shape ({label.shape[0]}, num_classes); "
                    f"got {tuple(preds.shape)}"
                )
            if self.num_classes is None:
                self.num_classes = preds.shape[1]
            elif preds.shape[1] != self.num_classes:
                raise DataError(f"`logits` must have {self.num_classes} classes; got {preds.shape[1]}")
        else:
            preds = as_tensor(label_hat, "label_hat")
            if preds.shape != label.shape or preds.is_floating_point() or preds.is_complex():
                raise DataError(
                    f"`label_hat` must be an integer tensor of shape {tuple(label.shape)}; "
                    f"got {tuple(preds.shape)} {preds.dtype}"
                )
            if self.num_classes is None:
                raise ParameterError(
                    f"metric '{self.name}' needs `num_classes` when given `label_hat` instead of `logits`: "
                    f"{type(self).__name__}(num_classes=C), or {{{self.name}: {{num_classes: C}}}} in a metric sink"
                )
            self._check_range(preds, "label_hat")
        self._check_range(label, "label")
        if self._counts is None:
            # Imported on first use: importing torchmetrics pulls in scipy.signal (seconds at CLI start).
            from torchmetrics import classification

            self._counts = getattr(classification, self._torchmetrics_class)(
                num_classes=self.num_classes, average=self._average, validate_args=False
            ).to(label.device)
        self._counts.update(preds, label)
        self.num_items += label.shape[0]

    def _check_range(self, labels: torch.Tensor, name: str) -> None:
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise DataError(
                f"`{name}` must be class indices in [0, {self.num_classes}); "
                f"got range [{labels.min().item()}, {labels.max().item()}]"
            )

    def reset(self) -> None:
        if self._counts is not None:
            self._counts.reset()
        self.num_items = 0

    def _value(self) -> float:
        self._require_data(self.num_items)
        return float(self._counts.compute())


@register_metric("accuracy")
class Accuracy(_MulticlassMetric):
    """Top-1 accuracy over images (``accuracy``) and its standard error (``accuracy_se``).

    The standard error is that of the mean of the per-image 0/1 correctness,
    ``std(ddof=1) / sqrt(n) = sqrt(p (1 - p) / (n - 1))``; NaN for a single image.
    """

    reports_standard_error = True
    unit = "fraction of images"
    _torchmetrics_class = "MulticlassAccuracy"
    _average = "micro"

    def compute(self) -> dict[str, float]:
        p, n = self._value(), self.num_items
        se = math.sqrt(p * (1.0 - p) / (n - 1)) if n > 1 else math.nan
        return {self.name: p, f"{self.name}_se": se}


@register_metric("f1_macro")
class F1Macro(_MulticlassMetric):
    """F1 score macro-averaged over classes (``f1_macro``).

    As in torchmetrics and scikit-learn, a class that appears neither in ``label`` nor in the
    predictions is left out of the average; a class with no true positives scores 0.
    """

    _torchmetrics_class = "MulticlassF1Score"
    _average = "macro"

    def compute(self) -> dict[str, float]:
        return {self.name: self._value()}
