"""Binarizer: the SD-JSCC quantizer (paper eq. 14) with a straight-through gradient."""

from __future__ import annotations

from sdjscc_phy.core.block import Batch, BatchContext, Block
from sdjscc_phy.core.params import Param
from sdjscc_phy.core.ports import Port
from sdjscc_phy.lazy import lazy_import

torch = lazy_import("torch")
quantization = lazy_import("sdjscc_phy.phy.quantization")


class Binarizer(Block):
    """Hard 0/1 quantizer of encoder outputs in [0, 1] (eq. 14); straight-through on the torch path."""

    type_name = "binarizer"
    host_path_on_device = True  # torch indexing/comparison: runs where the flowgraph's device is
    inputs = (Port("e", "float32", ("N",), "encoder output, values in [0, 1]"),)
    outputs = (Port("bits", "bits", ("N",), "q = 1 if e > threshold else 0"),)
    params = (Param("threshold", "float", 0.5, low=0.0, high=1.0, doc="decision threshold (paper: 0.5)"),)

    def process_host(self, inputs: Batch, ctx: BatchContext) -> Batch:
        return {"bits": (inputs["e"] > self.p.threshold).to(torch.uint8)}

    def process_torch(self, inputs: Batch, ctx: BatchContext) -> Batch:
        return {"bits": quantization.binarize_straight_through(inputs["e"], self.p.threshold)}
