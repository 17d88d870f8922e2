"""Image-quality metrics: inputs ``image`` (reference) and ``image_hat`` (reconstruction), both
``(N, C, H, W)`` floats in [0, 1].

``psnr_db`` is the mean over images of per-image PSNR; ``psnr_db_of_mean_mse`` is the PSNR of the
dataset-mean MSE (docs/conventions.md). Both cap at ``max_db`` (default 100 dB), so a perfect
reconstruction reports 100 dB rather than inf.
"""

from __future__ import annotations

from sdjscc_phy.errors import ParameterError
from sdjscc_phy.metrics.base import MeanOverItems
from sdjscc_phy.metrics.functional import (
    DEFAULT_MAX_PSNR_DB,
    per_image_mse,
    per_image_psnr_db,
    per_image_ssim,
    psnr_db_from_mse,
)
from sdjscc_phy.metrics.registry import register_metric


def _check_max_db(max_db: float, metric: str) -> float:
    if isinstance(max_db, bool) or not isinstance(max_db, (int, float)) or not 0 < max_db < float("inf"):
        raise ParameterError(f"`max_db` of metric '{metric}' must be a finite number of dB > 0; got {max_db!r}")
    return float(max_db)


class _ImagePairMetric(MeanOverItems):
    inputs = ("image", "image_hat")


@register_metric("mse")
class Mse(_ImagePairMetric):
    """Mean over images of per-image MSE (``mse``) and its standard error (``mse_se``)."""

    higher_is_better = False

    def update(self, image, image_hat) -> None:
        self._moments.add(per_image_mse(image, image_hat))


@register_metric("psnr_db")
class Psnr(_ImagePairMetric):
    """Mean over images of per-image PSNR in dB (``psnr_db``) and its standard error (``psnr_db_se``).

    Each image's PSNR is capped at ``max_db`` before averaging.
    """

    higher_is_better = True
    unit = "dB"

    def __init__(self, max_db: float = DEFAULT_MAX_PSNR_DB) -> None:
        super().__init__()
        self.max_db = _check_max_db(max_db, self.name)

    def update(self, image, image_hat) -> None:
        self._moments.add(per_image_psnr_db(image, image_hat, max_db=self.max_db))


@register_metric("psnr_db_of_mean_mse")
class PsnrOfMeanMse(_ImagePairMetric):
    """PSNR in dB of the mean over images of per-image MSE (``psnr_db_of_mean_mse``), capped at ``max_db``.

    Not a mean over items, so no standard error.
    """

    higher_is_better = True
    unit = "dB"
    reports_standard_error = False

    def __init__(self, max_db: float = DEFAULT_MAX_PSNR_DB) -> None:
        super().__init__()
        self.max_db = _check_max_db(max_db, self.name)

    def update(self, image, image_hat) -> None:
        self._moments.add(per_image_mse(image, image_hat))

    def compute(self) -> dict[str, float]:
        self._require_data(self._moments.count)
        return {self.name: psnr_db_from_mse(self._moments.mean, max_db=self.max_db)}


@register_metric("ssim")
class Ssim(_ImagePairMetric):
    """Mean over images of per-image SSIM (``ssim``; Gaussian window 11, σ = 1.5, data range 1) and
    its standard error (``ssim_se``)."""

    higher_is_better = True

    def update(self, image, image_hat) -> None:
        self._moments.add(per_image_ssim(image, image_hat))
