"""The downstream AI task T: a small CIFAR-10 CNN with tappable feature layers; and a VGG-style CNN.

The design follows Keller Jordan's airbench94 (CIFAR-10 speedruns, 2024): a frozen 2x2 patch-whitening
convolution, three conv groups (conv -> max-pool -> BatchNorm -> GELU -> conv -> BatchNorm -> GELU),
global max-pool and a linear head scaled by 1/9. It reaches > 90 % top-1 on CIFAR-10 in about ten
epochs, which makes it trainable on a CPU. Inputs are float RGB images in [0, 1]; the per-channel
normalisation lives inside the model.

The SD-JSCC semantic loss (paper eqs. 8-13) reads feature maps ``f_k`` (``[B, K, M, N]``) of one layer
through :meth:`CifarClassifier.features` / :meth:`CifarClassifier.forward_features`.

:class:`VggClassifier` is a second, architecturally different receiver: trained by its own recipe and never
read by a training loss, it measures whether what a codec transmits helps a classifier the codec was not
optimised against (docs/results.md). The export records which class a checkpoint holds.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from sdjscc_phy.models import CLASSIFIER_ARCHITECTURES, FEATURE_LAYERS
from sdjscc_phy.models.checkpoints import load_export

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
# "pool" is block3 global-max-pooled ([B, K, 1, 1]): the representation the linear head reads;
# "logits" are the class scores as C maps of 1 x 1 (eq. 13 on them is logit matching).
_CONV_GROUPS = ("block1", "block2", "block3")
SHIPPED_CHECKPOINT = "classifier_cifar10"
EXPORT_FORMAT = "jsccflow-classifier"
EXPORT_VERSION = 1


class _BatchNorm(nn.BatchNorm2d):
    """BatchNorm with a fixed unit scale and a learned bias (airbench: the scale is redundant before GELU)."""

    def __init__(self, channels: int, momentum: float):
        super().__init__(channels, momentum=momentum)
        self.weight.requires_grad_(False)


def _conv3x3(c_in: int, c_out: int) -> nn.Conv2d:
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[: min(c_in, c_out)])  # identity-initialised where widths allow
    return conv


class _ConvGroup(nn.Module):
    def __init__(self, c_in: int, c_out: int, bn_momentum: float):
        super().__init__()
        self.conv1 = _conv3x3(c_in, c_out)
        self.norm1 = _BatchNorm(c_out, bn_momentum)
        self.conv2 = _conv3x3(c_out, c_out)
        self.norm2 = _BatchNorm(c_out, bn_momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.norm1(F.max_pool2d(self.conv1(x), 2)))
        return F.gelu(self.norm2(self.conv2(x)))


class _ImageClassifier(nn.Module):
    """What both classifiers share: CIFAR-10 normalisation inside the model, the recorded architecture
    (``arch``, the constructor's arguments) and flip test-time augmentation in :meth:`predict`."""

    def __init__(self, arch: dict):
        super().__init__()
        self.arch = arch
        self.tta_flip = bool(arch["tta_flip"])
        self.logit_scale = float(arch["logit_scale"])
        self.register_buffer("mean", torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(CIFAR10_STD).view(1, 3, 1, 1))

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Inference logits ``[B, num_classes]``: averaged with the mirrored image when ``tta_flip``.

        Runs in whatever mode the module is in; call ``.eval()`` first (``load_classifier`` does).
        """
        if not self.tta_flip:
            return self(x)
        # One forward pass over both halves: larger batches use the convolution kernels better (~10 % on a CPU).
        plain, mirrored = self(torch.cat([x, x.flip(-1)])).chunk(2)
        return 0.5 * (plain + mirrored)


def _checked_widths(widths) -> tuple[int, int, int]:
    widths = tuple(int(w) for w in widths)
    if len(widths) != 3 or min(widths) < 1:
        raise ValueError(f"widths must be three positive ints; got {widths}")
    return widths


class CifarClassifier(_ImageClassifier):
    """Image classifier for 32x32 RGB inputs.

    ``widths``: channels of the three conv groups; ``bn_momentum``: PyTorch BatchNorm momentum;
    ``logit_scale``: multiplies the logits (airbench's 1/9 keeps early softmax outputs soft);
    ``tta_flip``: :meth:`predict` averages the logits of the image and its horizontal mirror.
    Feature maps for an input ``[B, 3, 32, 32]``: ``stem`` ``[B, 24, 31, 31]``, ``block1``
    ``[B, w1, 15, 15]``, ``block2`` ``[B, w2, 7, 7]``, ``block3`` ``[B, w3, 3, 3]``, ``pool``
    ``[B, w3, 1, 1]``, ``logits`` ``[B, num_classes, 1, 1]``.
    """

    def __init__(
        self,
        widths: tuple[int, int, int] | list[int] = (64, 192, 192),
        num_classes: int = 10,
        bn_momentum: float = 0.4,
        logit_scale: float = 1 / 9,
        tta_flip: bool = True,
    ):
        widths = _checked_widths(widths)
        super().__init__(dict(widths=list(widths), num_classes=int(num_classes), bn_momentum=float(bn_momentum),
                              logit_scale=float(logit_scale), tta_flip=bool(tta_flip)))
        whiten_width = 2 * 3 * 2 * 2
        self.whiten = nn.Conv2d(3, whiten_width, 2, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)  # set from data by init_whitening, then frozen
        self.block1 = _ConvGroup(whiten_width, widths[0], bn_momentum)
        self.block2 = _ConvGroup(widths[0], widths[1], bn_momentum)
        self.block3 = _ConvGroup(widths[1], widths[2], bn_momentum)
        self.head = nn.Linear(widths[2], num_classes, bias=False)

    @torch.no_grad()
    def init_whitening(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the stem to whiten 2x2 patches of ``images`` (float [0, 1] ``[B, 3, H, W]``), eigenvector-wise.

        Each eigenvector of the patch covariance, scaled by 1/sqrt(eigenvalue + eps), gives one filter and
        its negation another (so GELU keeps both signs).
        """
        x = self._normalise(images.float())
        patches = x.unfold(2, 2, 1).unfold(3, 2, 1).transpose(1, 3).reshape(-1, 3 * 2 * 2).double()
        eigenvalues, eigenvectors = torch.linalg.eigh(patches.T @ patches / patches.shape[0])
        filters = (eigenvectors.T / torch.sqrt(eigenvalues + eps)[:, None]).flip(0).reshape(-1, 3, 2, 2)
        self.whiten.weight.copy_(torch.cat([filters, -filters]).float())

    def _trunk(self, x: torch.Tensor, stop: str | None = None) -> torch.Tensor:
        x = F.gelu(self.whiten(self._normalise(x)))
        if stop == "stem":
            return x
        for name in _CONV_GROUPS:
            x = getattr(self, name)(x)
            if stop == name:
                return x
        x = torch.amax(x, dim=(2, 3), keepdim=True)
        if stop == "pool":
            return x
        return (self.head(x.flatten(1)) * self.logit_scale)[:, :, None, None]

    def _head(self, feature: torch.Tensor, layer: str) -> torch.Tensor:
        """Logits ``[B, C]`` from the feature maps of ``layer``."""
        if layer == "logits":
            return feature.flatten(1)
        x = feature
        if layer != "pool":
            start = 0 if layer == "stem" else _CONV_GROUPS.index(layer) + 1
            for name in _CONV_GROUPS[start:]:
                x = getattr(self, name)(x)
        x = torch.amax(x, dim=(2, 3))
        return self.head(x) * self.logit_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, num_classes]`` of images ``x`` (float [0, 1], ``[B, 3, H, W]``)."""
        return self._trunk(x).flatten(1)

    def features(self, x: torch.Tensor, layer: str = "block3") -> torch.Tensor:
        """Feature maps ``f_k`` of ``layer`` (one of :data:`FEATURE_LAYERS`), ``[B, K, M, N]`` (eq. 8)."""
        _check_layer(layer)
        return self._trunk(x, layer)

    def forward_features(self, x: torch.Tensor, layer: str = "block3") -> tuple[torch.Tensor, torch.Tensor]:
        """``(features, logits)`` in one pass; logits stay differentiable w.r.t. the features (GSW, eqs. 9-10)."""
        _check_layer(layer)
        feature = self._trunk(x, layer)
        return feature, self._head(feature, layer)


#: Modules per stage of :func:`vgg_trunk`: conv, BN, ReLU, conv, BN, ReLU, max-pool.
VGG_STAGE_LAYERS = 7


def vgg_trunk(widths, bn_momentum: float = 0.1) -> nn.Sequential:
    """The VGG stages: per width two 3x3 conv -> BatchNorm -> ReLU layers and a 2x2 max-pool, as one
    ``nn.Sequential`` (the object detector reuses the layout, and with it the classifier's weights)."""
    layers: list[nn.Module] = []
    c_in = 3
    for width in widths:
        for _ in range(2):
            layers += [nn.Conv2d(c_in, width, 3, padding=1, bias=False),
                       nn.BatchNorm2d(width, momentum=bn_momentum), nn.ReLU(inplace=True)]
            c_in = width
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class VggClassifier(_ImageClassifier):
    """VGG-style classifier (Simonyan & Zisserman, 2015, with BatchNorm) for 32x32 RGB inputs.

    Three stages of two 3x3 conv -> BatchNorm -> ReLU layers, each stage followed by a 2x2 max-pool
    (32 -> 16 -> 8 -> 4), global average pooling and a linear head; ``widths`` are the stages' channels.
    Unlike :class:`CifarClassifier` it has no whitening stem, no GELU, no max-pooled head and full-resolution
    first convolutions, so it shares the task network's training data but not its inductive biases.
    Arguments as :class:`CifarClassifier`'s.
    """

    def __init__(
        self,
        widths: tuple[int, int, int] | list[int] = (64, 128, 256),
        num_classes: int = 10,
        bn_momentum: float = 0.1,
        logit_scale: float = 1.0,
        tta_flip: bool = True,
    ):
        widths = _checked_widths(widths)
        super().__init__(dict(widths=list(widths), num_classes=int(num_classes), bn_momentum=float(bn_momentum),
                              logit_scale=float(logit_scale), tta_flip=bool(tta_flip)))
        self.trunk = vgg_trunk(widths, bn_momentum)
        self.head = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, num_classes]`` of images ``x`` (float [0, 1], ``[B, 3, H, W]``)."""
        x = self.trunk(self._normalise(x))
        return self.head(x.mean(dim=(2, 3))) * self.logit_scale


#: The model class of each name in CLASSIFIER_ARCHITECTURES (a fresh classifier block's ``architecture``).
ARCHITECTURES = dict(zip(CLASSIFIER_ARCHITECTURES, (CifarClassifier, VggClassifier), strict=True))


def _check_layer(layer: str) -> None:
    if layer not in FEATURE_LAYERS:
        raise ValueError(f"layer must be one of {FEATURE_LAYERS}; got '{layer}'")


def export_classifier(
    model: CifarClassifier | VggClassifier, path: str | Path, class_names: tuple[str, ...] | list[str], metadata: dict
) -> None:
    """Write the inference checkpoint: fp16 weights, architecture, class names and ``metadata``.

    ``metadata`` holds e.g. ``metrics`` (``val_acc``), ``recipe`` and ``code_version``. Written atomically.
    """
    # imported here: sdjscc_phy.training imports this module to register the classifier stage
    from sdjscc_phy.training.checkpoint import atomic_torch_save

    state = {
        k: (v.half() if v.is_floating_point() and k not in ("mean", "std") else v).cpu().clone()
        for k, v in model.state_dict().items()
    }
    payload = {
        "format": EXPORT_FORMAT, "version": EXPORT_VERSION, "architecture": type(model).__name__,
        "config": dict(model.arch), "class_names": list(class_names), "state_dict": state, **metadata,
    }
    atomic_torch_save(payload, path)


def _build_export(payload: dict) -> CifarClassifier | VggClassifier:
    by_class = {cls.__name__: cls for cls in ARCHITECTURES.values()}
    if payload["architecture"] not in by_class:
        raise ValueError(f"unknown architecture '{payload['architecture']}' (known: {', '.join(by_class)})")
    return by_class[payload["architecture"]](**payload["config"])


def load_classifier(path: str | Path | None = None,
                    map_location: str | torch.device = "cpu") -> CifarClassifier | VggClassifier:
    """Load an exported classifier (a shipped name or a path; default: the shipped CIFAR-10 one) in eval
    mode, fp32 weights; the checkpoint's ``architecture`` field names the model class.

    The checkpoint's ``class_names`` and metadata are attached as ``model.class_names`` / ``model.metadata``.
    """
    model, info = load_export(SHIPPED_CHECKPOINT if path is None else path, EXPORT_FORMAT, "classifier",
                              _build_export, map_location, fields={"class_names": list, "architecture": str})
    model.class_names = tuple(info.get("class_names", ()))
    model.metadata = info
    return model
