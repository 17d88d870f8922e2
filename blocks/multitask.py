"""Multi-task JSCC blocks: a transmitter with an SNR-driven gate, and a receiver that outputs both the
recovered image and class scores computed in the received feature space (no reconstruction needed).

The model and its design choices: :mod:`sdjscc_phy.models.multitask`. The transmitter is assumed to
know the channel SNR (``snr_db``, e.g. fed back by the receiver): its gate picks the code channels to
send. Frames keep a fixed size through the mapper and channel; the transmitter's ``mask`` tells the
receiver which bits were not sent, and those are erased (P(b=1) = 0.5) before decoding, which equals
not sending them (the channel noise is independent per symbol). ``num_symbols`` counts only the symbols
actually sent: connect it to a metric sink's ``num_symbols`` (metric ``symbols_per_image``), and
``num_bits`` to its ``num_bits`` (metric ``bpp``).
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from sdjscc_phy.blocks.neural import image_size_of_code
from sdjscc_phy.core.block import Batch, BatchContext, Block
from sdjscc_phy.core.params import Param
from sdjscc_phy.core.ports import Port, Shape
from sdjscc_phy.errors import PortError
from sdjscc_phy.lazy import lazy_import
from sdjscc_phy.models import DOWNSAMPLING
from sdjscc_phy.phy.choices import CONSTELLATIONS

if TYPE_CHECKING:
    from sdjscc_phy.models.multitask import MultitaskJscc

multitask = lazy_import("sdjscc_phy.models.multitask")

_CHECKPOINT = Param("checkpoint", "str", "multitask_gated_awgn",
                    doc="shipped multi-task codec name (multitask_awgn, multitask_gated_awgn) or a path")


class _MultitaskBlock(Block):
    """Shared checkpoint handling of the multi-task transmitter and receiver."""

    @cached_property
    def model(self) -> MultitaskJscc:
        return multitask.load_multitask(self.p.checkpoint)

    @property
    def code_channels(self) -> int:
        return self.model.config.code_channels

    def setup(self, ctx) -> None:
        self.model.to(ctx.device)


class MultitaskEncoder(_MultitaskBlock):
    """Multi-task JSCC transmitter: image -> e in [0, 1] (binarize next) and the mask of bits it sends."""

    type_name = "multitask_encoder"
    inputs = (Port("image", "float32", (3, "H", "W"), "RGB image in [0, 1]; H and W divisible by 4"),)
    outputs = (
        Port("e", "float32", ("N",), "encoder output in [0, 1], N = bpp x H x W (every code channel)"),
        Port("mask", "float32", ("N",), "1 where the bit is sent, 0 where the gate pruned its code channel"),
        Port("num_bits", "int64", (), "bits sent for this image"),
        Port("num_symbols", "int64", (), "complex channel symbols sent for this image"),
    )
    params = (
        _CHECKPOINT,
        Param("snr_db", "float", 10.0, unit="dB", doc="channel Es/N0 the transmitter knows; drives the gate"),
        Param("gate", "bool", True, doc="false: send every code channel even if the codec has a gate"),
        Param("constellation", "str", "qam16", choices=tuple(CONSTELLATIONS),
              doc="the link's constellation (counts symbols from bits)"),
    )

    def infer_shapes(self, input_shapes: dict[str, Shape]) -> dict[str, Shape]:
        _, height, width = input_shapes["image"]
        for name, size in (("H", height), ("W", width)):
            if isinstance(size, int) and size % DOWNSAMPLING:
                raise PortError(f"input port 'image': {name} = {size} is not divisible by {DOWNSAMPLING}")
        if isinstance(height, int) and isinstance(width, int):
            bits_per_channel = (height // DOWNSAMPLING) * (width // DOWNSAMPLING)
            if bits_per_channel % CONSTELLATIONS[self.p.constellation]:
                raise PortError(f"a code channel's {bits_per_channel} bits do not fill {self.p.constellation} symbols")
            n = self.code_channels * bits_per_channel
        else:
            n = "N"
        return {"e": (n,), "mask": (n,), "num_bits": (), "num_symbols": ()}

    def process_torch(self, inputs: Batch, ctx: BatchContext) -> Batch:
        image = inputs["image"]
        e = self.model.encoder(image)
        channel_mask = self.model.channel_mask(self.p.snr_db, image.shape[0], gate=self.p.gate)
        mask = self.model.bit_mask(channel_mask, e.shape[1])
        num_bits = mask.detach().sum(1).round().long()
        return {"e": e, "mask": mask, "num_bits": num_bits,
                "num_symbols": num_bits // CONSTELLATIONS[self.p.constellation]}


class MultitaskDecoder(_MultitaskBlock):
    """Multi-task JSCC receiver: soft bits P(b=1) -> recovered image, and class scores from the received
    features (nearest class subspace)."""

    type_name = "multitask_decoder"
    inputs = (
        Port("p1", "float32", ("N",), "P(b=1) per code bit (demapper output)"),
        Port("mask", "float32", ("N",), "transmitter's mask: 0 = bit not sent (erased); default: all sent",
             optional=True),
    )
    outputs = (
        Port("image", "float32", (3, "H", "W"), "recovered RGB image in [0, 1]"),
        Port("logits", "float32", ("C",), "class scores -||z - U_j U_j^T z||^2 (nearest class subspace)"),
        Port("label_hat", "int64", (), "predicted class (argmax of the logits)"),
    )
    params = (
        _CHECKPOINT,
        Param("height", "int", None, low=DOWNSAMPLING, nullable=True, unit="pixels",
              doc="image height (default: square images)"),
    )

    def infer_shapes(self, input_shapes: dict[str, Shape]) -> dict[str, Shape]:
        self.bind_inputs(input_shapes)
        (num_bits,) = input_shapes["p1"]
        size = image_size_of_code(num_bits, self.code_channels, self.p.height) if isinstance(num_bits, int) \
            else ("H", "W")
        return {"image": (3, *size), "logits": (self.model.config.num_classes,), "label_hat": ()}

    def process_torch(self, inputs: Batch, ctx: BatchContext) -> Batch:
        p1 = inputs["p1"].float()
        height, width = image_size_of_code(p1.shape[1], self.code_channels, self.p.height)
        p1 = self.model.erase(p1, inputs.get("mask"))
        logits = self.model.logits(self.model.features(p1, height, width))
        return {"image": self.model.decoder(p1, height, width), "logits": logits, "label_hat": logits.argmax(1)}
