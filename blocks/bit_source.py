"""Random bit source for link-level simulations."""

from __future__ import annotations

from sdjscc_phy.core.block import Batch, BatchContext, Block
from sdjscc_phy.core.params import Param
from sdjscc_phy.core.ports import Port, Shape
from sdjscc_phy.lazy import lazy_import

torch = lazy_import("torch")


class BitSource(Block):
    """Independent, equiprobable random bits, seeded by the flowgraph seed (unbounded source)."""

    type_name = "bit_source"
    outputs = (Port("bits", "bits", ("N",), "random 0/1 bits"),)
    params = (Param("num_bits", "int", 1024, low=1, unit="bits", doc="bits per item"),)

    def infer_shapes(self, input_shapes: dict[str, Shape]) -> dict[str, Shape]:
        return {"bits": (self.p.num_bits,)}

    def process_host(self, inputs: Batch, ctx: BatchContext) -> Batch:
        bits = ctx.own_rows(lambda n: ctx.batch_rng.integers(0, 2, size=(n, self.p.num_bits), dtype="uint8"))
        bits = torch.from_numpy(bits).to(ctx.device)
        return {"bits": bits if ctx.path == "host" else bits.float()}
