"""Dataset readers, the fixed CIFAR-10 validation split and the builtin sample set."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sdjscc_phy.data import datasets
from sdjscc_phy.data.datasets import (
    CIFAR10_CLASSES, load_dataset, read_builtin, read_cifar10_batches, read_image_folder,
)
from sdjscc_phy.data.splits import (
    BUILTIN_SAMPLE_ZIP, CIFAR10_VAL_SPLIT, builtin_sample_paths, make_cifar10_val_split, read_split_file,
    write_split_file,
)
from sdjscc_phy.errors import DataError

SHARED_CIFAR10 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10" / "train"
needs_shared = pytest.mark.skipif(not SHARED_CIFAR10.is_dir(), reason="shared CIFAR-10 data not present")


def make_image_folder(root: Path, classes=("cat", "ant", "bee"), per_class=4, size=(8, 8), fmt="PNG") -> Path:
    """Tiny ImageFolder tree; pixel values encode (class, index) so order can be checked exactly (PNG)."""
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            arr = np.full((size[1], size[0], 3), 10 * c + i, dtype=np.uint8)
            Image.fromarray(arr).save(root / name / f"{i:04d}.{fmt.lower()}", fmt)
    return root


def test_image_folder_reads_uint8_nchw_with_sorted_class_names(tmp_path):
    root = make_image_folder(tmp_path / "tree")
    ds = read_image_folder(root)
    assert ds.class_names == ("ant", "bee", "cat")
    assert ds.images.dtype == torch.uint8 and ds.images.shape == (12, 3, 8, 8)
    assert ds.labels.dtype == torch.int64 and ds.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert ds.images[:, 0, 0, 0].tolist() == [10, 11, 12, 13, 20, 21, 22, 23, 0, 1, 2, 3]
    images, labels = ds.get_batch(10, 20)
    assert images.shape == (2, 3, 8, 8) and labels.tolist() == [2, 2]
    assert sum(len(b[1]) for b in ds.iter_batches(5)) == len(ds) == 12


def test_split_file_selects_val_in_list_order_and_train_as_the_rest(tmp_path):
    root = make_image_folder(tmp_path / "tree")
    split = tmp_path / "val.txt"
    write_split_file(["cat/0002.png", "ant/0001.png"], split, "two images")
    val = read_image_folder(root, "val", split)
    train = read_image_folder(root, "train", split)
    assert val.paths == ["cat/0002.png", "ant/0001.png"] and val.labels.tolist() == [2, 0]
    assert len(train) == 10 and not set(train.paths) & set(val.paths)
    assert train.class_names == val.class_names == ("ant", "bee", "cat")


def test_decoded_images_are_cached_and_reused(tmp_path, monkeypatch):
    root = make_image_folder(tmp_path / "tree")
    first = read_image_folder(root)
    assert len(list((tmp_path / "cache").glob("imagefolder-*.npy"))) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(datasets, "_decode", no_decoding)
    assert torch.equal(read_image_folder(root).images, first.images)


def test_resize_and_center_crop_make_mixed_sizes_readable(tmp_path):
    root = make_image_folder(tmp_path / "tree", classes=("a",), per_class=1, size=(20, 10))
    make_image_folder(tmp_path / "tree2", classes=("a",), per_class=1, size=(12, 12))
    (root / "a" / "0001.png").write_bytes((tmp_path / "tree2" / "a" / "0000.png").read_bytes())
    with pytest.raises(DataError, match="differ in size"):
        read_image_folder(root, use_cache=False)
    ds = read_image_folder(root, resize=8, center_crop=8)
    assert ds.images.shape == (2, 3, 8, 8)


@pytest.mark.parametrize("case", ["missing", "empty"])
def test_missing_or_empty_root_is_a_one_line_data_error(tmp_path, case):
    root = tmp_path / "tree"
    if case == "empty":
        root.mkdir()
    with pytest.raises(DataError, match="tree") as info:
        read_image_folder(root)
    assert "\n" not in str(info.value)


def test_missing_split_file_or_listed_image_is_a_data_error(tmp_path):
    root = make_image_folder(tmp_path / "tree")
    with pytest.raises(DataError, match="split file .*nope.txt"):
        read_image_folder(root, "val", tmp_path / "nope.txt")
    split = tmp_path / "val.txt"
    write_split_file(["cat/9999.png"], split, "missing image")
    with pytest.raises(DataError, match="not under"):
        read_image_folder(root, "train", split)


def test_cifar10_pickle_batches(tmp_path):
    rng = np.random.default_rng(0)
    for name, n in [(f"data_batch_{i}", 3) for i in range(1, 6)] + [("test_batch", 2)]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(range(n))}
        (tmp_path / name).write_bytes(pickle.dumps(batch))
    train = read_cifar10_batches(tmp_path, "train")
    test = load_dataset("cifar10_batches", tmp_path, "test")
    assert train.images.shape == (15, 3, 32, 32) and len(test) == 2
    assert train.class_names == CIFAR10_CLASSES and test.labels.tolist() == [0, 1]
    with pytest.raises(DataError, match="does not exist"):
        read_cifar10_batches(tmp_path / "nope", "train")
    (tmp_path / "data_batch_5").unlink()
    with pytest.raises(DataError, match="data_batch_5"):
        read_cifar10_batches(tmp_path, "train")


def test_builtin_sample_has_100_images_per_class_from_the_validation_split():
    ds = read_builtin("cifar10_val_sample")
    assert ds.class_names == CIFAR10_CLASSES
    assert ds.images.shape == (1000, 3, 32, 32)
    assert torch.bincount(ds.labels).tolist() == [100] * 10
    assert sorted(ds.paths) == sorted(builtin_sample_paths(read_split_file(CIFAR10_VAL_SPLIT)))
    assert BUILTIN_SAMPLE_ZIP.stat().st_size <= 2 * 2**20


def test_shipped_split_has_500_per_class_and_no_duplicates():
    paths = read_split_file(CIFAR10_VAL_SPLIT)
    assert len(paths) == len(set(paths)) == 5000
    classes = [p.split("/")[0] for p in paths]
    assert {c: classes.count(c) for c in CIFAR10_CLASSES} == {c: 500 for c in CIFAR10_CLASSES}


@needs_shared
def test_shipped_split_matches_its_generator_and_is_disjoint_from_train():
    assert read_split_file(CIFAR10_VAL_SPLIT) == make_cifar10_val_split(SHARED_CIFAR10)
    from sdjscc_phy.data.splits import list_image_folder

    every = list_image_folder(SHARED_CIFAR10)
    val = set(read_split_file(CIFAR10_VAL_SPLIT))
    train = [p for p in every if p not in val]
    assert len(train) == 45000 and val <= set(every)


@needs_shared
def test_builtin_zip_holds_the_original_jpeg_bytes():
    with zipfile.ZipFile(BUILTIN_SAMPLE_ZIP) as zf:
        for name in zf.namelist()[::97]:
            assert zf.read(name) == (SHARED_CIFAR10 / name).read_bytes()


def test_image_source_limit_takes_a_seeded_class_stratified_subset():
    from sdjscc_phy.blocks.image_source import ImageSource

    def labels(**params):
        return ImageSource("src", dataset="builtin", limit=105, **params).data.labels

    stratified = labels()
    assert sorted(torch.bincount(stratified, minlength=10).tolist()) == [10] * 5 + [11] * 5  # 105 over 10 classes
    assert len(set(stratified[:20].tolist())) > 5  # random order: a prefix is not one or two classes
    assert torch.equal(stratified, labels())  # seeded
    assert not torch.equal(stratified, labels(subset_seed=1))
    first = labels(subset="first")
    assert first.tolist() == [0] * 100 + [1] * 5  # the class-sorted head, only when asked for


def _folder_flowgraph(root: Path, **params) -> str:
    extra = "".join(f", {k}: {v}" for k, v in params.items())
    return f"""
options: {{batch_size: 5}}
blocks:
  - {{id: src, type: image_source, params: {{dataset: folder, root: '{root}'{extra}}}}}
  - {{id: out, type: metric_sink, params: {{metrics: [psnr_db]}}}}
connections: [src.image -> out.image, src.image -> out.image_hat]
"""


@pytest.mark.parametrize("params, shape", [({}, (3, 10, 20)), ({"resize": 8}, (3, 8, 16)),
                                           ({"resize": 8, "crop": 6}, (3, 6, 6))])
def test_validating_a_folder_source_decodes_no_image(tmp_path, monkeypatch, params, shape):
    from sdjscc_phy.core.flowgraph import load_flowgraph

    root = make_image_folder(tmp_path / "tree", size=(20, 10))
    decode = datasets._decode

    def no_decoding(*args, **kwargs):
        raise AssertionError("validation decoded an image")

    monkeypatch.setattr(datasets, "_decode", no_decoding)
    fg = load_flowgraph(_folder_flowgraph(root, limit=7, subset="first", **params))
    assert fg.output_shapes[("src", "image")] == shape and fg.blocks["src"].num_items() == 7
    monkeypatch.setattr(datasets, "_decode", decode)  # running decodes, to the shape validation promised
    assert fg.blocks["src"].data.image_shape == shape and len(fg.blocks["src"].data) == 7


def test_a_folder_that_changed_after_validation_stops_the_run_before_it_starts(tmp_path):
    from sdjscc_phy.core.flowgraph import load_flowgraph
    from sdjscc_phy.core.scheduler import run_flowgraph

    root = make_image_folder(tmp_path / "tree")
    fg = load_flowgraph(_folder_flowgraph(root))
    (root / "ant" / "0000.png").unlink()
    with pytest.raises(DataError, match="holds 11 images, not the 12"):
        run_flowgraph(fg)


def test_builtin_description_matches_its_decoded_images():
    assert datasets.describe_builtin() == (len(read_builtin()), read_builtin().image_shape)
