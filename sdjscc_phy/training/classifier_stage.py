"""Stage kind ``classifier``: supervised training of the downstream task network (paper Alg. 1, step 1)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from sdjscc_phy.errors import RecipeError
from sdjscc_phy.models.classifier import CifarClassifier, export_classifier
from sdjscc_phy.training.data import DATA_DEFAULTS, load_train_val
from sdjscc_phy.training.stages import Stage, register_stage

FLIP_MODES = (True, False, "alternate")


def random_translate_flip(
    images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, pad: int
) -> torch.Tensor:
    """Float ``[B, 3, H, W]`` images shifted by ``offsets - pad`` pixels (reflect padding) and mirrored where
    ``flips``. ``offsets``: int64 ``[B, 2]`` in ``0..2*pad`` (row, column); ``flips``: bool ``[B]``."""
    b, c, h, w = images.shape
    if pad:
        padded = F.pad(images, (pad, pad, pad, pad), mode="reflect")
        rows = (offsets[:, 0:1] + torch.arange(h))[:, None, :, None]
        cols = (offsets[:, 1:2] + torch.arange(w))[:, None, None, :]
        images = padded[torch.arange(b)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]
    return torch.where(flips[:, None, None, None], images.flip(-1), images)


@register_stage("classifier")
class ClassifierStage(Stage):
    """Cross-entropy training of :class:`~sdjscc_phy.models.classifier.CifarClassifier` on an image dataset.

    Recipe keys (besides the common ones): ``data`` (``format``, ``root``, ``split_file``: validation
    list for ImageFolder, ``train_limit``/``val_limit``: use a seeded subset, for smoke runs), ``model``
    (constructor arguments), ``loss.label_smoothing``, ``augment`` (``translate``: random shift up to that
    many pixels; ``flip``: ``true`` mirrors a random half of the images each epoch, ``alternate`` mirrors
    each image in every other epoch from a random start, as airbench does, ``false`` never).
    The optimiser sees two parameter groups: ``norm_bias`` (BatchNorm biases) and ``default``.
    """

    DEFAULTS = {
        "data": DATA_DEFAULTS,
        "model": {"widths": [64, 192, 192], "bn_momentum": 0.4, "logit_scale": 1 / 9, "tta_flip": True},
        "loss": {"label_smoothing": 0.0},
        "augment": {"flip": True, "translate": 0},
        "whitening_images": 5000,  # training images used to initialise the whitening stem
        "eval_batch_size": 1000,
    }
    PATH_KEYS = ("data.root", "data.split_file")
    MONITOR = "val_acc"

    def setup(self) -> None:
        flip = self.config["augment"]["flip"]
        if flip not in FLIP_MODES:
            raise RecipeError(f"recipe: stage '{self.name}': augment.flip must be one of {FLIP_MODES}; got {flip!r}")
        self.train_set, self.val_set = load_train_val(self)
        try:
            self.model = CifarClassifier(num_classes=len(self.train_set.class_names), **self.config["model"])
        except (TypeError, ValueError) as exc:
            raise RecipeError(f"recipe: stage '{self.name}': model: {exc}") from None
        self.model.init_whitening(self.train_set.images[: self.config["whitening_images"]].float() / 255)
        self.model = self.model.to(self.device, memory_format=torch.channels_last)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"model": self.model}

    def parameter_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        norm_bias = [m.bias for m in self.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        ids = {id(p) for p in norm_bias}
        rest = [p for p in self.model.parameters() if p.requires_grad and id(p) not in ids]
        return {"norm_bias": norm_bias, "default": rest}

    def num_batches(self) -> int:
        return -(-len(self.train_set) // self.config["batch_size"])

    def _epoch_plan(self, epoch: int) -> dict:
        if getattr(self, "_plan_epoch", None) != epoch:
            g = self.epoch_generator(epoch)
            n, pad = len(self.train_set), self.config["augment"]["translate"]
            order = torch.randperm(n, generator=g)
            flips = torch.rand(n, generator=g) < 0.5
            offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=g)
            mode = self.config["augment"]["flip"]
            if mode == "alternate":
                flips = (torch.rand(n, generator=self.epoch_generator(0, stream=3)) < 0.5) ^ bool(epoch % 2)
            elif not mode:
                flips = torch.zeros(n, dtype=torch.bool)
            self._plan = {"order": order, "flips": flips, "offsets": offsets}
            self._plan_epoch = epoch
        return self._plan

    def batch(self, epoch: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        plan = self._epoch_plan(epoch)
        bs = self.config["batch_size"]
        idx = plan["order"][index * bs:(index + 1) * bs]
        images = self.train_set.images[idx].float().div_(255)
        pad = self.config["augment"]["translate"]
        images = random_translate_flip(images, plan["offsets"][idx], plan["flips"][idx], pad)
        images = images.to(self.device).contiguous(memory_format=torch.channels_last)
        return images, self.train_set.labels[idx].to(self.device)

    def training_loss(self, batch) -> torch.Tensor:
        images, labels = batch
        logits = self.model(images)
        return F.cross_entropy(logits.float(), labels, label_smoothing=self.config["loss"]["label_smoothing"])

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        self.model.eval()
        correct = 0
        loss_sum = 0.0
        for images, labels in self.val_set.iter_batches(self.config["eval_batch_size"]):
            x = (images.to(self.device).float() / 255).contiguous(memory_format=torch.channels_last)
            labels = labels.to(self.device)
            with self.autocast():
                logits = self.model.predict(x).float()
            correct += int((logits.argmax(1) == labels).sum())
            loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
        self.model.train()
        n = len(self.val_set)
        return {"val_acc": correct / n, "val_loss": loss_sum / n}

    def export(self, path: Path, metadata: dict) -> None:
        export_classifier(self.model, path, self.train_set.class_names, metadata)
