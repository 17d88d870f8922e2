"""Fixed dataset splits, stored as text files with one relative image path per line.

The CIFAR-10 validation split (``splits/cifar10_val.txt``) holds 500 images per class of the CIFAR-10
training set (ImageFolder layout ``<class>/NNNN.jpg``). It is made once by :func:`make_cifar10_val_split`
and shipped; no training stage ever reads these images. The builtin sample
(``builtin/cifar10_val_sample.zip``) is its first 100 images per class. Regenerate both with
``python -m sdjscc_phy.data.splits /path/to/cifar10/train``.
"""

from __future__ import annotations

import os
import sys
import zipfile
from pathlib import Path

import numpy as np

from sdjscc_phy.errors import DataError

SPLITS_DIR = Path(__file__).resolve().parent / "splits"
CIFAR10_VAL_SPLIT = SPLITS_DIR / "cifar10_val.txt"
CIFAR10_VAL_SEED = 20240501
CIFAR10_VAL_PER_CLASS = 500
BUILTIN_SAMPLE_PER_CLASS = 100
BUILTIN_SAMPLE_ZIP = Path(__file__).resolve().parent / "builtin" / "cifar10_val_sample.zip"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def list_image_folder(root: str | Path) -> list[str]:
    """Relative paths ``<class>/<file>`` of every image under ``root``, sorted by class then file name."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder '{root}' does not exist or is not a directory")
    # names sorted as strings (normcase: as Path objects sort, at a fraction of their cost for 50,000 files)
    classes = sorted((e.name for e in os.scandir(root) if e.is_dir()), key=os.path.normcase)
    paths = [
        f"{name}/{f}"
        for name in classes
        for f in sorted(os.listdir(root / name), key=os.path.normcase)
        if os.path.splitext(f)[1].lower() in IMAGE_SUFFIXES
    ]
    if not paths:
        raise DataError(f"image folder '{root}' holds no images in <class>/<image> layout")
    return paths


def make_cifar10_val_split(
    root: str | Path, per_class: int = CIFAR10_VAL_PER_CLASS, seed: int = CIFAR10_VAL_SEED
) -> list[str]:
    """Draw ``per_class`` images of every class without replacement.

    One ``numpy.random.default_rng(seed)`` draws a permutation of each class's sorted file list, classes
    in sorted order; the first ``per_class`` files of each permutation are kept in permutation order, so
    any prefix per class (e.g. the builtin sample's first 100) is itself a uniform random subset.
    """
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[str]] = {}
    for rel in list_image_folder(root):
        by_class.setdefault(rel.split("/", 1)[0], []).append(rel)
    chosen = []
    for name in sorted(by_class):
        files = by_class[name]
        if len(files) < per_class:
            raise DataError(f"class '{name}' in '{root}' has {len(files)} images; the split needs {per_class}")
        chosen += [files[i] for i in rng.permutation(len(files))[:per_class]]
    return chosen


def stratified_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Indices of ``size`` items drawn without replacement so that every class keeps its share.

    Class c of n_c items gets floor(size * n_c / n) items, the remaining ones going to the classes with
    the largest fractional parts (ties: lower class index); within a class the items are drawn uniformly
    at random. One ``numpy.random.default_rng(seed)`` draws everything, and the indices come back in a
    random order, so a prefix of them (``options.max_items`` below ``size``) is a random sample too,
    not a few whole classes.
    """
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    exact = size * counts / len(labels)
    quota = np.floor(exact).astype(int)
    by_remainder = np.argsort(-(exact - quota), kind="stable")
    quota[by_remainder[:size - quota.sum()]] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), q, replace=False) for c, q in zip(classes, quota)]
    return rng.permutation(np.concatenate(chosen))


def write_split_file(paths: list[str], out: str | Path, header: str) -> None:
    """Write ``paths`` one per line below a ``#`` comment header."""
    lines = [f"# {line}" for line in header.splitlines()] + list(paths)
    Path(out).write_text("\n".join(lines) + "\n")


def read_split_file(path: str | Path) -> list[str]:
    """Relative image paths listed in a split file (blank lines and ``#`` comments skipped)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"split file '{path}' does not exist")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"split file '{path}' is not UTF-8 text (one image path per line)") from None
    except OSError as err:
        raise DataError(f"split file '{path}' cannot be read: {err.strerror}") from None
    if "\x00" in text:
        raise DataError(f"split file '{path}' is a binary file, not one image path per line")
    paths = [s for s in (line.strip() for line in text.splitlines()) if s and not s.startswith("#")]
    if not paths:
        raise DataError(f"split file '{path}' lists no images")
    return paths


def cifar10_val_header(per_class: int = CIFAR10_VAL_PER_CLASS, seed: int = CIFAR10_VAL_SEED) -> str:
    return (
        f"CIFAR-10 validation split: {per_class} images per class ({10 * per_class} in all) of the CIFAR-10\n"
        f"training set, made by sdjscc_phy.data.splits.make_cifar10_val_split(root, per_class={per_class}, "
        f"seed={seed}):\n"
        "numpy.random.default_rng(seed) permutes each class's sorted file list (classes in sorted order)\n"
        "and the first images of each permutation are kept, in that order. Never used for training."
    )


def builtin_sample_paths(val_paths: list[str], per_class: int = BUILTIN_SAMPLE_PER_CLASS) -> list[str]:
    """The first ``per_class`` paths of every class in split order (the builtin sample's content)."""
    taken: dict[str, int] = {}
    chosen = []
    for rel in val_paths:
        name = rel.split("/", 1)[0]
        if taken.get(name, 0) < per_class:
            taken[name] = taken.get(name, 0) + 1
            chosen.append(rel)
    return chosen


def write_builtin_sample(root: str | Path, val_paths: list[str], out: str | Path = BUILTIN_SAMPLE_ZIP) -> None:
    """Zip the original JPEG bytes of :func:`builtin_sample_paths` in ImageFolder layout (stored, no recompression)."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
        for rel in builtin_sample_paths(val_paths):
            info = zipfile.ZipInfo(rel, date_time=(2020, 1, 1, 0, 0, 0))  # fixed date: byte-identical rebuilds
            zf.writestr(info, (Path(root) / rel).read_bytes())


def main(argv: list[str] | None = None) -> None:
    """Regenerate ``splits/cifar10_val.txt`` and the builtin sample zip from a CIFAR-10 ImageFolder tree."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m sdjscc_phy.data.splits CIFAR10_TRAIN_ROOT")
    val_paths = make_cifar10_val_split(argv[0])
    write_split_file(val_paths, CIFAR10_VAL_SPLIT, cifar10_val_header())
    write_builtin_sample(argv[0], val_paths)
    print(f"wrote {CIFAR10_VAL_SPLIT} and {BUILTIN_SAMPLE_ZIP}")


if __name__ == "__main__":
    main()
