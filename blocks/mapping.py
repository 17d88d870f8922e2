"""Symbol mapper and soft demapper: Gray QAM with unit average energy (Sionna's labelling)."""

from __future__ import annotations

from sdjscc_phy.core import tags
from sdjscc_phy.core.block import Batch, BatchContext, Block
from sdjscc_phy.core.params import Param
from sdjscc_phy.core.ports import Port, Shape
from sdjscc_phy.errors import ParameterError
from sdjscc_phy.lazy import lazy_import
from sdjscc_phy.phy.choices import CONSTELLATIONS, DEMAPPING_METHODS

torch = lazy_import("torch")
host = lazy_import("sdjscc_phy.kernels.mapping")
differentiable = lazy_import("sdjscc_phy.phy.mapping")

_CONSTELLATION = Param("constellation", "str", "qam16", choices=tuple(CONSTELLATIONS),
                       doc="Gray-labelled, Es = 1 (bpsk, qpsk, qam16, qam64)")


class SymbolMapper(Block):
    """Maps groups of bits to constellation points (k bits per complex symbol), padding the last symbol.

    When N is not a multiple of k, the last symbol carries N mod k bits and k - N mod k zero bits of
    padding: S = ceil(N / k) channel uses. The mapper tags its symbols with the payload size, so the
    demapper after the channel drops the padding's LLRs again.
    """

    type_name = "symbol_mapper"
    inputs = (Port("bits", "bits", ("N",), "bits; float P(b=1) on the torch path gives the mean symbol"),)
    outputs = (
        Port("symbols", "complex64", ("S",), "S = ceil(N / bits per symbol), unit average energy"),
        Port("num_bits", "int64", (), "bits sent per item including the padding, S x bits per symbol "
                                      "(connect to metric_sink.num_bits to count the padding in bpp)"),
    )
    params = (_CONSTELLATION,)

    def setup(self, ctx) -> None:
        self._k = CONSTELLATIONS[self.p.constellation]
        self._table = host.constellation(self._k)

    def propagate_tags(self, input_tags: dict[str, dict], input_shapes: dict[str, Shape]) -> dict[str, dict]:
        out = super().propagate_tags(input_tags, input_shapes)
        (n,) = input_shapes["bits"]
        if isinstance(n, int):
            out["symbols"][tags.MAPPED_BITS] = (n, self.p.constellation)
        return out

    def infer_shapes(self, input_shapes: dict[str, Shape]) -> dict[str, Shape]:
        (n,) = input_shapes["bits"]
        k = CONSTELLATIONS[self.p.constellation]
        return {"symbols": (-(-n // k) if isinstance(n, int) else "S",), "num_bits": ()}

    def _pad(self, bits):
        """Zero bits up to a whole number of symbols (F.pad works on uint8 and float bits alike)."""
        return torch.nn.functional.pad(bits, (0, -bits.shape[-1] % self._k))

    def _outputs(self, symbols: torch.Tensor) -> Batch:
        sent = symbols.shape[-1] * self._k
        return {"symbols": symbols, "num_bits": torch.full((symbols.shape[0],), sent, device=symbols.device)}

    def process_host(self, inputs: Batch, ctx: BatchContext) -> Batch:
        bits = self._pad(inputs["bits"].to(torch.uint8)).cpu().numpy()
        return self._outputs(torch.from_numpy(host.map_bits(bits, self._table)).to(ctx.device))

    def process_torch(self, inputs: Batch, ctx: BatchContext) -> Batch:
        return self._outputs(differentiable.map_bits(self._pad(inputs["bits"]), self._k))


class SymbolDemapper(Block):
    """Soft demapper: LLRs ln(P(b=1)/P(b=0)) and bit probabilities P(b=1) from received symbols.

    Symbols from a ``symbol_mapper`` that padded its last symbol come back as the mapper's N bits:
    the padding's LLRs are dropped.
    """

    type_name = "symbol_demapper"
    inputs = (
        Port("y", "complex64", ("S",), "received (equalised) symbols"),
        Port("no", "float32", ("S",), "noise variance per complex symbol (linear N0, or N0/|h|^2 after equalisation)"),
    )
    outputs = (
        Port("llr", "float32", ("N",), "LLR = ln(P(b=1)/P(b=0)) (Sionna's sign)"),
        Port("p1", "float32", ("N",), "P(b=1) = sigmoid(llr)"),
    )
    params = (
        _CONSTELLATION,
        Param("method", "str", "app", choices=DEMAPPING_METHODS, doc="app: exact log-sum-exp; maxlog"),
    )

    _payload_bits: int | None = None  # the mapper's N when it padded, set at validation

    def setup(self, ctx) -> None:
        self._k = CONSTELLATIONS[self.p.constellation]
        self._table = host.constellation(self._k)
        self._want_p1 = "p1" in ctx.connected_outputs

    def propagate_tags(self, input_tags: dict[str, dict], input_shapes: dict[str, Shape]) -> dict[str, dict]:
        out = super().propagate_tags(input_tags, input_shapes)
        mapped = input_tags.get("y", {}).get(tags.MAPPED_BITS)
        if mapped is not None:
            bits, constellation = mapped
            if constellation != self.p.constellation:
                raise ParameterError(f"parameter 'constellation': the symbols on port 'y' were mapped to "
                                     f"{constellation}; demapping them as {self.p.constellation} gives noise "
                                     f"(set both to the same constellation)")
            self._payload_bits = bits
        for port_tags in out.values():
            port_tags.pop(tags.MAPPED_BITS, None)
        return out

    def infer_shapes(self, input_shapes: dict[str, Shape]) -> dict[str, Shape]:
        bindings = self.bind_inputs(input_shapes)
        s = bindings.get("S", "S")
        n = s * CONSTELLATIONS[self.p.constellation] if isinstance(s, int) else "N"
        if self._payload_bits is not None:
            n = self._payload_bits
        return {"llr": (n,), "p1": (n,)}

    def process_host(self, inputs: Batch, ctx: BatchContext) -> Batch:
        no = inputs["no"]
        # A constant noise variance arrives as a stride-0 view: pass the scalar, not a materialised array.
        no_arg = float(no.reshape(-1)[0]) if no.numel() and all(st == 0 for st in no.stride()) else no.cpu().numpy()
        llr = torch.from_numpy(host.demap_llr(inputs["y"].cpu().numpy(), no_arg, self._table, self.p.method))
        llr = llr[:, :self._payload_bits].to(ctx.device)
        return {"llr": llr, "p1": torch.sigmoid(llr)} if self._want_p1 else {"llr": llr}

    def process_torch(self, inputs: Batch, ctx: BatchContext) -> Batch:
        llr = differentiable.demap_llr(inputs["y"], inputs["no"], self._k, self.p.method)[..., :self._payload_bits]
        return {"llr": llr, "p1": differentiable.bit_probabilities(llr)}
