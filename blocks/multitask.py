"""Multi-task JSCC blocks: a transmitter with an SNR-driven gate, and a receiver that outputs both the
recovered image and class scores computed in the received feature space (no reconstruction needed).

The model and its design choices: :mod:`sdjscc_phy.models.multitask`. The transmitter is assumed to
know the channel SNR (``snr_db``, e.g. fed back by the receiver): its gate picks the code channels to
send. Frames keep a fixed size through the mapper and channel; the transmitter's ``mask`` tells the
receiver which bits were not sent, and those are erased (P(b=1) = 0.5) before decoding, which equals
not sending them (the channel noise is independent per symbol). ``num_symbols`` counts only the symbols
actually sent: connect it to a metric sink's ``num_symbols`` (metric ``symbols_per_image``), and
``num_bits`` to its ``num_bits`` (metric ``bpp``).

Training (``checkpoint: null`` builds a fresh model from the architecture parameters, optionally with the
encoder and decoder of a JSCC codec, ``init_codec``): the transmitter trains the encoder and the gate, the
receiver the decoder and the feature head; the receiver refits its class subspaces on training items
(its ``label`` port) before every validation pass and the export, which writes one multi-task file.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from sdjscc_phy.blocks.neural import image_size_of_code
from sdjscc_phy.core.block import Batch, BatchContext, Block
from sdjscc_phy.core.params import Param
from sdjscc_phy.core.ports import Port, Shape
from sdjscc_phy.errors import CheckpointError, PortError, RecipeError
from sdjscc_phy.lazy import lazy_import
from sdjscc_phy.models import DOWNSAMPLING, MULTITASK_CLASSIFIERS
from sdjscc_phy.phy.choices import CONSTELLATIONS

if TYPE_CHECKING:
    from sdjscc_phy.models.multitask import MultitaskJscc

torch = lazy_import("torch")
jscc = lazy_import("sdjscc_phy.models.jscc")
multitask = lazy_import("sdjscc_phy.models.multitask")

_CHECKPOINT = Param("checkpoint", "str", "multitask_gated_awgn", nullable=True,
                    doc="shipped multi-task codec name (multitask_awgn, multitask_gated_awgn) or a path; "
                        "null: a fresh model to train")
_ARCHITECTURE = (
    Param("architecture", "mapping", {}, doc="fresh model: MultitaskConfig fields, e.g. {code_channels: 4, gated: true}"),
    Param("init_codec", "str", None, nullable=True,
          doc="fresh model: start from this JSCC codec (encoder, decoder) or multi-task codec (every part the "
              "architectures share, e.g. a gated model from an ungated one); shipped name or path"),
)


#: the multi-task model's parts the transmitter trains (the receiver trains the others)
TRANSMITTER_PARTS = ("encoder.", "gate.", "class_encoder.")


class _MultitaskBlock(Block):
    """Shared checkpoint handling, fresh construction and export of the multi-task transmitter and receiver."""

    def check_params(self) -> list[str]:
        unknown = sorted(set(self.p.architecture) - set(multitask.MultitaskConfig.__dataclass_fields__))
        if unknown:
            return [f"parameter 'architecture': unknown field '{unknown[0]}' "
                    f"(fields: {', '.join(multitask.MultitaskConfig.__dataclass_fields__)})"]
        try:
            multitask.MultitaskConfig(**self.p.architecture)
        except (TypeError, ValueError) as err:  # a field's value out of its choices (classifier, gate)
            return [f"parameter 'architecture': {err}"]
        return []

    @cached_property
    def model(self) -> MultitaskJscc:
        if self.p.checkpoint is not None:
            return multitask.load_multitask(self.p.checkpoint)
        model = multitask.MultitaskJscc(multitask.MultitaskConfig(**self.p.architecture))
        if self.p.init_codec:
            self._initialise(model, self.p.init_codec)
        return model

    @staticmethod
    def _initialise(model: MultitaskJscc, name: str) -> None:
        """Copy the parts ``model`` shares with the codec ``name``: a JSCC codec's encoder and decoder, or
        a multi-task codec's every part (the ones it lacks, e.g. a gate, keep their fresh start)."""
        try:
            source = jscc.load_codec(name)
        except CheckpointError:  # not a JSCC codec: a multi-task one (or the multi-task loader's error)
            source = multitask.load_multitask(name)
        state = source.state_dict()
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:
            raise PortError(f"parameter 'init_codec': '{name}' does not match the architecture: "
                            f"{str(exc).strip().splitlines()[-1].strip()}") from None
        lost = unexpected + [k for k in missing if k.startswith(("encoder.", "decoder."))]
        if lost:
            raise PortError(f"parameter 'init_codec': '{name}' does not match the architecture: "
                            f"'{lost[0]}' has no counterpart")

    @property
    def code_channels(self) -> int:
        return self.model.config.code_channels

    def setup(self, ctx) -> None:
        self.model.to(ctx.device)

    @classmethod
    def export(cls, blocks: list[Block], path: str, metadata: dict) -> None:
        """One multi-task file: encoder and gate of the transmitter, decoder, head and class subspaces of the receiver."""
        by_type = {type(b).type_name: b for b in blocks}
        if len(by_type) != len(blocks) or len(by_type) != 2:
            raise RecipeError("export: a multi-task file needs exactly one multitask_encoder and one multitask_decoder")
        tx, rx = by_type["multitask_encoder"].model, by_type["multitask_decoder"].model
        if tx.config != rx.config:
            raise RecipeError("export: the multi-task transmitter and receiver have different architectures")
        model = multitask.MultitaskJscc(tx.config)
        state = rx.state_dict()
        state.update({k: v for k, v in tx.state_dict().items() if k.startswith(TRANSMITTER_PARTS)})
        model.load_state_dict(state)
        multitask.export_multitask(model, path, metadata)


class MultitaskEncoder(_MultitaskBlock):
    """Multi-task JSCC transmitter: image -> e in [0, 1] (binarize next) and the mask of bits it sends."""

    type_name = "multitask_encoder"
    inputs = (
        Port("image", "float32", (3, "H", "W"), "RGB image in [0, 1]; H and W divisible by 4"),
        Port("snr_db", "float32", (), "per-item channel Es/N0 in dB the gate reads (default: the snr_db parameter)",
             optional=True),
    )
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
        Param("train_gate", "bool", True,
              doc="training: false holds the gate fixed while the encoder trains (the codec adapts to the "
                  "code channels the gate drops)"),
        Param("relaxed_gate", "bool", False,
              doc="training steps (not validation): the mask is the gate's sigmoid in (0, 1), attenuating a "
                  "channel towards erasure, instead of the hard 0/1 with the sigmoid's gradient; the gate then "
                  "follows the exact gradient of the relaxed loss (bits sent: the mask's sum, rounded)"),
        Param("constellation", "str", "qam16", choices=tuple(CONSTELLATIONS),
              doc="the link's constellation (counts symbols from bits)"),
        *_ARCHITECTURE,
    )

    def modules(self) -> dict[str, torch.nn.Module]:
        parts = {"gate": self.model.gate, "class_encoder": self.model.class_encoder}
        return {"encoder": self.model.encoder, **{k: m for k, m in parts.items() if m is not None}}

    def parameter_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        """``default`` and ``gate`` (its lr is scaled by ``optimizer.group_scales.gate``: the gate's few
        weights must move by O(1) within one epoch to cross the threshold); no ``gate`` group when
        ``train_gate`` is false, so the optimiser leaves the gate as it was loaded."""
        groups = {"default": list(self.model.encoder.parameters())}
        if self.model.class_encoder is not None:
            groups["default"] += list(self.model.class_encoder.parameters())
        if self.model.gate is not None and self.p.train_gate:
            groups["gate"] = list(self.model.gate.parameters())
        return groups

    def infer_shapes(self, input_shapes: dict[str, Shape]) -> dict[str, Shape]:
        _, height, width = input_shapes["image"]
        for name, size in (("H", height), ("W", width)):
            if isinstance(size, int) and size % DOWNSAMPLING:
                raise PortError(f"input port 'image': {name} = {size} is not divisible by {DOWNSAMPLING}")
        if isinstance(height, int) and isinstance(width, int):
            bits_per_channel = (height // DOWNSAMPLING) * (width // DOWNSAMPLING)
            bits_per_symbol = CONSTELLATIONS[self.p.constellation]
            if bits_per_channel % bits_per_symbol:
                raise PortError(f"a code channel's {bits_per_channel} bits do not fill {self.p.constellation} symbols")
            class_bits = self.model.config.class_bits
            if class_bits > bits_per_channel or class_bits % bits_per_symbol:
                raise PortError(f"architecture class_bits = {class_bits} must fill whole {self.p.constellation} "
                                f"symbols within one code channel of {bits_per_channel} bits")
            n = self.code_channels * bits_per_channel
        else:
            n = "N"
        return {"e": (n,), "mask": (n,), "num_bits": (), "num_symbols": ()}

    def process_torch(self, inputs: Batch, ctx: BatchContext) -> Batch:
        image = inputs["image"]
        e = self.model.encode(image)
        snr_db = inputs["snr_db"] if "snr_db" in inputs else self.p.snr_db
        channel_mask = self.model.channel_mask(snr_db, image.shape[0], gate=self.p.gate,
                                                 relaxed=self.p.relaxed_gate and ctx.training)
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
        Port("label", "int64", (), "true class: only read when training refits the class subspaces", optional=True),
    )
    outputs = (
        Port("image", "float32", (3, "H", "W"), "recovered RGB image in [0, 1]"),
        Port("z", "float32", ("D",), "unit-norm received features (mcr2_loss input)"),
        Port("logits", "float32", ("C",), "class scores: the linear classifier's, or -||z - U_j U_j^T z||^2 "
             "(nearest class subspace)"),
        Port("label_hat", "int64", (), "predicted class (argmax of the logits)"),
    )
    params = (
        _CHECKPOINT,
        Param("height", "int", None, low=DOWNSAMPLING, nullable=True, unit="pixels",
              doc="image height (default: square images)"),
        *_ARCHITECTURE,
        Param("classifier", "str", None, nullable=True, choices=MULTITASK_CLASSIFIERS,
              doc="class scores from: null = the codec's own classifier; subspace = nearest class subspace "
                  "(the paper's); linear = the linear layer trained with cross-entropy"),
        Param("stats_images", "int", 5000, low=1, unit="images",
              doc="training: items whose received features fit the class subspaces"),
    )
    recalibrate = True

    def modules(self) -> dict[str, torch.nn.Module]:
        parts = {"linear": self.model.linear, "class_reader": self.model.class_reader}
        return {"decoder": self.model.decoder, "head": self.model.head,
                **{k: m for k, m in parts.items() if m is not None}}

    def calibration_items(self) -> int:
        return self.p.stats_images

    def calibrate(self, batches: list[Batch]) -> None:
        if any("label" not in b for b in batches):
            raise PortError("input port 'label': refitting the class subspaces needs the true labels")
        z = torch.cat([self.model.unit(self._features(b)[1]) for b in batches]).float()
        self.model.fit_class_statistics(z, torch.cat([b["label"] for b in batches]))

    def _features(self, inputs: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(erased P(b=1), features h before normalisation) of one batch."""
        p1 = inputs["p1"].float()
        height, width = image_size_of_code(p1.shape[1], self.code_channels, self.p.height)
        p1 = self.model.erase(p1, inputs.get("mask"))
        return p1, self.model.embed(p1, height, width)

    def infer_shapes(self, input_shapes: dict[str, Shape]) -> dict[str, Shape]:
        self.bind_inputs(input_shapes)
        if self.p.classifier == "linear" and self.model.linear is None:
            raise PortError("parameter 'classifier': the codec has no linear classifier (it was trained for "
                            "the subspace receiver)")
        (num_bits,) = input_shapes["p1"]
        size = image_size_of_code(num_bits, self.code_channels, self.p.height) if isinstance(num_bits, int) \
            else ("H", "W")
        return {"image": (3, *size), "z": (self.model.config.feature_dim,),
                "logits": (self.model.config.num_classes,), "label_hat": ()}

    def process_torch(self, inputs: Batch, ctx: BatchContext) -> Batch:
        p1, h = self._features(inputs)
        height, width = image_size_of_code(p1.shape[1], self.code_channels, self.p.height)
        logits = self.model.scores(h, self.p.classifier)
        return {"image": self.model.decoder(p1, height, width), "z": self.model.unit(h), "logits": logits,
                "label_hat": logits.argmax(1)}
