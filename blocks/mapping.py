"""Symbol mapper and soft demapper: Gray QAM with unit average energy (Sionna's labelling)."""

from __future__ import annotations

from sdjscc_phy.core.block import Batch, BatchContext, Block
from sdjscc_phy.core.params import Param
from sdjscc_phy.core.ports import Port, Shape
from sdjscc_phy.errors import PortError
from sdjscc_phy.lazy import lazy_import
from sdjscc_phy.phy.choices import CONSTELLATIONS, DEMAPPING_METHODS

torch = lazy_import("torch")
host = lazy_import("sdjscc_phy.kernels.mapping")
differentiable = lazy_import("sdjscc_phy.phy.mapping")
_CONSTELLATION = Param("constellation", "str", "qam16", choices=tuple(CONSTELLATIONS),
                       doc="Gray-labelled, Es = 1 (bpsk, qpsk, qam16, qam64)")


class SymbolMapper(Block):
    """Maps groups of bits to constellation points (k bits per complex symbol)."""

    type_name = "symbol_mapper"
    inputs = (Port("bits", "bits", ("N",), "bits; float P(b=1) on the torch path gives the mean symbol"),)
    outputs = (Port("symbols", "complex64", ("S",), "S = N / bits per symbol, unit average energy"),)
    params = (_CONSTELLATION,)

    def setup(self, ctx) -> None:
        self._k = CONSTELLATIONS[self.p.constellation]
        self._table = host.constellation(self._k)

    def infer_shapes(self, input_shapes: dict[str, Shape]) -> dict[str, Shape]:
        (n,) = input_shapes["bits"]
        k = CONSTELLATIONS[self.p.constellation]
        if isinstance(n, int) and n % k:
            raise PortError(f"input port 'bits': {n} bits do not fill {self.p.constellation} symbols of {k} bits")
        return {"symbols": (n // k if isinstance(n, int) else "S",)}

    def process_host(self, inputs: Batch, ctx: BatchContext) -> Batch:
        bits = inputs["bits"].to(torch.uint8).cpu().numpy()
        return {"symbols": torch.from_numpy(host.map_bits(bits, self._table)).to(ctx.device)}

    def process_torch(self, inputs: Batch, ctx: BatchContext) -> Batch:
        return {"symbols": differentiable.map_bits(inputs["bits"], self._k)}


class SymbolDemapper(Block):
    """Soft demapper: LLRs ln(P(b=1)/P(b=0)) and bit probabilities P(b=1) from received symbols."""

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

    def setup(self, ctx) -> None:
        self._k = CONSTELLATIONS[self.p.constellation]
        self._table = host.constellation(self._k)
        self._want_p1 = "p1" in ctx.connected_outputs

    def infer_shapes(self, input_shapes: dict[str, Shape]) -> dict[str, Shape]:
        bindings = self.bind_inputs(input_shapes)
        s = bindings.get("S", "S")
        n = s * CONSTELLATIONS[self.p.constellation] if isinstance(s, int) else "N"
        return {"llr": (n,), "p1": (n,)}

    def process_host(self, inputs: Batch, ctx: BatchContext) -> Batch:
        no = inputs["no"]
        # A constant noise variance arrives as a stride-0 view: pass the scalar, not a materialised array.
        no_arg = float(no.reshape(-1)[0]) if no.numel() and all(st == 0 for st in no.stride()) else no.cpu().numpy()
        llr = torch.from_numpy(host.demap_llr(inputs["y"].cpu().numpy(), no_arg, self._table, self.p.method))
        llr = llr.to(ctx.device)
        return {"llr": llr, "p1": torch.sigmoid(llr)} if self._want_p1 else {"llr": llr}

    def process_torch(self, inputs: Batch, ctx: BatchContext) -> Batch:
        llr = differentiable.demap_llr(inputs["y"], inputs["no"], self._k, self.p.method)
        return {"llr": llr, "p1": differentiable.bit_probabilities(llr)}
