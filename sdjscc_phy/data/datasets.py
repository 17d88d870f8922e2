"""Image dataset readers: ImageFolder trees, CIFAR-10 python pickle batches, and the builtin sample.

Every reader returns an :class:`ImageDataset`: all images decoded into one uint8 tensor ``[N, 3, H, W]``
(RGB, 0..255) with int64 labels and the class names in sorted folder order. Decoding tens of thousands
of JPEGs takes a while, so ImageFolder reads are cached as ``.npy`` in the cache directory
(``$JSCCFLOW_CACHE``, default ``~/.cache/jsccflow``), keyed by a hash of the root, the file list (names,
sizes, modification times) and the resize/crop settings.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from sdjscc_phy.data.splits import CIFAR10_VAL_SPLIT, list_image_folder, read_split_file
from sdjscc_phy.errors import DataError
from sdjscc_phy.lazy import lazy_import

torch = lazy_import("torch")

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"
BUILTIN_SETS = {"cifar10_val_sample": BUILTIN_DIR / "cifar10_val_sample.zip"}
SPLITS = ("all", "train", "val")


class ImageDataset:
    """Decoded images in memory, read in batches by index range (the streaming interface of source blocks).

    ``images``: uint8 ``[N, 3, H, W]``; ``labels``: int64 ``[N]``; ``class_names``: label ``i`` is
    ``class_names[i]``; ``paths``: where each image came from (for reports), or ``None``.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        class_names: tuple[str, ...],
        paths: list[str] | None = None,
    ):
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise DataError(f"images must be uint8 [N, 3, H, W]; got {images.dtype} {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise DataError(f"labels must have shape ({images.shape[0]},); got {tuple(labels.shape)}")
        self.images = images
        self.labels = labels.to(torch.int64)
        self.class_names = tuple(class_names)
        self.paths = paths

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def get_batch(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Images uint8 ``[b, 3, H, W]`` and labels int64 ``[b]`` of items ``start..stop-1`` (clipped to N)."""
        return self.images[start:stop], self.labels[start:stop]

    def iter_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self), batch_size):
            yield self.get_batch(start, start + batch_size)

    def subset(self, indices: torch.Tensor | list[int]) -> ImageDataset:
        idx = torch.as_tensor(indices, dtype=torch.int64)
        paths = [self.paths[i] for i in idx.tolist()] if self.paths is not None else None
        return ImageDataset(self.images[idx], self.labels[idx], self.class_names, paths)


def cache_dir() -> Path:
    """Where decoded datasets are cached: ``$JSCCFLOW_CACHE`` or ``~/.cache/jsccflow``."""
    return Path(os.environ.get("JSCCFLOW_CACHE") or Path.home() / ".cache" / "jsccflow")


#: Largest image decoded, in pixels (a CIFAR-10 image has 1,024; a 4K photo 8.3 million). Pillow's own
#: bomb check only warns below twice its limit, so a header claiming more is refused here before decoding.
MAX_IMAGE_PIXELS = 64_000_000


def _resized(size: tuple[int, int], resize: int | None) -> tuple[int, int]:
    """(width, height) after scaling the shorter side of ``size`` to ``resize``."""
    if resize is None:
        return size
    w, h = size
    scale = resize / min(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _crop_box(size: tuple[int, int], center_crop: int | None, source) -> tuple[int, int, int, int] | None:
    """The centred square of side ``center_crop`` in an image of ``size`` (None: no crop)."""
    if center_crop is None:
        return None
    w, h = size
    if center_crop > min(w, h):
        raise DataError(f"center_crop={center_crop} is larger than the image ({w}x{h}) from {source}")
    left, top = (w - center_crop) // 2, (h - center_crop) // 2
    return left, top, left + center_crop, top + center_crop


def _open(source) -> Image.Image:
    """The image, header read and size checked (Pillow decodes pixels only when they are used)."""
    img = Image.open(source)
    if img.width * img.height > MAX_IMAGE_PIXELS:
        img.close()
        raise ValueError(f"image of {img.width}x{img.height} pixels is larger than {MAX_IMAGE_PIXELS:,} pixels")
    return img


def _decode(source, resize: int | None, center_crop: int | None) -> np.ndarray:
    """One image as uint8 ``[H, W, 3]``; ``resize`` scales the shorter side, ``center_crop`` cuts a square."""
    with _open(source) as img:
        img = img.convert("RGB")
        if resize is not None:
            img = img.resize(_resized(img.size, resize), Image.BILINEAR)
        box = _crop_box(img.size, center_crop, source)
        if box is not None:
            img = img.crop(box)
        return np.asarray(img, dtype=np.uint8)


def _decoded_shape(source, resize: int | None, center_crop: int | None) -> tuple[int, int, int]:
    """``(3, H, W)`` that :func:`_decode` gives for ``source``, from its header alone."""
    with _open(source) as img:
        size = _resized(img.size, resize)
    if _crop_box(size, center_crop, source) is not None:
        size = (center_crop, center_crop)
    return 3, size[1], size[0]


def _read_each(names: list[str], read: Callable[[str], object]) -> list:
    """``read(name)`` for every name; a file Pillow cannot read is a DataError naming it."""
    out = []
    for name in names:
        try:
            out.append(read(name))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            # (SyntaxError: some of Pillow's format parsers raise it for a corrupt header)
            reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise DataError(f"cannot decode image '{name}': {reason}") from None
    return out


def _decode_all(names: list[str], opener: Callable[[str], object], resize, center_crop) -> np.ndarray:
    arrays = _read_each(names, lambda name: _decode(opener(name), resize, center_crop))
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise DataError(f"images differ in size ({sorted(shapes)[:3]}...); set resize/center_crop to read them")
    return np.ascontiguousarray(np.stack(arrays).transpose(0, 3, 1, 2))


def _labels(rel_paths: list[str], class_names: tuple[str, ...]) -> torch.Tensor:
    index = {name: i for i, name in enumerate(class_names)}
    return torch.tensor([index[p.split("/", 1)[0]] for p in rel_paths], dtype=torch.int64)


def image_folder_paths(root: str | Path, split: str = "all",
                       split_file: str | Path | None = None) -> tuple[list[str], tuple[str, ...]]:
    """(relative paths, class names) of ``split`` of the ImageFolder tree ``root``, in the order
    :func:`read_image_folder` reads them; only the directory listing and the split file are read."""
    if split not in SPLITS:
        raise DataError(f"split must be one of {SPLITS}; got '{split}'")
    root = Path(root).expanduser()
    every = list_image_folder(root)
    class_names = tuple(sorted({p.split("/", 1)[0] for p in every}))
    if split == "all":
        rel_paths = every
    else:
        listed = read_split_file(CIFAR10_VAL_SPLIT if split_file is None else split_file)
        present = set(every)
        missing = [p for p in listed if p not in present]
        if missing:
            raise DataError(
                f"split file '{split_file or CIFAR10_VAL_SPLIT}' lists {len(missing)} images not under "
                f"'{root}' (first: '{missing[0]}')"
            )
        excluded = set(listed)
        rel_paths = listed if split == "val" else [p for p in every if p not in excluded]
    if not rel_paths:
        raise DataError(f"split '{split}' of '{root}' holds no images")
    return rel_paths, class_names


def describe_image_folder(root: str | Path, split: str = "all", split_file: str | Path | None = None, *,
                          resize: int | None = None, center_crop: int | None = None) -> tuple[int, tuple[int, int, int]]:
    """(number of images, ``(3, H, W)``) that :func:`read_image_folder` would give, without decoding: the
    listing and the first image's header (images of other sizes are refused when they are decoded)."""
    root = Path(root).expanduser()
    rel_paths, _ = image_folder_paths(root, split, split_file)
    (shape,) = _read_each(rel_paths[:1], lambda p: _decoded_shape(root / p, resize, center_crop))
    return len(rel_paths), shape


def describe_builtin(name: str = "cifar10_val_sample") -> tuple[int, tuple[int, int, int]]:
    """(number of images, ``(3, H, W)``) of a builtin sample set from its zip listing and first image's header."""
    with _builtin_zip(name) as zf:
        rel_paths = _zip_images(zf)
        (shape,) = _read_each(rel_paths[:1], lambda p: _decoded_shape(io.BytesIO(zf.read(p)), None, None))
    return len(rel_paths), shape


def read_image_folder(
    root: str | Path,
    split: str = "all",
    split_file: str | Path | None = None,
    *,
    resize: int | None = None,
    center_crop: int | None = None,
    use_cache: bool = True,
) -> ImageDataset:
    """Read an ImageFolder tree ``root/<class>/<image>``.

    ``split='all'`` reads every image (sorted by class, then file name); ``'val'`` reads the images
    listed in ``split_file`` in its order; ``'train'`` reads every image *not* listed there. The default
    ``split_file`` is the shipped CIFAR-10 validation split. Class names are the sorted sub-folder names.
    """
    root = Path(root).expanduser()
    rel_paths, class_names = image_folder_paths(root, split, split_file)
    images = None
    cache_file = None
    if use_cache:
        stats = [(p, *_size_mtime(root / p)) for p in rel_paths]
        key_src = json.dumps([str(root.resolve()), resize, center_crop, stats])
        key = hashlib.sha256(key_src.encode()).hexdigest()[:24]
        cache_file = cache_dir() / f"imagefolder-{key}.npy"
        images = _load_cached(cache_file, len(rel_paths))
    if images is None:
        images = _decode_all(rel_paths, lambda p: root / p, resize, center_crop)
        if cache_file is not None:
            _save_cached(cache_file, images)
    return ImageDataset(torch.from_numpy(images), _labels(rel_paths, class_names), class_names, rel_paths)


def _size_mtime(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _load_cached(path: Path, count: int) -> np.ndarray | None:
    """The cached array, or ``None`` when it is absent or unreadable (then it is decoded again)."""
    try:
        arr = np.load(path)
    except (OSError, ValueError, EOFError):
        return None
    ok = arr.dtype == np.uint8 and arr.ndim == 4 and arr.shape[0] == count and arr.shape[1] == 3
    return arr if ok else None


def _save_cached(path: Path, images: np.ndarray) -> None:
    """Atomic write; a read-only or full cache directory only costs speed, never correctness."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, images)
        os.replace(tmp, path)
    except OSError:
        pass


class _CifarUnpickler(pickle.Unpickler):
    """Admits only what a CIFAR-10 python batch holds (dicts, lists, bytes, numbers, numpy arrays): any
    other global (``os.system``, ``builtins.eval``, ...) is refused before it can be called."""

    ALLOWED = frozenset({
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
    })

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused global {module[:40]}.{name[:40]} (a CIFAR-10 batch holds only "
                                         "arrays, lists, bytes and numbers)")
        return super().find_class(module, name)


def _load_cifar_pickle(path: Path) -> dict:
    """One CIFAR-10 pickle (a batch or ``batches.meta``) through :class:`_CifarUnpickler`; DataError otherwise."""
    try:
        with open(path, "rb") as f:
            data = _CifarUnpickler(f, encoding="bytes").load()
    except Exception as exc:  # noqa: BLE001 - a hostile or truncated pickle raises almost any type
        raise DataError(f"CIFAR-10 file '{path}' is not a valid pickle batch: {str(exc)[:120] or type(exc).__name__}") \
            from None
    if not isinstance(data, dict):
        raise DataError(f"CIFAR-10 file '{path}' is not a valid pickle batch: it holds a {type(data).__name__}, "
                        "not a dict")
    return data


def read_cifar10_batches(root: str | Path, split: str = "train") -> ImageDataset:
    """Read the CIFAR-10 python version (``data_batch_1..5`` for ``'train'``, ``test_batch`` for ``'test'``)."""
    names = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    if split not in names:
        raise DataError(f"split must be one of ('train', 'test') for CIFAR-10 batches; got '{split}'")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"CIFAR-10 batches directory '{root}' does not exist")
    images, labels = [], []
    for name in names[split]:
        path = root / name
        if not path.is_file():
            raise DataError(f"CIFAR-10 batch file '{path}' is missing")
        batch = _load_cifar_pickle(path)
        try:
            data = np.asarray(batch[b"data"])
            if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
                raise ValueError(f"data is {data.dtype} {data.shape}, not uint8 (N, 3072)")
            batch_labels = [int(v) for v in batch[b"labels"]]
            if len(batch_labels) != data.shape[0] or not all(0 <= v < len(CIFAR10_CLASSES) for v in batch_labels):
                raise ValueError("labels do not give one class 0..9 per image")
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"CIFAR-10 batch file '{path}' is not a valid batch: {str(exc)[:120]}") from None
        images.append(data.reshape(-1, 3, 32, 32))
        labels += batch_labels
    class_names = CIFAR10_CLASSES
    meta = root / "batches.meta"
    if meta.is_file():
        names = _load_cifar_pickle(meta).get(b"label_names")
        if not (isinstance(names, list) and len(names) == len(CIFAR10_CLASSES)
                and all(isinstance(n, bytes) for n in names)):
            raise DataError(f"CIFAR-10 file '{meta}' is not a valid batches.meta: no list of 10 label names")
        class_names = tuple(n.decode("utf-8", "replace") for n in names)
    return ImageDataset(
        torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.int64), class_names
    )


def read_builtin(name: str = "cifar10_val_sample") -> ImageDataset:
    """A sample set shipped inside the package (ImageFolder layout in a zip, original JPEG bytes).

    ``cifar10_val_sample``: 1,000 images of the CIFAR-10 validation split, the first 100 per class in
    split order.
    """
    with _builtin_zip(name) as zf:
        rel_paths = _zip_images(zf)
        class_names = tuple(sorted({p.split("/", 1)[0] for p in rel_paths}))
        images = _decode_all(rel_paths, lambda p: io.BytesIO(zf.read(p)), None, None)
    return ImageDataset(torch.from_numpy(images), _labels(rel_paths, class_names), class_names, rel_paths)


def _builtin_zip(name: str) -> zipfile.ZipFile:
    if name not in BUILTIN_SETS:
        raise DataError(f"builtin dataset must be one of {tuple(BUILTIN_SETS)}; got '{name}'")
    path = BUILTIN_SETS[name]
    if not path.is_file():
        raise DataError(f"builtin dataset file '{path}' is missing from the installation")
    return zipfile.ZipFile(path)


def _zip_images(zf: zipfile.ZipFile) -> list[str]:
    return sorted(n for n in zf.namelist() if not n.endswith("/"))


def load_dataset(data_format: str, root: str | Path | None = None, split: str = "all", **options) -> ImageDataset:
    """Dispatch on ``data_format`` (``imagefolder``, ``cifar10_batches``, ``builtin``), e.g. from a recipe."""
    if data_format == "imagefolder":
        if root is None:
            raise DataError("format 'imagefolder' needs a root directory")
        return read_image_folder(root, split, **options)
    if data_format == "cifar10_batches":
        if root is None:
            raise DataError("format 'cifar10_batches' needs a root directory")
        return read_cifar10_batches(root, split, **options)
    if data_format == "builtin":
        return read_builtin(**options)
    raise DataError(f"dataset format must be one of ('imagefolder', 'cifar10_batches', 'builtin'); got '{data_format}'")
