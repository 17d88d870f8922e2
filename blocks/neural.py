"""Neural blocks: the JSCC encoder and decoder, and the receiver's task classifier.

Each loads a checkpoint by shipped name (``sdjscc_awgn``, ``deepjscc_awgn``, ``classifier_cifar10``) or
path, once, when the flowgraph is validated; it runs on the flowgraph's device. With ``checkpoint: null``
a block builds a fresh, untrained model from its architecture parameters (for training); architecture
parameters given beside a checkpoint override the checkpoint's where they change no weight shape
(``logit_scale``). They have only a torch path: in a ``host`` flowgraph they run under
``torch.inference_mode``, in a ``torch`` flowgraph gradients flow through them. Training exports the
encoder and decoder of one codec into one codec file.
"""

from __future__ import annotations

import dataclasses
import math
from functools import cached_property

from typing import TYPE_CHECKING

from sdjscc_phy.core.block import Batch, BatchContext, Block
from sdjscc_phy.core.params import Param
from sdjscc_phy.core.ports import Port, Shape
from sdjscc_phy.errors import CheckpointError, PortError, RecipeError
from sdjscc_phy.lazy import lazy_import
from sdjscc_phy.models import CLASSIFIER_ARCHITECTURES, DOWNSAMPLING, JSCC_NONLINEARITIES

if TYPE_CHECKING:
    from sdjscc_phy.models.classifier import CifarClassifier, VggClassifier
    from sdjscc_phy.models.jscc import JsccCodec

torch = lazy_import("torch")
classifier = lazy_import("sdjscc_phy.models.classifier")
jscc = lazy_import("sdjscc_phy.models.jscc")

_CODEC = Param("checkpoint", "str", "sdjscc_awgn", nullable=True,
               doc="shipped codec name (sdjscc_awgn, deepjscc_awgn) or a path; null: a fresh codec to train")
#: Architecture of a fresh codec (null: the checkpoint's, or JsccConfig's default without one).
_ARCHITECTURE = (
    Param("bpp", "float", None, low=0.0, nullable=True, unit="bits per pixel",
          doc="binary code rate: checked against the checkpoint's; a fresh codec gets code_channels = 16 x bpp"),
    Param("code_channels", "int", None, low=1, nullable=True,
          doc="fresh codec: code values per 4x4 pixels (bpp = code_channels/16 for a binary code)"),
    Param("width", "int", None, low=4, nullable=True, doc="fresh codec: channels at H/4"),
    Param("num_res_blocks", "int", None, low=0, nullable=True, doc="fresh codec: residual blocks per scale"),
    Param("logit_scale", "float", None, low=1e-6, nullable=True,
          doc="the encoder's sigmoid reads logit_scale x its logits (overrides the checkpoint's)"),
    Param("analog", "bool", None, nullable=True,
          doc="fresh codec: linear encoder head and real-valued decoder input (power_normalizer, no binarizer)"),
    Param("nonlinearity", "str", None, choices=JSCC_NONLINEARITIES, nullable=True,
          doc="fresh codec: activation after the stage convolutions (gdn: GDN / inverse GDN, then PReLU)"),
)
_WEIGHT_SHAPED = ("code_channels", "width", "num_res_blocks", "analog", "nonlinearity")


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
    """Shared checkpoint handling, fresh construction and export of the encoder and decoder blocks."""

    @cached_property
    def codec(self) -> JsccCodec:
        given = {p.name: getattr(self.p, p.name) for p in _ARCHITECTURE[1:] if getattr(self.p, p.name) is not None}
        if self.p.checkpoint is None:
            if self.p.bpp is not None and "code_channels" not in given:
                given["code_channels"] = jscc.code_channels_for_bpp(self.p.bpp)
            return jscc.JsccCodec(jscc.JsccConfig(**given))
        loaded = jscc.load_codec(self.p.checkpoint)
        changed = sorted(k for k in _WEIGHT_SHAPED if k in given and given[k] != getattr(loaded.config, k))
        if changed:
            raise CheckpointError(f"parameter '{changed[0]}' differs from checkpoint '{self.p.checkpoint}' "
                                  f"({getattr(loaded.config, changed[0])!r}); set checkpoint: null for a fresh codec")
        if "logit_scale" in given:
            loaded.encoder.logit_scale = given["logit_scale"]
            loaded.config = jscc.JsccConfig(**{**loaded.config_dict(), "logit_scale": given["logit_scale"]})
        return loaded

    @property
    def code_channels(self) -> int:
        return self.codec.config.code_channels

    def setup(self, ctx) -> None:
        # Channels-last weights let oneDNN (CPU) and cuDNN pick their NHWC kernels: ~1.5x faster on a CPU.
        self.codec.to(ctx.device, memory_format=torch.channels_last)

    @classmethod
    def export(cls, blocks: list[Block], path: str, metadata: dict) -> None:
        """One codec file: the encoder of the flowgraph's ``jscc_encoder``, the decoder of its ``jscc_decoder``."""
        halves = {type(b).type_name: b for b in blocks}
        if len(halves) != len(blocks):
            raise RecipeError("export: the flowgraph has two JSCC encoders or decoders; one codec file holds one of each")
        # logit_scale acts only in the encoder: the file keeps the encoder's
        if len({dataclasses.replace(b.codec.config, logit_scale=1.0) for b in blocks}) > 1:
            raise RecipeError("export: the JSCC encoder and decoder have different architectures")
        encoder = next((b for b in blocks if isinstance(b, JsccEncoder)), blocks[0])
        codec = jscc.JsccCodec(encoder.codec.config)
        for block in blocks:
            half = "encoder" if isinstance(block, JsccEncoder) else "decoder"
            getattr(codec, half).load_state_dict(getattr(block.codec, half).state_dict())
        jscc.export_codec(codec, path, metadata)


class JsccEncoder(_CodecBlock):
    """SD-JSCC / deep-JSCC encoder: image -> e in [0, 1] (code_channels x H/4 x W/4 values; binarize next)."""

    type_name = "jscc_encoder"
    inputs = (Port("image", "float32", (3, "H", "W"), "RGB image in [0, 1]; H and W divisible by 4"),)
    outputs = (Port("e", "float32", ("N",), "encoder output in [0, 1], N = bpp x H x W"),)
    params = (
        _CODEC,
        *_ARCHITECTURE,
    )

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"encoder": self.codec.encoder}

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
        return {"e": self.codec.encoder(inputs["image"].contiguous(memory_format=torch.channels_last)).float()}


class JsccDecoder(_CodecBlock):
    """SD-JSCC / deep-JSCC decoder: soft bits P(b=1) from the demapper (or, analog, received values) -> image in [0, 1]."""

    type_name = "jscc_decoder"
    inputs = (Port("p1", "float32", ("N",), "P(b=1) per code bit (demapper output; hard 0/1 bits also work); "
                                            "analog codecs: the received real values"),)
    outputs = (Port("image", "float32", (3, "H", "W"), "reconstructed RGB image in [0, 1]"),)
    params = (
        _CODEC,
        Param("height", "int", None, low=DOWNSAMPLING, nullable=True, unit="pixels",
              doc="image height (default: square images)"),
        *_ARCHITECTURE,
    )

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"decoder": self.codec.decoder}

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
    """A CIFAR-10 CNN: image -> class logits and predicted label.

    The task network T (``classifier_cifar10``), or the unseen receiver (``classifier_vgg_cifar10``, a VGG-style
    network no codec trained against); a checkpoint records its own architecture.
    """

    type_name = "classifier"
    inputs = (Port("image", "float32", (3, "H", "W"), "RGB image in [0, 1]"),)
    outputs = (
        Port("logits", "float32", ("C",), "class scores"),
        Port("label_hat", "int64", (), "predicted class (argmax of the logits)"),
    )
    params = (
        Param("checkpoint", "str", "classifier_cifar10", nullable=True,
              doc="shipped classifier name or a path; null: a fresh classifier to train"),
        Param("tta_flip", "bool", None, nullable=True,
              doc="average with the mirrored image (default: as trained)"),
        Param("architecture", "str", "airbench", choices=CLASSIFIER_ARCHITECTURES,
              doc="fresh classifier: airbench-style task network or VGG-style network"),
        Param("widths", "list", [64, 192, 192], doc="fresh classifier: channels of the three conv groups"),
        Param("num_classes", "int", 10, low=2, doc="fresh classifier: number of classes"),
        Param("bn_momentum", "float", 0.4, low=0.0, high=1.0, doc="fresh classifier: BatchNorm momentum"),
        Param("logit_scale", "float", 1 / 9, low=1e-6, doc="fresh classifier: multiplies the logits"),
        Param("whitening_images", "int", 5000, low=1, unit="images",
              doc="fresh classifier: training images that initialise the whitening stem"),
    )

    @cached_property
    def model(self) -> CifarClassifier | VggClassifier:
        if self.p.checkpoint is not None:
            return classifier.load_classifier(self.p.checkpoint)
        try:
            return classifier.ARCHITECTURES[self.p.architecture](
                self.p.widths, self.p.num_classes, self.p.bn_momentum, self.p.logit_scale, self.p.tta_flip is not False)
        except (TypeError, ValueError) as exc:
            raise PortError(f"parameter 'widths': {exc}") from None

    def infer_shapes(self, input_shapes: dict[str, Shape]) -> dict[str, Shape]:
        self.bind_inputs(input_shapes)
        return {"logits": (self.model.arch["num_classes"],), "label_hat": ()}

    def setup(self, ctx) -> None:
        self.model.to(ctx.device)
        if self.p.tta_flip is not None:
            self.model.tta_flip = self.p.tta_flip

    def process_torch(self, inputs: Batch, ctx: BatchContext) -> Batch:
        image = inputs["image"].contiguous(memory_format=torch.channels_last)
        # predict() runs without gradients: the torch path (training through a flowgraph) uses forward().
        logits = self.model(image) if torch.is_grad_enabled() else self.model.predict(image)
        return {"logits": logits.float(), "label_hat": logits.argmax(dim=1)}

    # -- training ---------------------------------------------------------------------------------
    def modules(self) -> dict[str, torch.nn.Module]:
        return {"model": self.model}

    def parameter_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        """``norm_bias`` (BatchNorm biases: airbench trains them with a larger lr) and ``default``."""
        norm_bias = [m.bias for m in self.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        ids = {id(p) for p in norm_bias}
        rest = [p for p in self.model.parameters() if p.requires_grad and id(p) not in ids]
        return {"norm_bias": norm_bias, "default": rest}

    def calibration_items(self) -> int:
        # only the airbench-style network has a whitening stem to set from data
        return self.p.whitening_images if self.p.checkpoint is None and self.p.architecture == "airbench" else 0

    def calibrate(self, batches: list[Batch]) -> None:
        self.model.init_whitening(torch.cat([b["image"] for b in batches]))

    @classmethod
    def export(cls, blocks: list[Block], path: str, metadata: dict) -> None:
        (block,) = blocks
        metadata = dict(metadata)
        class_names = metadata.pop("class_names", None) or [str(i) for i in range(block.model.arch["num_classes"])]
        classifier.export_classifier(block.model, path, class_names, metadata)
