"""Loss sinks (see :mod:`sdjscc_phy.core.loss`): the terms a training flowgraph minimises.

``mse_loss`` (deep JSCC, paper eq. 5), ``semantic_loss`` (SD-JSCC's GSW-weighted feature loss of a frozen
classifier, eq. 13 with the weights of eqs. 8-10), ``contrastive_loss`` (NT-Xent of CL-JSCC), ``mcr2_loss``
(the multi-task feature loss, -ΔR), ``rate_loss`` (the multi-task gate's penalty: the fraction of bits
sent, optionally priced at the channel's capacity), ``cross_entropy`` (classifier training, or distillation from a teacher's scores), ``detection_loss``
(CenterNet's loss, detector training) and ``detector_feature_loss`` (a frozen detector's feature loss, codec
fine-tuning for detection).
"""

from __future__ import annotations

from functools import cached_property

from sdjscc_phy.core.block import Batch, BatchContext
from sdjscc_phy.core.loss import WEIGHT, LossBlock
from sdjscc_phy.core.params import Param
from sdjscc_phy.core.ports import Port, Shape
from sdjscc_phy.errors import CheckpointError, PortError
from sdjscc_phy.lazy import lazy_import
from sdjscc_phy.models import FEATURE_LAYERS, GSW_MODES

torch = lazy_import("torch")
F = lazy_import("torch.nn.functional")
classifier = lazy_import("sdjscc_phy.models.classifier")
detector = lazy_import("sdjscc_phy.models.detector")
gsw = lazy_import("sdjscc_phy.training.gsw")
losses = lazy_import("sdjscc_phy.training.losses")
augment = lazy_import("sdjscc_phy.data.augment")

_IMAGE = Port("image", "float32", (3, "H", "W"), "original image in [0, 1] (the target)")
_IMAGE_HAT = Port("image_hat", "float32", (3, "H", "W"), "received image in [0, 1]")
_LABEL = Port("label", "int64", (), "true class")
_CLASSIFIER = Param("classifier", "str", "classifier_cifar10", doc="frozen task network: shipped name or a path")


class MseLoss(LossBlock):
    """Mean squared error between the received and the original image (deep JSCC, eq. 5)."""

    type_name = "mse_loss"
    inputs = (_IMAGE, _IMAGE_HAT)
    params = (WEIGHT,)

    def loss(self, inputs: Batch, ctx: BatchContext) -> torch.Tensor:
        return F.mse_loss(inputs["image_hat"].float(), inputs["image"].float())


class CrossEntropy(LossBlock):
    """Cross-entropy of class scores against the true labels (classifier training), or against a teacher's
    softened class distribution (knowledge distillation, Hinton et al. 2015).

    With ``teacher_logits`` connected instead of ``label``, the loss is T² · KL(softmax(t/T) ‖ softmax(s/T))
    of teacher scores t and student scores s at temperature T: the cross-entropy against the soft targets
    less their (constant) entropy, so a student matching its teacher scores 0. The T² keeps the gradient's
    size independent of T.
    """

    type_name = "cross_entropy"
    inputs = (Port("logits", "float32", ("C",), "class scores"),
              Port("label", "int64", (), "true class (hard targets)", optional=True),
              Port("teacher_logits", "float32", ("C",), "a teacher's class scores (soft targets, distillation)",
                   optional=True))
    params = (WEIGHT, Param("label_smoothing", "float", 0.0, low=0.0, high=1.0, doc="torch's label smoothing"),
              Param("temperature", "float", 1.0, low=1e-6, doc="distillation: softmax temperature T of both "
                    "score vectors"))

    def infer_shapes(self, input_shapes: dict[str, Shape]) -> dict[str, Shape]:
        targets = [name for name in ("label", "teacher_logits") if name in input_shapes]
        if len(targets) != 1:
            raise PortError("input ports 'label' and 'teacher_logits': connect exactly one (the targets), "
                            f"got {' and '.join(targets) or 'neither'}")
        return super().infer_shapes(input_shapes)  # binds C: the teacher's classes must be the student's

    def loss(self, inputs: Batch, ctx: BatchContext) -> torch.Tensor:
        logits = inputs["logits"].float()
        if "label" in inputs:
            return F.cross_entropy(logits, inputs["label"], label_smoothing=self.p.label_smoothing)
        t = self.p.temperature
        return F.kl_div(F.log_softmax(logits / t, dim=1), F.log_softmax(inputs["teacher_logits"].float() / t, dim=1),
                        log_target=True, reduction="batchmean") * t * t


class _FrozenNetworkLoss(LossBlock):
    """Shared loading of the frozen task network whose features a loss compares."""

    def load_network(self):
        raise NotImplementedError

    @cached_property
    def network(self):
        return self.load_network().requires_grad_(False)

    def infer_shapes(self, input_shapes: dict[str, Shape]) -> dict[str, Shape]:
        self.bind_inputs(input_shapes)
        self.network  # noqa: B018  (a bad checkpoint is a validation error, not a training-time one)
        return {}

    def setup(self, ctx) -> None:
        super().setup(ctx)
        self.network.to(ctx.device)


class _FrozenClassifierLoss(_FrozenNetworkLoss):
    def load_network(self):
        return _task_network("classifier", self.p.classifier)

    @property
    def classifier(self):
        return self.network


def _task_network(param: str, name: str):
    """A frozen task-style classifier a loss reads; only that architecture has the named feature layers
    (the VGG-style one is the unseen receiver, which no loss may read)."""
    try:
        network = classifier.load_classifier(name)
    except CheckpointError as err:
        raise PortError(f"parameter '{param}': {err}") from None
    if not isinstance(network, classifier.CifarClassifier):
        raise PortError(f"parameter '{param}': '{name}' is a {type(network).__name__}; "
                        f"a loss reads the feature layers of the task network (e.g. classifier_cifar10)")
    return network


class SemanticLoss(_FrozenClassifierLoss):
    """SD-JSCC's semantic loss (eq. 13): GSW-weighted squared distance of the frozen classifier's feature maps.

    The weights W' = r softmax(tau W) (eq. 10) come from the classifier's gradients (eqs. 8-9, ``gsw_mode``):
    fitted once on ``gsw_images`` training items before training, or per batch (``per_batch``).
    With ``more_classifiers`` the loss is the mean of this loss over several frozen networks, each with
    its own weights (an ensemble: the codec cannot fit one network's quirks).
    """

    type_name = "semantic_loss"
    inputs = (_IMAGE, _IMAGE_HAT, Port("label", "int64", (), "true class (GSW modes true_class, per batch)",
                                      optional=True))
    params = (
        WEIGHT, _CLASSIFIER,
        Param("layer", "str", "block2", choices=FEATURE_LAYERS, doc="classifier layer whose feature maps are compared"),
        Param("gsw_mode", "str", "true_class", choices=GSW_MODES, doc="how W is computed (eq. 9 = paper)"),
        Param("tau", "float", 1.0, doc="softmax temperature of eq. 10"),
        Param("r", "float", 1.0, low=0.0, doc="scale of eq. 10"),
        Param("per_batch", "bool", False, doc="weights per image of each batch instead of fitted once"),
        Param("gsw_images", "int", 5000, low=1, unit="images", doc="training items the fitted weights average over"),
        Param("view_shift", "int", 0, low=0, unit="pixels",
              doc="training steps: compare the features of one random view of each pair, the same shift (up to "
                  "this many pixels, reflect padding) and mirror of the original and the reconstruction, drawn "
                  "per image and step, so the codec cannot rely on features tied to one alignment; 0: as they are"),
        Param("more_classifiers", "list[str]", [],
              doc="further frozen task-style networks (shipped names or paths) whose losses are averaged with "
                  "the classifier's, each with its own GSW weights"),
    )

    @cached_property
    def networks(self) -> list:
        """The frozen networks the loss averages over: ``classifier``, then ``more_classifiers``."""
        more = [_task_network("more_classifiers", name).requires_grad_(False) for name in self.p.more_classifiers]
        return [self.network, *more]

    def views(self, images: torch.Tensor, images_hat: torch.Tensor, ctx: BatchContext) -> tuple[torch.Tensor, torch.Tensor]:
        """The same random shift and mirror of each original and its reconstruction (``view_shift``)."""
        shift = self.p.view_shift
        flips, offsets = (t.to(images.device) for t in augment.random_views(images.shape[0], shift, ctx.generator))
        return (augment.random_translate_flip(images, offsets, flips, shift),
                augment.random_translate_flip(images_hat, offsets, flips, shift))

    def infer_shapes(self, input_shapes: dict[str, Shape]) -> dict[str, Shape]:
        if self.p.gsw_mode == "true_class" and "label" not in input_shapes:
            raise PortError("input port 'label': gsw_mode 'true_class' needs the true labels")
        shapes = super().infer_shapes(input_shapes)
        self.networks  # noqa: B018  (a bad checkpoint is a validation error, not a training-time one)
        return shapes

    def setup(self, ctx) -> None:
        super().setup(ctx)  # moves the classifier
        for network in self.networks[1:]:
            network.to(ctx.device)
        if not hasattr(self, "weights"):
            self.weights: torch.Tensor | None = None  # the classifier's W'
            self.more_weights: list[torch.Tensor] = []  # each of more_classifiers'

    def calibration_items(self) -> int:
        return 0 if self.p.per_batch or self.p.gsw_mode == "off" else self.p.gsw_images

    def calibrate(self, batches: list[Batch]) -> None:
        raw = [gsw.mean_raw_weights(network, ((b["image"], b.get("label")) for b in batches), self.p.layer,
                                    self.p.gsw_mode) for network in self.networks]  # W, eq. 9
        self.raw_weights = raw[0]
        self.weights, *self.more_weights = (gsw.semantic_weights(w, self.p.tau, self.p.r) for w in raw)

    def loss(self, inputs: Batch, ctx: BatchContext) -> torch.Tensor:
        images, images_hat = inputs["image"], inputs["image_hat"]
        if self.p.view_shift and ctx.training:
            images, images_hat = self.views(images, images_hat, ctx)
        fitted = [self.weights, *self.more_weights] if self.weights is not None else [None] * len(self.networks)
        terms = [self._network_loss(network, images, images_hat, inputs.get("label"), weights)
                 for network, weights in zip(self.networks, fitted, strict=True)]
        return sum(terms) / len(terms)

    def _network_loss(self, network, images: torch.Tensor, images_hat: torch.Tensor, labels,
                      weights: torch.Tensor | None) -> torch.Tensor:
        """Eq. 13 on one network's feature maps of ``layer``."""
        layer = self.p.layer
        with torch.no_grad():
            features = network.features(images, layer)
        features_hat = network.features(images_hat, layer)
        if self.p.gsw_mode == "off":
            weights = torch.ones(features.shape[1], device=features.device)
        elif self.p.per_batch or weights is None:  # per batch, or a plain run without calibration
            weights = gsw.semantic_weights(gsw.raw_weights(network, images, labels, layer, self.p.gsw_mode),
                                           self.p.tau, self.p.r)
        return gsw.semantic_loss(features_hat.float(), features.float(), weights.to(features.device))


class ContrastiveLoss(_FrozenClassifierLoss):
    """CL-JSCC's NT-Xent: the frozen classifier's pooled features of each received image against its original's."""

    type_name = "contrastive_loss"
    per_item = False
    inputs = (_IMAGE, _IMAGE_HAT)
    params = (
        WEIGHT, _CLASSIFIER,
        Param("layer", "str", "block3", choices=FEATURE_LAYERS, doc="classifier layer (max-pooled over positions)"),
        Param("temperature", "float", 0.1, low=1e-6, doc="NT-Xent temperature"),
    )

    def loss(self, inputs: Batch, ctx: BatchContext) -> torch.Tensor:
        # the representation: the layer's feature maps, max-pooled over positions as the classifier pools them
        with torch.no_grad():
            positives = self.classifier.features(inputs["image"], self.p.layer).amax(dim=(2, 3))
        anchors = self.classifier.features(inputs["image_hat"], self.p.layer).amax(dim=(2, 3))
        return losses.nt_xent(anchors.float(), positives.float(), self.p.temperature)


class Mcr2Loss(LossBlock):
    """-ΔR, the maximal coding rate reduction of the batch's features (multi-task JSCC)."""

    type_name = "mcr2_loss"
    per_item = False
    inputs = (Port("z", "float32", ("D",), "unit-norm features"), _LABEL)
    params = (WEIGHT, Param("eps", "float", 0.5, low=1e-6, doc="quantisation precision ε of the coding rate"))

    def loss(self, inputs: Batch, ctx: BatchContext) -> torch.Tensor:
        return -losses.mcr2(inputs["z"].float(), inputs["label"], self.p.eps)["delta_r"]


class RateLoss(LossBlock):
    """The fraction of code bits sent (the multi-task gate's rate penalty); with ``snr_db`` connected, each
    item's fraction priced at the Shannon capacity log2(1 + SNR) of its channel uses.

    The capacity price is the bandwidth's opportunity cost: a channel use at 20 dB could carry 6.7 bits of
    other traffic, one at 0 dB 1 bit. With a flat price the gate prunes where a code channel is worth least
    to the task, which is not where the channel is good (an erased channel costs about as much PSNR at 0 dB
    as at 20 dB); with the capacity price, sending the full code gets dearer as the channel improves.
    """

    type_name = "rate_loss"
    inputs = (Port("mask", "float32", ("N",), "1 where a bit is sent (multitask_encoder.mask)"),
              Port("snr_db", "float32", (), "per-item channel Es/N0 in dB: price each item's channel uses at "
                   "log2(1 + SNR) bits", optional=True))
    params = (WEIGHT,)

    def loss(self, inputs: Batch, ctx: BatchContext) -> torch.Tensor:
        sent = inputs["mask"].float().mean(1)
        if "snr_db" in inputs:
            sent = sent * torch.log2(1.0 + 10.0 ** (inputs["snr_db"].float() / 10.0))
        return sent.mean()


class DetectionLoss(LossBlock):
    """CenterNet's detection loss: penalty-reduced focal loss on the centre heatmap + 0.1 L1 on box size +
    L1 on the centre offset, each per object (:func:`sdjscc_phy.models.detector.detection_loss`)."""

    type_name = "detection_loss"
    inputs = (
        Port("heatmap", "float32", ("C", "h", "w"), "detector's class-centre logits (detector.heatmap)"),
        Port("size", "float32", (2, "h", "w"), "detector's box width and height maps (detector.size)"),
        Port("offset", "float32", (2, "h", "w"), "detector's centre offset maps (detector.offset)"),
        Port("boxes", "float32", ("M", 4), "true boxes (x0, y0, x1, y1) in pixels; slots past num_objects ignored"),
        Port("labels", "int64", ("M",), "true classes"),
        Port("num_objects", "int64", (), "objects in the scene"),
    )
    params = (WEIGHT,)

    def loss(self, inputs: Batch, ctx: BatchContext) -> torch.Tensor:
        maps = {name: inputs[name] for name in ("heatmap", "size", "offset")}
        return detector.detection_loss(maps, inputs["boxes"], inputs["labels"], inputs["num_objects"])["loss"]



class DetectorFeatureLoss(_FrozenNetworkLoss):
    """A semantic loss for detection: mean squared distance between a frozen detector's stride-4 feature
    maps (what its heads read) of the received and of the original image."""

    type_name = "detector_feature_loss"
    inputs = (_IMAGE, _IMAGE_HAT)
    params = (WEIGHT, Param("detector", "str", "detector_scenes", doc="frozen detector: shipped name or a path"))

    def load_network(self):
        return detector.load_detector(self.p.detector)

    def loss(self, inputs: Batch, ctx: BatchContext) -> torch.Tensor:
        with torch.no_grad():
            target = self.network.features(inputs["image"])
        return F.mse_loss(self.network.features(inputs["image_hat"]).float(), target.float())


LOSS_BLOCKS = [MseLoss, CrossEntropy, SemanticLoss, ContrastiveLoss, Mcr2Loss, RateLoss, DetectionLoss,
               DetectorFeatureLoss]
