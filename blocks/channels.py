"""AWGN and flat Rayleigh channels at ``snr_db`` = Es/N0 per complex symbol (Es = 1, N0 = 10^(-snr_db/10)),
or at ``ebno_db`` = Eb/N0 per information bit.

The SNR is a signal: a connected ``snr_db`` input port gives each item its own SNR (e.g. from an
``snr_source``); the parameters are the value when the port is not connected.
"""

from __future__ import annotations

import math

from sdjscc_phy.core import tags
from sdjscc_phy.core.block import Batch, BatchContext, Block
from sdjscc_phy.core.params import Param
from sdjscc_phy.core.ports import Port
from sdjscc_phy.errors import ParameterError
from sdjscc_phy.lazy import lazy_import
from sdjscc_phy.phy.choices import COHERENCES, CONSTELLATIONS

torch = lazy_import("torch")
host = lazy_import("sdjscc_phy.kernels.channels")
differentiable = lazy_import("sdjscc_phy.phy.channels")

_SNR_PARAMS = (
    Param("snr_db", "float", 10.0, low=-50.0, high=100.0, unit="dB", doc="Es/N0 per complex symbol"),
    Param("ebno_db", "float", None, low=-50.0, high=100.0, nullable=True, unit="dB",
          doc="Eb/N0 per information bit; when set, replaces snr_db by ebno_db + 10 log10(bits_per_symbol x "
              "code_rate)"),
    Param("bits_per_symbol", "int", None, low=1, nullable=True, unit="bits",
          doc="for ebno_db; default: the constellation of the symbol_mapper upstream"),
    Param("code_rate", "float", None, low=0.0, high=1.0, nullable=True,
          doc="for ebno_db: information bits per coded bit; default: k/n of the ldpc_encoder upstream, else 1"),
)
_X = Port("x", "complex64", ("S",), "transmitted symbols, Es = 1")
_Y = Port("y", "complex64", ("S",), "received symbols")
_NO = Port("no", "float32", ("S",), "noise variance per complex symbol seen by the demapper (N0, or N0/|h|^2 with CSI)",
           differentiable=False)
_SNR_IN = Port("snr_db", "float32", (), "per-item Es/N0 in dB (default: the snr_db parameter)", optional=True)


def noise_variance(snr_db: float) -> float:
    """N0 = 10^(-snr_db/10) for unit symbol energy."""
    return 10.0 ** (-snr_db / 10.0)


def ebno_to_snr_db(ebno_db: float, bits_per_symbol: int, code_rate: float = 1.0) -> float:
    """Es/N0 in dB for ``ebno_db`` = Eb/N0 in dB: each complex symbol carries bits_per_symbol x code_rate
    information bits, so Es/N0 = Eb/N0 + 10 log10(bits_per_symbol x code_rate) (Sionna's ``ebnodb2no``)."""
    return ebno_db + 10.0 * math.log10(bits_per_symbol * code_rate)


class _Channel(Block):
    """What both channels share: the SNR, given as Es/N0 or as Eb/N0 (then resolved at validation from
    the tags of the mapper and LDPC encoder upstream, or from the parameters)."""

    _upstream: dict = {}  # tags of the symbols on port 'x', set at validation

    def propagate_tags(self, input_tags: dict[str, dict], input_shapes) -> dict[str, dict]:
        self._upstream = input_tags.get("x", {})
        if self.p.ebno_db is not None:
            self.snr_db  # noqa: B018  (resolve now: a missing bits_per_symbol is a validation error)
        return super().propagate_tags(input_tags, input_shapes)

    @property
    def snr_db(self) -> float:
        """Es/N0 in dB per complex symbol."""
        if self.p.ebno_db is None:
            return self.p.snr_db
        mapped = self._upstream.get(tags.MAPPED_BITS)
        bits_per_symbol = self.p.bits_per_symbol or (CONSTELLATIONS[mapped[1]] if mapped else None)
        if bits_per_symbol is None:
            raise ParameterError("parameter 'bits_per_symbol': needed with ebno_db when the symbols on port 'x' "
                                 "do not come from a symbol_mapper")
        code_rate = self.p.code_rate or self._upstream.get(tags.CODE_RATE, 1.0)
        return ebno_to_snr_db(self.p.ebno_db, bits_per_symbol, code_rate)


def _constant(value: float, like: torch.Tensor) -> torch.Tensor:
    """A float32 tensor shaped like ``like`` holding ``value``, as a zero-copy stride-0 view."""
    return torch.tensor(value, dtype=torch.float32, device=like.device).expand(like.shape)


def item_noise_variance(inputs: Batch) -> torch.Tensor:
    """N0 ``[B, 1]`` (float32) of the per-item SNRs on the ``snr_db`` port."""
    return torch.pow(10.0, -inputs["snr_db"].float().reshape(-1, 1) / 10.0)


def rescale_noise(y_unit: torch.Tensor, clean: torch.Tensor, no: torch.Tensor) -> torch.Tensor:
    """``clean + sqrt(no) (y_unit - clean)``: a channel output drawn at N0 = 1 brought to per-item N0
    ``no`` ``[B, 1]`` (the host kernels take one N0 per call; their noise is counter-based, so the
    unit-variance draw is the same noise the scalar call would scale)."""
    return clean + no.sqrt().to(clean.device) * (y_unit - clean)


class AwgnChannel(_Channel):
    """Complex AWGN: y = x + n, n ~ CN(0, N0) (Numba kernel on the host path)."""

    type_name = "awgn_channel"
    inputs = (_X, _SNR_IN)
    outputs = (_Y, _NO)
    params = _SNR_PARAMS

    def process_host(self, inputs: Batch, ctx: BatchContext) -> Batch:
        per_item = "snr_db" in inputs
        no = 1.0 if per_item else noise_variance(self.snr_db)
        y = host.awgn(inputs["x"].cpu().numpy(), no, ctx.run_key, row_offset=ctx.start)
        y = torch.from_numpy(y).to(ctx.device)
        if per_item:
            no = item_noise_variance(inputs).to(ctx.device)
            return {"y": rescale_noise(y, inputs["x"].to(ctx.device), no), "no": no.expand(y.shape)}
        return {"y": y, "no": _constant(no, y)}

    def process_torch(self, inputs: Batch, ctx: BatchContext) -> Batch:
        if "snr_db" in inputs:
            no = item_noise_variance(inputs)
            y = differentiable.awgn(inputs["x"], no, generator=ctx.batch_generator, share=ctx.share)
            return {"y": y, "no": no.expand(y.shape)}
        no = noise_variance(self.snr_db)
        y = differentiable.awgn(inputs["x"], no, generator=ctx.batch_generator, share=ctx.share)
        return {"y": y, "no": _constant(no, y)}


class RayleighChannel(_Channel):
    """Flat Rayleigh fading y = h x + n, h ~ CN(0, 1) per item (block) or per symbol (fast); optional perfect-CSI equalisation."""

    type_name = "rayleigh_channel"
    inputs = (_X, _SNR_IN)
    outputs = (_Y, _NO, Port("h", "complex64", ("S",), "channel coefficient of each symbol",
                                          differentiable=False))
    params = (
        *_SNR_PARAMS,
        Param("coherence", "str", "block", choices=COHERENCES, doc="block: one h per item; fast: one h per symbol"),
        Param("csi", "bool", True, doc="perfect CSI at the receiver: equalise y h*/|h|^2, report N0/|h|^2"),
    )

    def process_host(self, inputs: Batch, ctx: BatchContext) -> Batch:
        x = inputs["x"].cpu().numpy()
        per_item = "snr_db" in inputs
        out = host.rayleigh(x, 1.0 if per_item else noise_variance(self.snr_db), ctx.run_key, self.p.coherence,
                            self.p.csi, row_offset=ctx.start)
        y = torch.from_numpy(out.y)
        if self.p.coherence == "block":  # per-item h and N0/|h|^2 arrive as [B, 1] / broadcast views
            h = torch.from_numpy(out.h).expand(y.shape)
            no = torch.from_numpy(out.no_eff[:, :1].copy()).expand(y.shape)
        else:
            h, no = torch.from_numpy(out.h), torch.from_numpy(out.no_eff)
        if per_item:
            item_no = item_noise_variance(inputs).cpu()
            xt = torch.from_numpy(x)
            y, no = rescale_noise(y, xt if self.p.csi else h * xt, item_no), no * item_no
        return {"y": y.to(ctx.device), "no": no.to(ctx.device), "h": h.to(ctx.device)}

    def process_torch(self, inputs: Batch, ctx: BatchContext) -> Batch:
        x = inputs["x"]
        no = item_noise_variance(inputs) if "snr_db" in inputs else noise_variance(self.snr_db)
        out = differentiable.rayleigh(x, no, self.p.coherence, self.p.csi, generator=ctx.batch_generator, share=ctx.share)
        return {"y": out.y, "no": out.no_eff.float(), "h": out.h.expand(x.shape)}
