"""AWGN and flat Rayleigh channels at ``snr_db`` = Es/N0 per complex symbol (Es = 1, N0 = 10^(-snr_db/10))."""

from __future__ import annotations

from sdjscc_phy.core.block import Batch, BatchContext, Block
from sdjscc_phy.core.params import Param
from sdjscc_phy.core.ports import Port
from sdjscc_phy.lazy import lazy_import
from sdjscc_phy.phy.choices import COHERENCES

torch = lazy_import("torch")
host = lazy_import("sdjscc_phy.kernels.channels")
differentiable = lazy_import("sdjscc_phy.phy.channels")

_SNR = Param("snr_db", "float", 10.0, low=-50.0, high=100.0, unit="dB", doc="Es/N0 per complex symbol")
_X = Port("x", "complex64", ("S",), "transmitted symbols, Es = 1")
_Y = Port("y", "complex64", ("S",), "received symbols")
_NO = Port("no", "float32", ("S",), "noise variance per complex symbol seen by the demapper (N0, or N0/|h|^2 with CSI)")


def noise_variance(snr_db: float) -> float:
    """N0 = 10^(-snr_db/10) for unit symbol energy."""
    return 10.0 ** (-snr_db / 10.0)


def _constant(value: float, like: torch.Tensor) -> torch.Tensor:
    """A float32 tensor shaped like ``like`` holding ``value``, as a zero-copy stride-0 view."""
    return torch.tensor(value, dtype=torch.float32, device=like.device).expand(like.shape)


class AwgnChannel(Block):
    """Complex AWGN: y = x + n, n ~ CN(0, N0) (Numba kernel on the host path)."""

    type_name = "awgn_channel"
    inputs = (_X,)
    outputs = (_Y, _NO)
    params = (_SNR,)

    def process_host(self, inputs: Batch, ctx: BatchContext) -> Batch:
        no = noise_variance(self.p.snr_db)
        y = host.awgn(inputs["x"].cpu().numpy(), no, ctx.run_key, row_offset=ctx.start)
        y = torch.from_numpy(y).to(ctx.device)
        return {"y": y, "no": _constant(no, y)}

    def process_torch(self, inputs: Batch, ctx: BatchContext) -> Batch:
        no = noise_variance(self.p.snr_db)
        y = differentiable.awgn(inputs["x"], no, generator=ctx.generator)
        return {"y": y, "no": _constant(no, y)}


class RayleighChannel(Block):
    """Flat Rayleigh fading y = h x + n, h ~ CN(0, 1) per item (block) or per symbol (fast); optional perfect-CSI equalisation."""

    type_name = "rayleigh_channel"
    inputs = (_X,)
    outputs = (_Y, _NO, Port("h", "complex64", ("S",), "channel coefficient of each symbol"))
    params = (
        _SNR,
        Param("coherence", "str", "block", choices=COHERENCES, doc="block: one h per item; fast: one h per symbol"),
        Param("csi", "bool", True, doc="perfect CSI at the receiver: equalise y h*/|h|^2, report N0/|h|^2"),
    )

    def process_host(self, inputs: Batch, ctx: BatchContext) -> Batch:
        x = inputs["x"].cpu().numpy()
        out = host.rayleigh(x, noise_variance(self.p.snr_db), ctx.run_key, self.p.coherence, self.p.csi,
                            row_offset=ctx.start)
        y = torch.from_numpy(out.y)
        if self.p.coherence == "block":  # per-item h and N0/|h|^2 arrive as [B, 1] / broadcast views
            h = torch.from_numpy(out.h).expand(y.shape)
            no = torch.from_numpy(out.no_eff[:, :1].copy()).expand(y.shape)
        else:
            h, no = torch.from_numpy(out.h), torch.from_numpy(out.no_eff)
        return {"y": y.to(ctx.device), "no": no.to(ctx.device), "h": h.to(ctx.device)}

    def process_torch(self, inputs: Batch, ctx: BatchContext) -> Batch:
        x = inputs["x"]
        out = differentiable.rayleigh(x, noise_variance(self.p.snr_db), self.p.coherence, self.p.csi,
                                      generator=ctx.generator)
        return {"y": out.y, "no": out.no_eff.float(), "h": out.h.expand(x.shape)}
