"""A small single-stage object detector (CenterNet-style), its loss, and its checkpoint format.

CenterNet ("Objects as Points", Zhou, Wang, Krähenbühl 2019): every object is the peak of a per-class
heatmap at its box centre, on a grid of stride 4; two more maps give, at the peak, the box's width and
height in pixels and the centre's sub-cell offset. The network is fully convolutional (any input whose
sides are multiples of 16): a residual encoder down to stride 16 and a feature-pyramid path back up to
stride 4 (receptive field large enough for objects of ~60 % of a 64-pixel canvas). Inputs are RGB in
[0, 1]; normalisation is inside the model, as in the classifier.

Decoding keeps the heatmap's local maxima (3 x 3 max-pool, CenterNet's NMS replacement) and returns the
``max_detections`` highest scores; boxes are clipped to the image.

The loss (:func:`detection_loss`) is CenterNet's: the penalty-reduced focal loss on the heatmap against
Gaussians at the box centres (radius from CenterNet's ``gaussian_radius``, minimum overlap 0.7), plus L1
losses on size (weight 0.1) and offset (weight 1) at the centre cells, each normalised by the number of
objects. It returns a dict of named losses (``loss`` is the total).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from sdjscc_phy.models import DETECTOR_BACKBONES
from sdjscc_phy.models import DETECTOR_INPUT_MULTIPLE as INPUT_MULTIPLE
from sdjscc_phy.models import DETECTOR_STRIDE as STRIDE
from sdjscc_phy.models.checkpoints import load_export
from sdjscc_phy.models.classifier import VGG_STAGE_LAYERS, VggClassifier, vgg_trunk

EXPORT_FORMAT = "jsccflow-detector"
EXPORT_VERSION = 1
# Mean / std of the CIFAR-10 training images (the scenes are made of them).
_MEAN = (0.4914, 0.4822, 0.4465)
_STD = (0.2470, 0.2435, 0.2616)
# CenterNet's heatmap bias init: sigmoid(-2.19) = 0.1, so the focal loss starts small.
_HEATMAP_BIAS = -2.19
SIZE_WEIGHT = 0.1
OFFSET_WEIGHT = 1.0
MIN_OVERLAP = 0.7


def _conv_bn(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class _Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


class _CenterNet(nn.Module):
    """What both detectors share: normalisation inside the model, the recorded architecture (``arch``, the
    constructor's arguments), the three CenterNet heads on the stride-4 features, and :meth:`forward`.
    A subclass builds its trunk, then calls :meth:`_add_heads` (heads last, so that a seeded fresh model's
    trunk draws the same initial weights whatever the heads are) and implements :meth:`_trunk`."""

    def __init__(self, arch: dict):
        super().__init__()
        if arch["num_classes"] < 1 or arch["width"] < 8:
            raise ValueError(f"num_classes must be >= 1 and width >= 8; got {arch['num_classes']}, {arch['width']}")
        self.arch = arch
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1))

    def _add_heads(self) -> None:
        width = self.arch["width"]

        def head(out: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(width, width, 3, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(width, out, 1))

        self.heatmap = head(self.arch["num_classes"])
        self.size = head(2)
        self.offset = head(2)
        with torch.no_grad():
            self.heatmap[-1].bias.fill_(_HEATMAP_BIAS)

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised image ``[B, 3, H, W]`` -> stride-4 feature maps ``[B, width, H/4, W/4]``."""
        raise NotImplementedError

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """The stride-4 feature maps ``[B, width, H/4, W/4]`` that the three heads read."""
        height, width = image.shape[-2:]
        if height % INPUT_MULTIPLE or width % INPUT_MULTIPLE:
            raise ValueError(f"image sides must be multiples of {INPUT_MULTIPLE}; got {height}x{width}")
        return self._trunk((image - self.mean) / self.std)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.features(image)
        return {"heatmap": self.heatmap(features), "size": self.size(features), "offset": self.offset(features)}


class CenterNetDetector(_CenterNet):
    """CenterNet-style detector trained from scratch: image ``[B, 3, H, W]`` in [0, 1] -> dict of maps at
    stride 4: ``heatmap`` logits ``[B, C, H/4, W/4]``, ``size`` (box width, height in pixels) and ``offset``
    (centre offset within the cell, in cells) ``[B, 2, H/4, W/4]``.

    ``width``: channels at stride 4 (stride 8 and 16 have twice as many); ``num_classes``: heatmap channels.
    """

    def __init__(self, num_classes: int = 10, width: int = 48):
        super().__init__({"num_classes": int(num_classes), "width": int(width), "backbone": "centernet"})
        wide = 2 * width
        self.stem = nn.Sequential(_conv_bn(3, width // 2), _conv_bn(width // 2, width, 2))  # stride 2
        self.down4 = nn.Sequential(_conv_bn(width, width, 2), _Residual(width))
        self.down8 = nn.Sequential(_conv_bn(width, wide, 2), _Residual(wide))
        self.down16 = nn.Sequential(_conv_bn(wide, wide, 2), _Residual(wide), _Residual(wide))
        self.lateral8 = nn.Conv2d(wide, wide, 1)
        self.lateral4 = nn.Conv2d(width, wide, 1)
        self.merge8 = _Residual(wide)
        self.merge4 = nn.Sequential(_conv_bn(wide, width), _Residual(width))
        self._add_heads()

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        x4 = self.down4(self.stem(x))
        x8 = self.down8(x4)
        x16 = self.down16(x8)
        up8 = self.merge8(self.lateral8(x8) + F.interpolate(x16, scale_factor=2.0, mode="nearest"))
        return self.merge4(self.lateral4(x4) + F.interpolate(up8, scale_factor=2.0, mode="nearest"))


class VggDetector(_CenterNet):
    """The CenterNet heads on the trunk of a VGG-style classifier (:class:`~sdjscc_phy.models.classifier.
    VggClassifier`): its three stages of two conv-BN-ReLU layers and a 2 x 2 max-pool give stride 2, 4
    and 8 (``vgg_widths`` channels); two residual blocks at stride 8 widen the receptive field (the
    trunk's 36 pixels are less than the largest objects) and a feature-pyramid step brings them back to
    stride 4 beside the stage-2 maps. ``self.vgg`` is the classifier's ``trunk`` (:func:`vgg_trunk`), so
    :meth:`init_from_classifier` copies its weights key for key.

    Why a pretrained trunk: telling CIFAR-10 classes apart from scratch takes far more scenes than a CPU
    trains on in an hour (docs/detection.md); CenterNet and RFBNet likewise start from a pretrained backbone.
    Why the VGG and not the task classifier: SD-JSCC's semantic loss reads the task classifier's features,
    so a detector built on them would share exactly what SD-JSCC was trained to keep and favour it in
    Table II; the VGG, like the paper's ImageNet VGG beside its semantic-loss classifier, is independent
    of every codec.
    """

    def __init__(self, num_classes: int = 10, width: int = 48, vgg_widths: tuple[int, int, int] | list[int] = (24, 48, 96)):
        vgg_widths = [int(w) for w in vgg_widths]
        if len(vgg_widths) != 3 or min(vgg_widths) < 1:
            raise ValueError(f"vgg_widths must be three positive channel counts; got {vgg_widths}")
        super().__init__({"num_classes": int(num_classes), "width": int(width), "backbone": "vgg",
                          "vgg_widths": vgg_widths})
        self.vgg = vgg_trunk(vgg_widths)
        self.context8 = nn.Sequential(_Residual(vgg_widths[2]), _Residual(vgg_widths[2]))
        self.lateral4 = nn.Conv2d(vgg_widths[1], vgg_widths[2], 1)
        self.merge4 = nn.Sequential(_conv_bn(vgg_widths[2], width), _Residual(width))
        self.frozen_stages = 0
        self._add_heads()

    def stage(self, index: int) -> nn.Sequential:
        """VGG stage ``index`` (0, 1, 2: output strides 2, 4, 8)."""
        return self.vgg[index * VGG_STAGE_LAYERS:(index + 1) * VGG_STAGE_LAYERS]

    def init_from_classifier(self, classifier: VggClassifier) -> None:
        """Copy the trunk weights (and BatchNorm statistics) of a VggClassifier with the same widths."""
        if not isinstance(classifier, VggClassifier):
            raise ValueError(f"the backbone must come from a VGG classifier; got a {type(classifier).__name__}")
        if list(classifier.arch["widths"]) != self.arch["vgg_widths"]:
            raise ValueError(f"the classifier's widths {classifier.arch['widths']} differ from vgg_widths "
                             f"{self.arch['vgg_widths']}")
        self.vgg.load_state_dict(classifier.trunk.state_dict())

    def freeze_stages(self, count: int) -> None:
        """Keep the first ``count`` VGG stages fixed in training: no gradients, BatchNorm statistics as
        loaded (:meth:`train` leaves them in eval mode)."""
        if not 0 <= count <= 3:
            raise ValueError(f"frozen stages must be 0..3; got {count}")
        self.frozen_stages = count
        for index in range(count):
            self.stage(index).requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> VggDetector:
        super().train(mode)
        for index in range(self.frozen_stages):
            self.stage(index).eval()
        return self

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        x4 = self.stage(1)(self.stage(0)(x))
        x8 = self.context8(self.stage(2)(x4))
        return self.merge4(self.lateral4(x4) + F.interpolate(x8, scale_factor=2.0, mode="nearest"))


def build_detector(num_classes: int = 10, width: int = 48, backbone: str = "centernet", **backbone_args) -> _CenterNet:
    """A fresh detector of ``backbone`` (:data:`~sdjscc_phy.models.DETECTOR_BACKBONES`); the arguments are an
    ``arch`` dict's (checkpoints written before the VGG backbone have no ``backbone``: the residual one)."""
    if backbone == "centernet" and not backbone_args:
        return CenterNetDetector(num_classes, width)
    if backbone == "vgg":
        return VggDetector(num_classes, width, **backbone_args)
    raise ValueError(f"unknown detector backbone '{backbone}' or arguments {sorted(backbone_args)} "
                     f"(backbones: {', '.join(DETECTOR_BACKBONES)})")


def decode_detections(outputs: dict[str, torch.Tensor], image_size: tuple[int, int], max_detections: int = 50):
    """Boxes ``[B, K, 4]`` (xyxy pixels, clipped to the image), scores ``[B, K]`` (sigmoid of the peak)
    and labels ``[B, K]`` of the ``K = max_detections`` best heatmap peaks, best first. Where there are
    fewer than K peaks (a small heatmap), the last slots are padding: score 0, label 0, box zeros."""
    heat = torch.sigmoid(outputs["heatmap"].float())
    batch, classes, rows, cols = heat.shape
    peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)
    padding = max(0, max_detections - classes * rows * cols)
    peaks = F.pad(peaks.flatten(1), (0, padding))
    scores, index = peaks.topk(max_detections, dim=1)
    found = scores > 0
    index = torch.where(found, index, 0)
    labels, cell = index // (rows * cols), index % (rows * cols)
    ys, xs = (cell // cols).float(), (cell % cols).float()

    def at_peaks(maps: torch.Tensor) -> torch.Tensor:  # [B, 2, h, w] -> [B, K, 2]
        return maps.float().flatten(2).gather(2, cell[:, None, :].expand(-1, 2, -1)).transpose(1, 2)

    offset, size = at_peaks(outputs["offset"]), at_peaks(outputs["size"]).clamp(min=0)
    cx, cy = (xs + offset[..., 0]) * STRIDE, (ys + offset[..., 1]) * STRIDE
    height, width = image_size
    boxes = torch.stack([
        (cx - size[..., 0] / 2).clamp(0, width), (cy - size[..., 1] / 2).clamp(0, height),
        (cx + size[..., 0] / 2).clamp(0, width), (cy + size[..., 1] / 2).clamp(0, height),
    ], dim=-1)
    return boxes * found[..., None], scores, labels


def gaussian_radius(height: torch.Tensor, width: torch.Tensor, min_overlap: float = MIN_OVERLAP) -> torch.Tensor:
    """CenterNet's radius (in the units of ``height``/``width``): the largest corner shift that keeps a
    box's IoU with the true one >= ``min_overlap``, the smallest of its three cases."""
    a1, b1 = 1.0, height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + torch.sqrt(b1**2 - 4 * a1 * c1)) / 2
    a2, b2, c2 = 4.0, 2 * (height + width), (1 - min_overlap) * width * height
    r2 = (b2 + torch.sqrt(b2**2 - 4 * a2 * c2)) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (height + width), (min_overlap - 1) * width * height
    r3 = (b3 + torch.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return torch.minimum(torch.minimum(r1, r2), r3)


def centernet_targets(boxes: torch.Tensor, labels: torch.Tensor, num_objects: torch.Tensor, num_classes: int,
                      grid: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Training targets on a ``grid`` (rows, cols) of stride 4 from padded ground truth (boxes
    ``[B, M, 4]`` xyxy pixels, labels ``[B, M]``, counts ``[B]``): ``heatmap`` ``[B, C, h, w]`` (max of the
    objects' Gaussians, 1 at each centre cell), and per object its ``cell`` index ``[B, M]``, ``size``
    and ``offset`` ``[B, M, 2]`` and a ``valid`` mask ``[B, M]``."""
    rows, cols = grid
    batch, slots = labels.shape
    valid = torch.arange(slots, device=boxes.device)[None, :] < num_objects[:, None]
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2 / STRIDE
    size = boxes[..., 2:] - boxes[..., :2]
    cell_xy = centre.floor().clamp(min=0)
    cell_xy = torch.stack([cell_xy[..., 0].clamp(max=cols - 1), cell_xy[..., 1].clamp(max=rows - 1)], dim=-1)
    radius = gaussian_radius(size[..., 1] / STRIDE, size[..., 0] / STRIDE).floor().clamp(min=0)
    sigma = (2 * radius + 1) / 6
    ys = torch.arange(rows, device=boxes.device, dtype=boxes.dtype).view(1, 1, rows, 1)
    xs = torch.arange(cols, device=boxes.device, dtype=boxes.dtype).view(1, 1, 1, cols)
    dist2 = (xs - cell_xy[..., 0, None, None]) ** 2 + (ys - cell_xy[..., 1, None, None]) ** 2
    gauss = torch.exp(-dist2 / (2 * sigma[..., None, None] ** 2)) * valid[..., None, None]  # [B, M, h, w]
    one_hot = F.one_hot(labels.clamp(min=0), num_classes).to(boxes.dtype) * valid[..., None]  # [B, M, C]
    heatmap = (gauss[:, :, None] * one_hot[..., None, None]).amax(dim=1)  # [B, C, h, w]
    cell = (cell_xy[..., 1] * cols + cell_xy[..., 0]).long()
    return {"heatmap": heatmap, "cell": cell, "size": size, "offset": centre - cell_xy, "valid": valid}


def detection_loss(outputs: dict[str, torch.Tensor], boxes: torch.Tensor, labels: torch.Tensor,
                   num_objects: torch.Tensor) -> dict[str, torch.Tensor]:
    """CenterNet's loss of detector ``outputs`` against padded ground truth (see :func:`centernet_targets`):
    ``{"loss", "heatmap", "size", "offset"}``, each a scalar, ``loss`` = heatmap + 0.1 size + offset."""
    logits = outputs["heatmap"].float()
    target = centernet_targets(boxes.float(), labels, num_objects, logits.shape[1], logits.shape[-2:])
    heat = target["heatmap"]
    positive = heat == 1
    prob = torch.sigmoid(logits)
    # Penalty-reduced focal loss (CenterNet eq. 1, alpha = 2, beta = 4); log-sigmoids for stability.
    pos_loss = -(F.logsigmoid(logits) * (1 - prob) ** 2)[positive].sum()
    neg_loss = -(F.logsigmoid(-logits) * prob**2 * (1 - heat) ** 4)[~positive].sum()
    count = target["valid"].sum().clamp(min=1)
    valid = target["valid"][..., None]

    def at_cells(maps: torch.Tensor) -> torch.Tensor:  # [B, 2, h, w] -> [B, M, 2]
        return maps.float().flatten(2).gather(2, target["cell"][:, None, :].expand(-1, 2, -1)).transpose(1, 2)

    size_loss = ((at_cells(outputs["size"]) - target["size"]).abs() * valid).sum() / count
    offset_loss = ((at_cells(outputs["offset"]) - target["offset"]).abs() * valid).sum() / count
    heat_loss = (pos_loss + neg_loss) / count
    total = heat_loss + SIZE_WEIGHT * size_loss + OFFSET_WEIGHT * offset_loss
    return {"loss": total, "heatmap": heat_loss, "size": size_loss, "offset": offset_loss}


def export_detector(model: _CenterNet, path: str | Path, metadata: dict) -> None:
    """Write the inference checkpoint: fp16 weights, the architecture and ``metadata`` (written atomically)."""
    from sdjscc_phy.training.checkpoint import atomic_torch_save  # training imports the models

    state = {k: v.cpu().half() if v.is_floating_point() else v.cpu() for k, v in model.state_dict().items()}
    atomic_torch_save({"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "config": dict(model.arch),
                       "state_dict": state, **metadata}, path)


def load_detector(name_or_path: str | Path, map_location: str | torch.device = "cpu") -> _CenterNet:
    """Load an exported detector (shipped name or path) in eval mode with fp32 weights; ``.metadata`` holds
    the rest of the checkpoint."""
    model, info = load_export(name_or_path, EXPORT_FORMAT, "detector",
                              lambda payload: build_detector(**payload["config"]), map_location)
    model.metadata = info
    return model
