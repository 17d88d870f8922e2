"""The differentiable transmission chain that end-to-end training runs through.

encoder output e in [0, 1] -> binarizer (eq. 14, straight-through) -> Gray QAM mapper -> AWGN or
Rayleigh channel at ``snr_db`` -> soft demapper -> P(b = 1) for the decoder. The flowgraph's torch
path composes the same functions block by block.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from sdjscc_phy.errors import ParameterError
from sdjscc_phy.kernels.mapping import CONSTELLATIONS, DEMAPPING_METHODS
from sdjscc_phy.phy import channels, mapping
from sdjscc_phy.phy.quantization import binarize_straight_through

CHANNELS = ("awgn", "rayleigh")


@dataclass(frozen=True)
class LinkConfig:
    """Modulation and channel of a link; ``snr_db`` is Es/N0 per complex symbol in dB."""

    constellation: str = "qam16"
    channel: str = "awgn"
    snr_db: float = 5.0
    coherence: str = "block"
    csi: bool = True
    demap_method: str = "app"

    def __post_init__(self):
        checks = (("constellation", self.constellation, tuple(CONSTELLATIONS)), ("channel", self.channel, CHANNELS),
                  ("coherence", self.coherence, channels.COHERENCES), ("demap_method", self.demap_method, DEMAPPING_METHODS))
        for name, value, allowed in checks:
            if value not in allowed:
                raise ParameterError(f"link: `{name}` must be one of {allowed}; got {value!r}")

    @property
    def num_bits_per_symbol(self) -> int:
        return CONSTELLATIONS[self.constellation]

    def as_dict(self) -> dict:
        return asdict(self)


def transmit_soft_bits(e: torch.Tensor, link: LinkConfig, generator: torch.Generator | None = None,
                       snr_db: float | torch.Tensor | None = None) -> torch.Tensor:
    """P(b = 1) at the receiver for encoder outputs ``e`` ``[B, N]`` (N a multiple of bits per symbol).

    ``snr_db`` overrides ``link.snr_db`` (e.g. to test at another SNR than the training one); a tensor
    ``[B, 1]`` gives one SNR per example.
    """
    k = link.num_bits_per_symbol
    no = 10.0 ** (-(link.snr_db if snr_db is None else snr_db) / 10.0)
    x = mapping.map_bits(binarize_straight_through(e), k)
    if link.channel == "awgn":
        y, no_eff = channels.awgn(x, no, generator=generator), no
    else:
        faded = channels.rayleigh(x, no, link.coherence, link.csi, generator=generator)
        y, no_eff = faded.y, faded.no_eff
    return mapping.bit_probabilities(mapping.demap_llr(y, no_eff, k, link.demap_method))
