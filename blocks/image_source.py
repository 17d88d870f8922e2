"""Image source: labelled images from the builtin sample, an ImageFolder tree, or CIFAR-10 batches."""

from __future__ import annotations

import functools
import os
from functools import cached_property

import numpy as np

from sdjscc_phy.core.block import Batch, BatchContext, Block, derive_key
from sdjscc_phy.core.params import Param
from sdjscc_phy.core.ports import Port, Shape
from sdjscc_phy.data.augment import FLIP_MODES, epoch_plan, random_translate_flip
from sdjscc_phy.data.datasets import (
    ImageDataset, describe_builtin, describe_image_folder, read_builtin, read_cifar10_batches, read_image_folder,
)
from sdjscc_phy.data.splits import stratified_subset
from sdjscc_phy.errors import DataError
from sdjscc_phy.lazy import lazy_import

torch = lazy_import("torch")


@functools.lru_cache(maxsize=4)
def _read_dataset(dataset: str, root: str, split: str, split_file: str, resize: int | None,
                  crop: int | None) -> ImageDataset:
    """Listing a 50,000-image folder costs seconds; a sweep loads the same dataset for every point."""
    if dataset == "builtin":
        return read_builtin()
    if dataset == "cifar10":
        return read_cifar10_batches(root, "train" if split == "all" else split)
    return read_image_folder(root, split, split_file or None, resize=resize, center_crop=crop)


@functools.lru_cache(maxsize=16)
def _describe_dataset(dataset: str, root: str, split: str, split_file: str, resize: int | None,
                      crop: int | None) -> tuple[int, tuple[int, int, int]]:
    """(number of images, (3, H, W)) without decoding the images (what validating a flowgraph needs).
    CIFAR-10 batches state their size only inside the pickles, so those are read (no image decoding)."""
    if dataset == "builtin":
        return describe_builtin()
    if dataset == "cifar10":
        data = _read_dataset(dataset, root, split, split_file, resize, crop)
        return len(data), data.image_shape
    return describe_image_folder(root, split, split_file or None, resize=resize, center_crop=crop)


class ImageSource(Block):
    """Labelled RGB images in [0, 1] from `builtin`, an ImageFolder tree (`folder`) or CIFAR-10 `cifar10` batches."""

    type_name = "image_source"
    host_path_on_device = True  # torch indexing/comparison: runs where the flowgraph's device is
    outputs = (
        Port("image", "float32", (3, "H", "W"), "RGB image, values in [0, 1]"),
        Port("label", "int64", (), "class index (sorted class-folder order)"),
    )
    params = (
        Param("dataset", "str", "builtin", choices=("builtin", "folder", "cifar10"),
              doc="builtin: 1,000 shipped validation images; folder: ImageFolder tree; cifar10: python pickle batches"),
        Param("root", "path", "", doc="dataset directory (folder, cifar10)"),
        Param("split", "str", "all", choices=("all", "train", "val", "test"),
              doc="folder: all | train | val (the fixed validation split); cifar10: train | test"),
        Param("split_file", "path", "", doc="folder: validation list to use instead of the shipped CIFAR-10 one"),
        Param("limit", "int", None, low=1, nullable=True, unit="images",
              doc="use only N images, chosen as 'subset' says"),
        Param("subset", "str", "stratified", choices=("stratified", "first"),
              doc="with limit: stratified = a seeded random subset keeping every class's share (in random "
                  "order); first = the first N images in dataset order (class-sorted for folder and builtin)"),
        Param("subset_seed", "int", 0, low=0,
              doc="seed of the stratified subset (not options.seed, so runs with other noise seeds see the "
                  "same images)"),
        Param("resize", "int", None, low=1, nullable=True, unit="pixels", doc="scale the shorter side to this"),
        Param("crop", "int", None, low=1, nullable=True, unit="pixels", doc="center square crop of this size"),
        Param("shuffle", "bool", False,
              doc="seeded random order (options.seed); in training a new order every epoch"),
        Param("flip", "str", "none", choices=FLIP_MODES,
              doc="training only: random = mirror a random half each epoch; alternate = each image every "
                  "other epoch"),
        Param("translate", "int", 0, low=0, unit="pixels",
              doc="training only: random shift up to this many pixels (reflect padding)"),
    )

    def check_params(self) -> list[str]:
        p = self.p
        problems = []
        if p.dataset in ("folder", "cifar10") and not p.root:
            problems.append(f"parameter 'root': required for dataset '{p.dataset}'")
        allowed = {"builtin": ("all",), "folder": ("all", "train", "val"), "cifar10": ("train", "test")}[p.dataset]
        split = "train" if p.dataset == "cifar10" and p.split == "all" else p.split
        if split not in allowed:
            problems.append(f"parameter 'split': dataset '{p.dataset}' offers ({', '.join(allowed)}); got '{p.split}'")
        if p.dataset != "folder" and (p.resize or p.crop):
            problems.append("parameters 'resize'/'crop': only for dataset 'folder' (builtin and cifar10 are 32x32)")
        return problems

    @property
    def _dataset_key(self) -> tuple:
        p = self.p
        root, split_file = (os.path.abspath(path) if path else "" for path in (p.root, p.split_file))
        return p.dataset, root, p.split, split_file, p.resize, p.crop

    @cached_property
    def data(self) -> ImageDataset:
        """The decoded dataset, read when a run starts (once per process: running and every sweep point
        share it); validation reads only the listing and one image header (:meth:`num_items`)."""
        p = self.p
        data = _read_dataset(*self._dataset_key)
        if p.limit is not None and p.limit < len(data):
            chosen = (range(p.limit) if p.subset == "first"
                      else stratified_subset(data.labels.numpy(), p.limit, p.subset_seed))
            data = data.subset(list(chosen))
        return data

    def num_items(self) -> int:
        count = _describe_dataset(*self._dataset_key)[0]
        return count if self.p.limit is None else min(count, self.p.limit)

    def caveats(self, items: int) -> list[str]:
        p = self.p
        in_class_order = p.dataset in ("builtin", "folder") and not p.shuffle and (p.limit is None or p.subset == "first")
        if in_class_order and items < self.num_items():
            return [f"block '{self.id}': the run reads the first {items} of {self.num_items()} images, which are "
                    "sorted by class, so its metrics cover the first classes only; set shuffle: true (a random "
                    f"{items}) or limit: {items} (a stratified {items})"]
        return []

    def infer_shapes(self, input_shapes: dict[str, Shape]) -> dict[str, Shape]:
        return {"image": _describe_dataset(*self._dataset_key)[1], "label": ()}

    def setup(self, ctx) -> None:
        if len(self.data) != self.num_items():  # the run's batches were planned from the validated count
            raise DataError(f"dataset '{self.p.root or self.p.dataset}' holds {len(self.data)} images, not the "
                            f"{self.num_items()} it held when the flowgraph was validated")
        order = np.arange(len(self.data))
        if self.p.shuffle:
            order = np.random.default_rng(ctx.seed).permutation(order)
        self._order = torch.from_numpy(order)
        self._plan_epoch: int | None = None

    def _epoch_plan(self, ctx: BatchContext) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(item order, augmentation plan or None) of a training epoch, drawn once per epoch from
        (seed, block id, epoch): a resumed run draws the same."""
        if self._plan_epoch != (ctx.epoch, ctx.training):
            generator = torch.Generator().manual_seed(derive_key(ctx.seed, self.id, None, ctx.epoch))
            n = len(self.data)
            order = torch.randperm(n, generator=generator) if self.p.shuffle else torch.arange(n)
            plan = None
            if ctx.training and (self.p.flip != "none" or self.p.translate):
                start = torch.Generator().manual_seed(derive_key(ctx.seed, self.id, 0, -1))
                plan = epoch_plan(n, ctx.epoch, self.p.flip, self.p.translate, generator, start)
            self._plan, self._plan_epoch = (order, plan), (ctx.epoch, ctx.training)
        return self._plan

    def process_host(self, inputs: Batch, ctx: BatchContext) -> Batch:
        order, plan = (self._order, None) if ctx.epoch is None else self._epoch_plan(ctx)
        index = order[ctx.start:ctx.start + ctx.batch_size]
        images = self.data.images[index].to(ctx.device, non_blocking=True).float().div_(255.0)
        if plan is not None:
            flips, offsets = plan
            images = random_translate_flip(images, offsets[index].to(ctx.device), flips[index].to(ctx.device),
                                           self.p.translate)
        return {"image": images, "label": self.data.labels[index].to(ctx.device)}
