"""Neural blocks: the JSCC encoder and decoder, and the receiver's task classifier.

Each loads a checkpoint by shipped name (``sdjscc_awgn``, ``deepjscc_awgn``, ``classifier_cifar10``) or
path, once, when the flowgraph is validated; it runs on the flowgraph's device. They have only a torch
path: in a ``host`` flowgraph they run under ``torch.inference_mode``, in a ``torch`` flowgraph
gradients flow through them.
"""

from __future__ import annotations

import math
from functools import cached_property

from typing import TYPE_CHECKING

from sdjscc_phy.core.block import Batch, BatchContext, Block
from sdjscc_phy.core.params import Param
from sdjscc_phy.core.ports import Port, Shape
from sdjscc_phy.errors import PortError
from sdjscc_phy.lazy import lazy_import
from sdjscc_phy.models import DOWNSAMPLING

if TYPE_CHECKING:
    from sdjscc_phy.models.jscc import JsccCodec

torch = lazy_import("torch")
classifier = lazy_import("sdjscc_phy.models.classifier")
jscc = lazy_import("sdjscc_phy.models.jscc")

_CODEC = Param("checkpoint", "str", "sdjscc_awgn", doc="shipped codec name (sdjscc_awgn, deepjscc_awgn) or a path")


def image_size_of_code(num_bits: int, code_channels: int, height: int | None) -> tuple[int, int]:
    """(H, W) of the image whose code has ``num_bits`` bits in ``code_channels`` channels of an
    (H/4) x (W/4) grid; ``height`` None means a square image. PortError naming port 'p1' otherwise."""
    cells = num_bits // code_channels
    rows = height // DOWNSAMPLING if height else math.isqrt(cells)
    if num_bits % code_channels or rows == 0 or cells % rows:
        raise PortError(f"input port 'p1': {num_bits} bits are not {code_channels} code channels "
                        f"of a {'square ' if not height else ''}grid")
    return rows * DOWNSAMPLING, cells // rows * DOWNSAMPLING


class _CodecBlock(Block):
    """Shared checkpoint handling of the encoder and decoder blocks."""

    @cached_property
    def codec(self) -> JsccCodec:
        return jscc.load_codec(self.p.checkpoint)

    @property
    def code_channels(self) -> int:
        return self.codec.config.code_channels

    def setup(self, ctx) -> None:
        self.codec.to(ctx.device)


class JsccEncoder(_CodecBlock):
    """SD-JSCC / deep-JSCC encoder: image -> e in [0, 1] (code_channels x H/4 x W/4 values; binarize next)."""

    type_name = "jscc_encoder"
    inputs = (Port("image", "float32", (3, "H", "W"), "RGB image in [0, 1]; H and W divisible by 4"),)
    outputs = (Port("e", "float32", ("N",), "encoder output in [0, 1], N = bpp x H x W"),)
    params = (
        _CODEC,
        Param("bpp", "float", None, low=0.0, nullable=True, unit="bits per pixel",
              doc="if set, checked against the checkpoint's rate"),
    )

    def infer_shapes(self, input_shapes: dict[str, Shape]) -> dict[str, Shape]:
        _, height, width = input_shapes["image"]
        for name, size in (("H", height), ("W", width)):
            if isinstance(size, int) and size % DOWNSAMPLING:
                raise PortError(f"input port 'image': {name} = {size} is not divisible by {DOWNSAMPLING}")
        rate = self.code_channels / DOWNSAMPLING**2
        if self.p.bpp is not None and not math.isclose(self.p.bpp, rate):
            raise PortError(f"parameter 'bpp' is {self.p.bpp} but checkpoint '{self.p.checkpoint}' codes {rate} bpp")
        if isinstance(height, int) and isinstance(width, int):
            return {"e": (self.code_channels * (height // DOWNSAMPLING) * (width // DOWNSAMPLING),)}
        return {"e": ("N",)}

    def process_torch(self, inputs: Batch, ctx: BatchContext) -> Batch:
        return {"e": self.codec.encoder(inputs["image"])}


class JsccDecoder(_CodecBlock):
    """SD-JSCC / deep-JSCC decoder: soft bits P(b=1) from the demapper -> image in [0, 1]."""

    type_name = "jscc_decoder"
    inputs = (Port("p1", "float32", ("N",), "P(b=1) per code bit (demapper output; hard 0/1 bits also work)"),)
    outputs = (Port("image", "float32", (3, "H", "W"), "reconstructed RGB image in [0, 1]"),)
    params = (
        _CODEC,
        Param("height", "int", None, low=DOWNSAMPLING, nullable=True, unit="pixels",
              doc="image height (default: square images)"),
    )

    def _image_size(self, num_bits: int) -> tuple[int, int]:
        return image_size_of_code(num_bits, self.code_channels, self.p.height)

    def infer_shapes(self, input_shapes: dict[str, Shape]) -> dict[str, Shape]:
        (num_bits,) = input_shapes["p1"]
        if not isinstance(num_bits, int):
            return {"image": (3, "H", "W")}
        return {"image": (3, *self._image_size(num_bits))}

    def process_torch(self, inputs: Batch, ctx: BatchContext) -> Batch:
        p1 = inputs["p1"].float()
        height, width = self._image_size(p1.shape[1])
        return {"image": self.codec.decoder(p1, height, width)}


class Classifier(Block):
    """The downstream task network T (CIFAR-10 CNN): image -> class logits and predicted label."""

    type_name = "classifier"
    inputs = (Port("image", "float32", (3, "H", "W"), "RGB image in [0, 1]"),)
    outputs = (
        Port("logits", "float32", ("C",), "class scores"),
        Port("label_hat", "int64", (), "predicted class (argmax of the logits)"),
    )
    params = (
        Param("checkpoint", "str", "classifier_cifar10", doc="shipped classifier name or a path"),
        Param("tta_flip", "bool", None, nullable=True,
              doc="average with the mirrored image (default: as trained)"),
    )

    @cached_property
    def model(self):
        return classifier.load_classifier(self.p.checkpoint)

    def infer_shapes(self, input_shapes: dict[str, Shape]) -> dict[str, Shape]:
        self.bind_inputs(input_shapes)
        return {"logits": (self.model.arch["num_classes"],), "label_hat": ()}

    def setup(self, ctx) -> None:
        self.model.to(ctx.device)
        if self.p.tta_flip is not None:
            self.model.tta_flip = self.p.tta_flip

    def process_torch(self, inputs: Batch, ctx: BatchContext) -> Batch:
        image = inputs["image"]
        # predict() runs without gradients: the torch path (training through a flowgraph) uses forward().
        logits = self.model(image) if torch.is_grad_enabled() else self.model.predict(image)
        return {"logits": logits.float(), "label_hat": logits.argmax(dim=1)}
