"""Bit-level metrics: bit and block error rates of hard bits, and the rate in bits per source pixel and in channel
symbols per image."""

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
    unit = "fraction of bits"
    inputs = ("bits", "bits_hat")

    def update(self, bits, bits_hat) -> None:
        self._moments.add(per_item_ber(bits, bits_hat))


@register_metric("bler")
class Bler(MeanOverItems):
    """Block error rate (``bler``): the fraction of items (codewords, images) with at least one bit
    error, and its standard error over items (``bler_se``). Inputs as for ``ber``."""

    higher_is_better = False
    inputs = ("bits", "bits_hat")

    def update(self, bits, bits_hat) -> None:
        self._moments.add((per_item_ber(bits, bits_hat) > 0).double())


@register_metric("bpp")
class Bpp(MeanOverItems):
    """Mean transmitted bits per source pixel (``bpp``) = ``num_bits / (H·W)``, averaged over images.

    ``num_bits`` is one count for the batch or one per image ``(N,)``; ``image`` ``(N, C, H, W)``
    supplies N, H and W. A rate, not an estimate, so no standard error.
    """

    higher_is_better = None
    unit = "bits per pixel"
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


@register_metric("symbols_per_image")
class SymbolsPerImage(MeanOverItems):
    """Mean complex channel symbols actually sent per image (``symbols_per_image``), e.g. by a gated codec
    that prunes code channels. ``num_symbols`` holds one count per image ``(N,)``. A rate: no standard error.
    """

    higher_is_better = None
    unit = "complex symbols"
    reports_standard_error = False
    inputs = ("num_symbols",)

    def update(self, num_symbols) -> None:
        num_symbols = as_tensor(num_symbols, "num_symbols")
        if num_symbols.ndim != 1 or not bool((num_symbols >= 0).all()):
            raise DataError(f"`num_symbols` must be one count >= 0 per image, shape (N,); "
                            f"got {tuple(num_symbols.shape)}")
        self._moments.add(num_symbols)

    def compute(self) -> dict[str, float]:
        self._require_data(self._moments.count)
        return {self.name: self._moments.mean}
