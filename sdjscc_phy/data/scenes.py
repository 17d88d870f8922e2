"""Multi-object detection scenes made from CIFAR-10 images, and the scene files that store them.

A scene is a square canvas (``canvas`` x ``canvas`` pixels, RGB) holding 1 to :data:`MAX_OBJECTS`
CIFAR-10 images ("objects") pasted at random sizes and positions over a background of shuffled 8 x 8
patches cut from other images of the same pool. The background has natural colours and textures but no
whole object in it, so every object a detector could find is labelled.

**Box convention.** An object's box is the extent of the pasted CIFAR image, ``[x0, y0, x1, y1]`` in
pixels (float32, ``x1 = x0 + width``: the right and bottom edges are exclusive, COCO's ``xywh`` is
``[x0, y0, x1 - x0, y1 - y0]``). A CIFAR image often shows its object in only part of the frame: the
box is the whole pasted image, so it also holds the object's own surroundings, and a detector learns to
find that frame. Later objects may cover part of an earlier one; placement keeps at least half of every
earlier box visible (see :func:`make_scene`).

**Fixed-size arrays.** A scene set holds ``images`` uint8 ``[S, 3, C, C]``, ``boxes`` float32
``[S, M, 4]``, ``labels`` int64 ``[S, M]`` and ``num_objects`` int64 ``[S]`` with ``M = MAX_OBJECTS``:
entries ``0 .. num_objects-1`` are the objects, the rest are padding (box zeros, label -1). A scene with
``num_objects = 0`` is valid (an image without objects: every detection in it is a false positive).

**Reproducibility.** Scene ``i`` depends only on (``version``, ``seed``, ``i``) and the image pool: a
per-scene ``numpy.random.default_rng([version, seed, i])``, so any range of scenes can be made without
making the ones before it. Training scenes come from the CIFAR-10 training images outside the fixed
validation split, evaluation scenes from the validation split only. The shipped sample
(``builtin/cifar10_detection_val_sample.npz``: 200 evaluation scenes, seed 0, version 1, 64 x 64) is
rebuilt byte for byte by ``python -m sdjscc_phy.data.scenes /path/to/cifar10/train``.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from sdjscc_phy.data.datasets import BUILTIN_DIR, ImageDataset, read_image_folder
from sdjscc_phy.errors import DataError
from sdjscc_phy.lazy import lazy_import

torch = lazy_import("torch")

#: The scene generator's algorithm version: a new version may change every scene, an old one never does.
GENERATOR_VERSION = 1
MAX_OBJECTS = 4
PATCH = 8  # background patch side, pixels; canvases are multiples of it
#: Object side as a fraction of the canvas (before the aspect-ratio jitter).
SCALE_RANGE = (0.25, 0.6)
MAX_LOG_ASPECT = 0.25
MIN_VISIBLE = 0.5  # fraction of every earlier box that a later object may not cover
PLACEMENT_TRIES = 20
BUILTIN_SCENES = BUILTIN_DIR / "cifar10_detection_val_sample.npz"
SAMPLE = {"num_scenes": 200, "seed": 0, "canvas": 64}


@dataclass
class SceneSet:
    """Scenes in fixed-size arrays (see the module docstring), their class names and how they were made.

    ``object_sources`` / ``background_sources``: index into the generating pool of each object's image
    (``-1`` for padding) and of each background image; empty arrays for sets read from a file or cut by
    :meth:`subset`.
    """

    images: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor
    num_objects: torch.Tensor
    class_names: tuple[str, ...]
    meta: dict = field(default_factory=dict)
    object_sources: np.ndarray = field(default_factory=lambda: np.zeros((0, MAX_OBJECTS), np.int64))
    background_sources: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def canvas(self) -> int:
        return self.images.shape[-1]

    def subset(self, indices) -> SceneSet:
        idx = torch.as_tensor(indices, dtype=torch.int64)
        return SceneSet(self.images[idx], self.boxes[idx], self.labels[idx], self.num_objects[idx],
                        self.class_names, dict(self.meta))


def check_canvas(canvas: int) -> None:
    if not isinstance(canvas, int) or canvas < 4 * PATCH or canvas % PATCH:
        raise DataError(f"canvas must be a multiple of {PATCH} pixels, at least {4 * PATCH}; got {canvas!r}")


def _background(pool: ImageDataset, sources: np.ndarray, canvas: int, rng: np.random.Generator) -> np.ndarray:
    """``canvas`` x ``canvas`` x 3 uint8: the 8 x 8 patches of the ``sources`` images, shuffled and tiled."""
    h, w = pool.image_shape[1:]
    images = pool.images[torch.as_tensor(sources)].numpy().transpose(0, 2, 3, 1)  # [b, h, w, 3]
    patches = images.reshape(len(sources), h // PATCH, PATCH, w // PATCH, PATCH, 3).transpose(0, 1, 3, 2, 4, 5)
    patches = patches.reshape(-1, PATCH, PATCH, 3)
    side = canvas // PATCH
    chosen = patches[rng.permutation(len(patches))[: side * side]]
    return chosen.reshape(side, side, PATCH, PATCH, 3).transpose(0, 2, 1, 3, 4).reshape(canvas, canvas, 3)


def _covered(box: tuple[int, int, int, int], other: np.ndarray) -> float:
    """Fraction of ``other``'s area that ``box`` covers."""
    iw = min(box[2], other[2]) - max(box[0], other[0])
    ih = min(box[3], other[3]) - max(box[1], other[1])
    area = (other[2] - other[0]) * (other[3] - other[1])
    return max(iw, 0) * max(ih, 0) / area


def make_scene(pool: ImageDataset, index: int, seed: int, canvas: int = 64, version: int = GENERATOR_VERSION):
    """Scene ``index`` of the set (``seed``, ``version``) drawn from ``pool`` (images with sides that are
    multiples of 8; CIFAR-10's 32 x 32 in the shipped sets).

    Returns (image uint8 ``[3, C, C]``, boxes float32 ``[M, 4]``, labels int64 ``[M]``, count,
    object sources ``[M]``, background sources). Draws, in order: the number of objects (uniform 1..M);
    distinct pool images for the objects and the background; then per object a side
    ``uniform(SCALE_RANGE) x canvas``, an aspect ratio ``exp(uniform(+-MAX_LOG_ASPECT))``, a horizontal
    flip (p = 0.5) and a position (uniform over the canvas), redrawing the position up to
    ``PLACEMENT_TRIES`` times while it would cover more than ``1 - MIN_VISIBLE`` of an earlier box
    (an object that finds no place is left out).
    """
    if version != GENERATOR_VERSION:
        raise DataError(f"scene generator version must be {GENERATOR_VERSION}; got {version!r}")
    check_canvas(canvas)
    rng = np.random.default_rng([version, seed, index])
    count = int(rng.integers(1, MAX_OBJECTS + 1))
    side_patches = (canvas // PATCH) ** 2
    per_image = (pool.image_shape[1] // PATCH) * (pool.image_shape[2] // PATCH)
    num_background = math.ceil(side_patches / per_image)
    if pool.image_shape[1] % PATCH or pool.image_shape[2] % PATCH:
        raise DataError(f"scene pool images must have sides that are multiples of {PATCH}; got {pool.image_shape}")
    if len(pool) < MAX_OBJECTS + num_background:
        raise DataError(f"the scene pool holds {len(pool)} images; a {canvas}x{canvas} scene needs "
                        f"{MAX_OBJECTS + num_background}")
    sources = rng.choice(len(pool), count + num_background, replace=False)
    canvas_image = _background(pool, sources[count:], canvas, rng)
    boxes = np.zeros((MAX_OBJECTS, 4), np.float32)
    labels = np.full(MAX_OBJECTS, -1, np.int64)
    object_sources = np.full(MAX_OBJECTS, -1, np.int64)
    placed = 0
    for source in sources[:count]:
        side = rng.uniform(*SCALE_RANGE) * canvas
        aspect = math.exp(rng.uniform(-MAX_LOG_ASPECT, MAX_LOG_ASPECT))
        width = int(np.clip(round(side * math.sqrt(aspect)), PATCH, canvas))
        height = int(np.clip(round(side / math.sqrt(aspect)), PATCH, canvas))
        flip = rng.random() < 0.5
        for _ in range(PLACEMENT_TRIES):
            x0, y0 = int(rng.integers(0, canvas - width + 1)), int(rng.integers(0, canvas - height + 1))
            box = (x0, y0, x0 + width, y0 + height)
            if all(_covered(box, boxes[j]) <= 1 - MIN_VISIBLE for j in range(placed)):
                break
        else:
            continue
        patch = Image.fromarray(pool.images[int(source)].numpy().transpose(1, 2, 0))
        if flip:
            patch = patch.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        canvas_image[y0:y0 + height, x0:x0 + width] = np.asarray(patch.resize((width, height), Image.BILINEAR))
        boxes[placed] = box
        labels[placed] = int(pool.labels[int(source)])
        object_sources[placed] = int(source)
        placed += 1
    return (canvas_image.transpose(2, 0, 1).copy(), boxes, labels, placed, object_sources, sources[count:])


def make_scenes(pool: ImageDataset, indices, seed: int, canvas: int = 64, version: int = GENERATOR_VERSION,
                meta: dict | None = None) -> SceneSet:
    """The scenes ``indices`` (an iterable of ints) of the set (``seed``, ``version``) drawn from ``pool``."""
    parts = [make_scene(pool, int(i), seed, canvas, version) for i in indices]
    if not parts:
        raise DataError("no scenes requested")
    images, boxes, labels, counts, objects, backgrounds = zip(*parts)
    return SceneSet(
        torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(boxes)), torch.from_numpy(np.stack(labels)),
        torch.tensor(counts, dtype=torch.int64), pool.class_names,
        {"seed": seed, "version": version, "canvas": canvas, **(meta or {})},
        np.stack(objects), np.stack(backgrounds),
    )


def generate_scene_set(root: str | Path, split: str, num_scenes: int, seed: int, canvas: int = 64,
                       version: int = GENERATOR_VERSION, split_file: str | Path | None = None) -> SceneSet:
    """``num_scenes`` scenes from the ``split`` (``train`` or ``val``) images of a CIFAR-10 ImageFolder tree."""
    if split not in ("train", "val"):
        raise DataError(f"scene split must be 'train' or 'val'; got {split!r}")
    pool = read_image_folder(root, split, split_file)
    return make_scenes(pool, range(num_scenes), seed, canvas, version, {"split": split})


def check_scene_arrays(images, boxes, labels, num_objects, num_classes: int, where: str) -> None:
    """DataError (naming ``where`` and the first bad scene/object) unless the arrays form a valid scene set:
    shapes ``[S, 3, C, C]``, ``[S, M, 4]``, ``[S, M]``, ``[S]``; counts in [0, M]; every counted box finite,
    of positive width and height, inside the canvas; every counted label a class index."""
    images, boxes, labels, counts = (np.asarray(a) for a in (images, boxes, labels, num_objects))
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[2] == 0 or images.shape[2] != images.shape[3]:
        raise DataError(f"{where}: images must be [S, 3, C, C] with C > 0; got {list(images.shape)}")
    if images.shape[0] == 0:
        raise DataError(f"{where}: holds no scenes")
    num = images.shape[0]
    if boxes.ndim != 3 or boxes.shape[0] != num or boxes.shape[2] != 4:
        raise DataError(f"{where}: boxes must be [{num}, M, 4]; got {list(boxes.shape)}")
    slots = boxes.shape[1]
    if labels.shape != (num, slots) or counts.shape != (num,):
        raise DataError(f"{where}: labels must be [{num}, {slots}] and num_objects [{num}]; "
                        f"got {list(labels.shape)} and {list(counts.shape)}")
    if counts.min() < 0 or counts.max() > slots:
        scene = int(np.argmax((counts < 0) | (counts > slots)))
        raise DataError(f"{where}: scene {scene}: num_objects must be in [0, {slots}]; got {counts[scene]}")
    side = images.shape[-1]
    valid = np.arange(slots)[None, :] < counts[:, None]
    width, height = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    problems = (
        (~np.isfinite(boxes).all(-1), "is not finite"),
        ((width <= 0) | (height <= 0), "has zero or negative width or height"),
        ((boxes < 0).any(-1) | (boxes[..., 2:] > side).any(-1), f"lies outside the {side}x{side} image"),
        ((labels < 0) | (labels >= num_classes), f"has a label outside [0, {num_classes})"),
    )
    for bad, message in problems:
        hits = np.argwhere(bad & valid)
        if len(hits):
            scene, obj = (int(v) for v in hits[0])
            raise DataError(f"{where}: scene {scene}, object {obj}: box {boxes[scene, obj].tolist()} "
                            f"label {labels[scene, obj]} {message}")


def save_scene_set(scenes: SceneSet, path: str | Path) -> None:
    """Write a compressed ``.npz`` (plain arrays and a JSON string: it loads without pickle)."""
    np.savez_compressed(
        path, images=scenes.images.numpy(), boxes=scenes.boxes.numpy(), labels=scenes.labels.numpy(),
        num_objects=scenes.num_objects.numpy(), class_names=np.array(scenes.class_names),
        meta=np.array(json.dumps(scenes.meta, sort_keys=True)),
    )


def read_scene_set(path: str | Path) -> SceneSet:
    """Read and check a scene file written by :func:`save_scene_set` (or by hand with the same arrays)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in ("images", "boxes", "labels", "num_objects", "class_names")}
            meta = json.loads(str(data["meta"])) if "meta" in data else {}
    except FileNotFoundError:
        raise DataError(f"scene file '{path}' does not exist") from None
    except KeyError as exc:
        raise DataError(f"scene file '{path}' lacks the array {exc}") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"scene file '{path}' is not a readable .npz: {exc}") from None
    if arrays["images"].dtype != np.uint8:
        raise DataError(f"scene file '{path}': images must be uint8; got {arrays['images'].dtype}")
    class_names = tuple(str(n) for n in arrays["class_names"])
    check_scene_arrays(arrays["images"], arrays["boxes"], arrays["labels"], arrays["num_objects"],
                       len(class_names), f"scene file '{path}'")
    return SceneSet(
        torch.from_numpy(arrays["images"]), torch.from_numpy(arrays["boxes"].astype(np.float32)),
        torch.from_numpy(arrays["labels"].astype(np.int64)), torch.from_numpy(arrays["num_objects"].astype(np.int64)),
        class_names, meta,
    )


def main(argv: list[str] | None = None) -> None:
    """Rebuild the shipped evaluation sample from a CIFAR-10 ImageFolder tree (training set layout)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m sdjscc_phy.data.scenes CIFAR10_TRAIN_ROOT")
    scenes = generate_scene_set(argv[0], "val", **SAMPLE)
    save_scene_set(scenes, BUILTIN_SCENES)
    print(f"wrote {len(scenes)} scenes ({int(scenes.num_objects.sum())} objects) to {BUILTIN_SCENES}")


if __name__ == "__main__":
    main()
