"""Detection blocks: a source of multi-object scenes with boxes, and the CenterNet-style detector.

Objects per image vary, ports do not: a scene carries ``M`` object slots (``boxes`` ``[M, 4]``,
``labels`` ``[M]``) of which the first ``num_objects`` are objects and the rest padding (box zeros,
label -1); the detector likewise fills ``K = max_detections`` slots, best score first, and
``num_detections`` says how many count. Boxes are ``[x0, y0, x1, y1]`` in pixels, the right and bottom
edges exclusive. See ``sdjscc_phy/data/scenes.py`` for how scenes are made and what a box means.
"""

from __future__ import annotations

import functools
import os
from functools import cached_property

import numpy as np

from sdjscc_phy.core.block import Batch, BatchContext, Block, derive_key
from sdjscc_phy.core.params import Param
from sdjscc_phy.core.ports import Port, Shape
from sdjscc_phy.data.datasets import ImageDataset, read_image_folder
from sdjscc_phy.data.scenes import (
    BUILTIN_SCENES, GENERATOR_VERSION, MAX_OBJECTS, PATCH, SceneSet, make_scenes, read_scene_set,
)
from sdjscc_phy.errors import CheckpointError, PortError
from sdjscc_phy.lazy import lazy_import
from sdjscc_phy.models import DETECTOR_BACKBONES
from sdjscc_phy.models import DETECTOR_INPUT_MULTIPLE as INPUT_MULTIPLE
from sdjscc_phy.models import DETECTOR_STRIDE as STRIDE

torch = lazy_import("torch")
detector = lazy_import("sdjscc_phy.models.detector")
classifier = lazy_import("sdjscc_phy.models.classifier")


@functools.lru_cache(maxsize=2)
def _read_scene_file(path: str) -> SceneSet:
    return read_scene_set(path)


@functools.lru_cache(maxsize=2)
def _read_pool(root: str, split: str, split_file: str) -> ImageDataset:
    return read_image_folder(root, split, split_file or None)


class DetectionSource(Block):
    """Multi-object scenes (image, boxes, labels): the shipped sample, a scene file, or made from CIFAR-10."""

    type_name = "detection_source"
    host_path_on_device = True  # torch indexing/comparison: runs where the flowgraph's device is
    outputs = (
        Port("image", "float32", (3, "H", "W"), "RGB scene in [0, 1]"),
        Port("boxes", "float32", ("M", 4), "object boxes (x0, y0, x1, y1) in pixels; slots past num_objects are 0"),
        Port("labels", "int64", ("M",), "object classes; slots past num_objects are -1"),
        Port("num_objects", "int64", (), "objects in the scene (0..M)"),
    )
    params = (
        Param("dataset", "str", "builtin", choices=("builtin", "file", "folder"),
              doc="builtin: 200 shipped evaluation scenes (64x64); file: a scene .npz; folder: scenes made "
                  "on the fly from a CIFAR-10 ImageFolder tree"),
        Param("path", "path", "", doc="file: the scene .npz (arrays images, boxes, labels, num_objects, class_names)"),
        Param("root", "path", "", doc="folder: CIFAR-10 ImageFolder root (training set layout)"),
        Param("split", "str", "val", choices=("train", "val"),
              doc="folder: objects and backgrounds from the training images or the fixed validation split"),
        Param("split_file", "path", "", doc="folder: validation list to use instead of the shipped CIFAR-10 one"),
        Param("num_scenes", "int", 5000, low=1, unit="scenes", doc="folder: size of the scene set"),
        Param("scene_seed", "int", 0, low=0, doc="folder: seed of the scene set (not options.seed)"),
        Param("version", "int", GENERATOR_VERSION, choices=(GENERATOR_VERSION,), doc="folder: scene generator version"),
        Param("canvas", "int", 64, low=4 * PATCH, unit="pixels", doc=f"folder: scene side, a multiple of {PATCH}"),
        Param("new_scenes_per_epoch", "bool", False,
              doc="folder, training: epoch e reads scenes e*num_scenes .. (e+1)*num_scenes-1 of the set, so "
                  "no scene is seen twice"),
        Param("limit", "int", None, low=1, nullable=True, unit="scenes", doc="use only the first N scenes"),
        Param("shuffle", "bool", False, doc="seeded random order (options.seed)"),
    )

    def check_params(self) -> list[str]:
        p = self.p
        problems = []
        if p.dataset == "file" and not p.path:
            problems.append("parameter 'path': required for dataset 'file'")
        if p.dataset == "folder" and not p.root:
            problems.append("parameter 'root': required for dataset 'folder'")
        if p.new_scenes_per_epoch and p.dataset != "folder":
            problems.append("parameter 'new_scenes_per_epoch': needs dataset 'folder' (stored scenes are a fixed set)")
        if p.canvas % PATCH:
            problems.append(f"parameter 'canvas': must be a multiple of {PATCH}; got {p.canvas}")
        return problems

    @cached_property
    def scenes(self) -> SceneSet | None:
        """The stored scenes (builtin, file); None for folder scenes, which are made batch by batch."""
        if self.p.dataset == "folder":
            return None
        return _read_scene_file(str(BUILTIN_SCENES if self.p.dataset == "builtin" else os.path.abspath(self.p.path)))

    def num_items(self) -> int:
        total = self.p.num_scenes if self.scenes is None else len(self.scenes)
        return min(total, self.p.limit or total)

    def infer_shapes(self, input_shapes: dict[str, Shape]) -> dict[str, Shape]:
        if self.scenes is None:
            side, slots = self.p.canvas, MAX_OBJECTS
        else:
            side, slots = self.scenes.canvas, self.scenes.boxes.shape[1]
        return {"image": (3, side, side), "boxes": (slots, 4), "labels": (slots,), "num_objects": ()}

    def setup(self, ctx) -> None:
        order = np.arange(self.num_items())
        if self.p.shuffle:
            order = np.random.default_rng(ctx.seed).permutation(order)
        self._order = torch.from_numpy(order)
        if self.scenes is None:
            root, split_file = (os.path.abspath(path) if path else "" for path in (self.p.root, self.p.split_file))
            self._pool = _read_pool(root, self.p.split, split_file)

    def process_host(self, inputs: Batch, ctx: BatchContext) -> Batch:
        index = self._order[ctx.start:ctx.start + ctx.batch_size]
        if self.scenes is None:
            if self.p.new_scenes_per_epoch and ctx.epoch:  # the calibration pass (epoch -1) reads epoch 0's
                index = index + max(ctx.epoch, 0) * self.p.num_scenes
            scenes = make_scenes(self._pool, index.tolist(), self.p.scene_seed, self.p.canvas, self.p.version)
            index = torch.arange(len(index))
        else:
            scenes = self.scenes
        return {
            "image": scenes.images[index].to(ctx.device, non_blocking=True).float().div_(255.0),
            "boxes": scenes.boxes[index].to(ctx.device),
            "labels": scenes.labels[index].to(ctx.device),
            "num_objects": scenes.num_objects[index].to(ctx.device),
        }


class Detector(Block):
    """CenterNet-style object detector: image -> the best K boxes with scores and classes."""

    type_name = "detector"
    inputs = (Port("image", "float32", (3, "H", "W"), f"RGB image in [0, 1]; H, W multiples of {INPUT_MULTIPLE}"),)
    outputs = (
        Port("boxes", "float32", ("K", 4), "detected boxes (x0, y0, x1, y1) in pixels, best score first"),
        Port("scores", "float32", ("K",), "detection confidence in [0, 1]"),
        Port("labels", "int64", ("K",), "detected class"),
        Port("num_detections", "int64", (), "detections scoring above score_threshold (the first slots)"),
        Port("heatmap", "float32", ("C", "h", "w"), f"class-centre logits on the stride-{STRIDE} grid (h = H/{STRIDE}; "
             "the detection loss reads these maps)"),
        Port("size", "float32", (2, "h", "w"), "box width and height in pixels at each cell"),
        Port("offset", "float32", (2, "h", "w"), "box centre offset within each cell, in cells"),
    )
    params = (
        Param("checkpoint", "str", nullable=True,
              doc="a shipped detector name or a path; null: a fresh, untrained detector (for training)"),
        Param("width", "int", None, low=8, nullable=True,
              doc="channels at stride 4 (fresh detector; default 48; checked against a checkpoint's)"),
        Param("num_classes", "int", None, low=1, nullable=True,
              doc="heatmap classes (fresh detector; default 10; checked against a checkpoint's)"),
        Param("backbone", "str", None, nullable=True, choices=DETECTOR_BACKBONES,
              doc="trunk (fresh detector; default centernet, a residual encoder; vgg: the VGG classifier's "
                  "stages; checked against a checkpoint's)"),
        Param("init_backbone", "str", None, nullable=True,
              doc="fresh vgg detector: the VGG classifier checkpoint (shipped name or path) whose trunk "
                  "weights it starts from; null: random weights"),
        Param("frozen_stages", "int", 0, low=0, high=3,
              doc="vgg backbone, training: the first N VGG stages keep their weights and BatchNorm statistics"),
        Param("max_detections", "int", 50, low=1, doc="K: detections kept per image (heatmap peaks by score; "
              "slots beyond the heatmap's cells are padding with score 0)"),
        Param("score_threshold", "float", 0.0, low=0.0, high=1.0,
              doc="detections scoring at most this are not counted (0: all K count, as COCO evaluation expects)"),
    )

    def check_params(self) -> list[str]:
        p, problems = self.p, []
        vgg = p.backbone == "vgg" or (p.backbone is None and p.checkpoint is not None)  # a checkpoint's is known later
        if p.init_backbone is not None and (p.checkpoint is not None or p.backbone != "vgg"):
            problems.append("parameter 'init_backbone': only for a fresh detector (checkpoint: null) with backbone: vgg")
        if p.frozen_stages and not vgg:
            problems.append("parameter 'frozen_stages': only for backbone: vgg")
        return problems

    #: The flowgraph seed (``setup`` sets it); a fresh model built before setup (a frozen, untrained
    #: detector in a training stage) starts from seed 0.
    _seed = 0

    @cached_property
    def model(self):
        model = self._fresh_model() if self.p.checkpoint is None else self._loaded_model()
        if self.p.frozen_stages:
            if model.arch["backbone"] != "vgg":
                raise CheckpointError(f"block '{self.id}': parameter 'frozen_stages' needs a vgg detector; "
                                      f"checkpoint '{self.p.checkpoint}' has backbone {model.arch['backbone']}")
            model.freeze_stages(self.p.frozen_stages)
        return model

    def _given_arch(self) -> dict:
        return {name: getattr(self.p, name) for name in ("width", "num_classes", "backbone")
                if getattr(self.p, name) is not None}

    def _fresh_model(self):
        # A fresh detector's initial weights are a function of the flowgraph seed and the block id
        # (not of whatever the global generator did before), so a training recipe is reproducible.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_key(self._seed, self.id))
            if self.p.init_backbone is None:
                return detector.build_detector(**self._given_arch())
            try:
                trunk = classifier.load_classifier(self.p.init_backbone)
                model = detector.build_detector(**self._given_arch(), vgg_widths=trunk.arch.get("widths"))
                model.init_from_classifier(trunk)
            except (CheckpointError, ValueError) as exc:
                raise CheckpointError(f"block '{self.id}': parameter 'init_backbone': {exc}") from None
            return model

    def _loaded_model(self):
        loaded = detector.load_detector(self.p.checkpoint)
        for name, value in self._given_arch().items():
            if loaded.arch[name] != value:
                raise CheckpointError(f"block '{self.id}': parameter '{name}' is {value} but checkpoint "
                                      f"'{self.p.checkpoint}' has {loaded.arch[name]}; checkpoint: null builds a "
                                      "fresh detector")
        return loaded

    def infer_shapes(self, input_shapes: dict[str, Shape]) -> dict[str, Shape]:
        _, height, width = input_shapes["image"]
        for name, size in (("H", height), ("W", width)):
            if isinstance(size, int) and size % INPUT_MULTIPLE:
                raise PortError(f"input port 'image': {name} = {size} is not a multiple of {INPUT_MULTIPLE}")
        # The checkpoint is not read here: a flowgraph validates before its detector is trained.
        slots = self.p.max_detections
        grid = tuple(size // STRIDE if isinstance(size, int) else symbol
                     for size, symbol in ((height, "h"), (width, "w")))
        return {"boxes": (slots, 4), "scores": (slots,), "labels": (slots,), "num_detections": (),
                "heatmap": (self.p.num_classes or "C", *grid), "size": (2, *grid), "offset": (2, *grid)}

    def setup(self, ctx) -> None:
        self._seed = ctx.seed
        # channels-last: on CPU the convolutions run about twice as fast (measured in docs/detection.md)
        self.model.to(ctx.device, memory_format=torch.channels_last)

    def process_torch(self, inputs: Batch, ctx: BatchContext) -> Batch:
        image = inputs["image"].contiguous(memory_format=torch.channels_last)
        maps = self.model(image)
        boxes, scores, labels = detector.decode_detections(maps, tuple(image.shape[-2:]), self.p.max_detections)
        return {"boxes": boxes, "scores": scores, "labels": labels,
                "num_detections": (scores > self.p.score_threshold).sum(dim=1), **maps}

    # -- training ---------------------------------------------------------------------------------
    def modules(self) -> dict[str, torch.nn.Module]:
        return {"model": self.model}

    def parameter_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        """``default``, and for a vgg detector ``backbone``: the VGG stages, pretrained, which a recipe may
        train with a smaller learning rate (``optimizer.group_scales.backbone``)."""
        if self.model.arch["backbone"] != "vgg":
            return super().parameter_groups()
        backbone = {id(p) for p in self.model.vgg.parameters()}
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        return {"default": [p for p in trainable if id(p) not in backbone],
                "backbone": [p for p in trainable if id(p) in backbone]}

    @classmethod
    def export(cls, blocks: list[Block], path: str, metadata: dict) -> None:
        (block,) = blocks
        detector.export_detector(block.model, path, metadata)
