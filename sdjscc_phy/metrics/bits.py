"""Bit-level metrics: bit error rate of hard bits, and the rate in bits per source pixel."""

from __future__ import annotations

from sdjscc_phy.errors import DataError
from sdjscc_phy.metrics.base import MeanOverItems
from sdjscc_phy.metrics.functional import as_tensor, bits_per_pixel, per_item_ber
from sdjscc_phy.metrics.registry import register_metric


@register_metric("ber")
class Ber(MeanOverItems):
    """Bit error rate (``ber``) and its standard error over items (``ber_se``).

    Inputs are hard bits ``(N, num_bits, ...)`` of 0/1, one row per item (image or codeword). ``ber``
    is the mean over items of per-item BER, which equals bit errors / bits whenever every item carries
    the same number of bits (a fixed-rate link).
    """

    higher_is_better = False
    inputs = ("bits", "bits_hat")

    def update(self, bits, bits_hat) -> None:
        self._moments.add(per_item_ber(bits, bits_hat))


@register_metric("bpp")
class Bpp(MeanOverItems):
    """Mean transmitted bits per source pixel (``bpp``) = ``num_bits / (H·W)``, averaged over images.

    ``num_bits`` is one count for the batch or one per image ``(N,)``; ``image`` ``(N, C, H, W)``
    supplies N, H and W. A rate, not an estimate, so no standard error.
    """

    higher_is_better = None
    reports_standard_error = False
    inputs = ("num_bits", "image")

    def update(self, num_bits, image) -> None:
        image = as_tensor(image, "image")
        if image.ndim != 4:
            raise DataError(f"`image` must have shape (N, C, H, W); got {tuple(image.shape)}")
        n, _, height, width = image.shape
        self._moments.add(bits_per_pixel(num_bits, height, width, n))

    def compute(self) -> dict[str, float]:
        self._require_data(self._moments.count)
        return {self.name: self._moments.mean}
