"""Analog transmission blocks: real code values -> complex symbols of unit average power, and back.

Deep JSCC in its original, analog form (Bourtsoulatze, Kurka, Gündüz 2019) sends the encoder's real
outputs directly: consecutive pairs (re, im) form complex channel symbols, scaled so that each item's
symbols have average energy 1 (Es = 1, so ``snr_db`` keeps its meaning, shared/CONVENTIONS.md).
"""

from __future__ import annotations

from sdjscc_phy.core.block import Batch, BatchContext, Block
from sdjscc_phy.core.ports import Port, Shape
from sdjscc_phy.errors import PortError
from sdjscc_phy.lazy import lazy_import

torch = lazy_import("torch")


def to_complex(values: torch.Tensor) -> torch.Tensor:
    """Real ``[B, 2S]`` -> complex64 ``[B, S]`` from consecutive (re, im) pairs."""
    return torch.view_as_complex(values.float().reshape(values.shape[0], -1, 2).contiguous())


def to_real(symbols: torch.Tensor) -> torch.Tensor:
    """Complex ``[B, S]`` -> float32 ``[B, 2S]`` of consecutive (re, im) pairs (inverse of :func:`to_complex`)."""
    return torch.view_as_real(symbols.to(torch.complex64)).reshape(symbols.shape[0], -1)


def normalise_power(symbols: torch.Tensor) -> torch.Tensor:
    """Each row scaled to mean |x|^2 = 1 (rows of zeros stay zero)."""
    power = symbols.real.square().add(symbols.imag.square()).mean(dim=1, keepdim=True)
    return symbols * torch.rsqrt(power.clamp_min(1e-12))


class PowerNormalizer(Block):
    """Real code values -> complex symbols (pairs as re, im) with average energy 1 per item."""

    type_name = "power_normalizer"
    inputs = (Port("x", "float32", ("N",), "real code values (analog encoder output); N even"),)
    outputs = (Port("symbols", "complex64", ("S",), "S = N/2 complex symbols, mean |x|^2 = 1 per item"),)

    def infer_shapes(self, input_shapes: dict[str, Shape]) -> dict[str, Shape]:
        (n,) = input_shapes["x"]
        if isinstance(n, int) and n % 2:
            raise PortError(f"input port 'x': {n} values do not pair into complex symbols")
        return {"symbols": (n // 2 if isinstance(n, int) else "S",)}

    def process_torch(self, inputs: Batch, ctx: BatchContext) -> Batch:
        return {"symbols": normalise_power(to_complex(inputs["x"]))}


class ComplexToReal(Block):
    """Complex symbols -> their real and imaginary parts, interleaved (the analog decoder's input)."""

    type_name = "complex_to_real"
    inputs = (Port("y", "complex64", ("S",), "received symbols"),)
    outputs = (Port("x", "float32", ("N",), "N = 2S values: re, im of each symbol"),)

    def infer_shapes(self, input_shapes: dict[str, Shape]) -> dict[str, Shape]:
        (s,) = input_shapes["y"]
        return {"x": (2 * s if isinstance(s, int) else "N",)}

    def process_torch(self, inputs: Batch, ctx: BatchContext) -> Batch:
        return {"x": to_real(inputs["y"])}
