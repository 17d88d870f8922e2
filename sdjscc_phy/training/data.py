"""Training and validation sets of a stage, from its recipe ``data`` section."""

from __future__ import annotations

import torch

from sdjscc_phy.data.datasets import ImageDataset, load_dataset
from sdjscc_phy.errors import RecipeError

# The validation split of each data format: ImageFolder trees use the split file, pickle batches 'test'.
SPLIT_NAMES = {"imagefolder": ("train", "val"), "cifar10_batches": ("train", "test")}
DATA_DEFAULTS = {"format": "imagefolder", "root": None, "split_file": None, "train_limit": None, "val_limit": None}


def load_train_val(stage) -> tuple[ImageDataset, ImageDataset]:
    """(train, val) of ``stage.config['data']``; ``*_limit`` keeps a seeded subset (smoke runs, quick evals)."""
    data = stage.config["data"]
    if data["format"] not in SPLIT_NAMES:
        raise RecipeError(f"recipe: stage '{stage.name}': data.format must be one of {tuple(SPLIT_NAMES)}; "
                          f"got '{data['format']}'")
    train_split, val_split = SPLIT_NAMES[data["format"]]
    options = {"split_file": data["split_file"]} if data["format"] == "imagefolder" else {}
    train_set = load_dataset(data["format"], data["root"], train_split, **options)
    val_set = load_dataset(data["format"], data["root"], val_split, **options)
    return _limit(stage, train_set, data["train_limit"], 1), _limit(stage, val_set, data["val_limit"], 2)


def _limit(stage, dataset: ImageDataset, limit: int | None, stream: int) -> ImageDataset:
    if limit is None or limit >= len(dataset):
        return dataset
    keep = torch.randperm(len(dataset), generator=stage.epoch_generator(-1, stream))[:limit]
    return dataset.subset(keep.sort().values)
