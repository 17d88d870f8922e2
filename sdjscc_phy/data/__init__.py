"""Datasets: readers returning uint8 ``[N, 3, H, W]`` images, fixed splits, and the builtin sample set."""

from sdjscc_phy.data.datasets import (
    CIFAR10_CLASSES, ImageDataset, cache_dir, load_dataset, read_builtin, read_cifar10_batches, read_image_folder,
)
from sdjscc_phy.data.splits import CIFAR10_VAL_SPLIT, make_cifar10_val_split, read_split_file

__all__ = [
    "CIFAR10_CLASSES", "CIFAR10_VAL_SPLIT", "ImageDataset", "cache_dir", "load_dataset", "make_cifar10_val_split",
    "read_builtin", "read_cifar10_batches", "read_image_folder", "read_split_file",
]
