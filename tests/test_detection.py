"""Detection: scene generation and files, the mAP metrics against hand-computed COCO values, the
detector model and loss, the detection blocks and flowgraphs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO, SHARED, make_image_folder
from sdjscc_phy.cli.main import main
from sdjscc_phy.data.datasets import read_image_folder
from sdjscc_phy.data.scenes import (
    BUILTIN_SCENES, MAX_OBJECTS, SAMPLE, SceneSet, generate_scene_set, make_scenes, read_scene_set, save_scene_set,
)
from sdjscc_phy.errors import CheckpointError, DataError, ParameterError
from sdjscc_phy.metrics import make_metrics
from sdjscc_phy.metrics.detection import coco_map
from sdjscc_phy.models.detector import (
    STRIDE, CenterNetDetector, centernet_targets, decode_detections, detection_loss, export_detector, load_detector,
)

CLASSES = tuple(f"c{i}" for i in range(10))
DETECTION_FLOWGRAPHS = ("detection_clean", "sdjscc_detection_awgn", "deepjscc_detection_awgn",
                        "sscc_jpeg_detection_awgn", "sscc_bpg_detection_awgn")


@pytest.fixture(scope="module")
def cifar_like(tmp_path_factory):
    """A 10-class ImageFolder of random 32x32 JPEGs and a validation split listing 2 images per class."""
    root = make_image_folder(tmp_path_factory.mktemp("cifar") / "train", CLASSES, per_class=6, size=32)
    split = root.parent / "val.txt"
    split.write_text("\n".join(f"{c}/{i}.jpg" for c in CLASSES for i in (0, 1)) + "\n")
    return root, split


# -- scenes ---------------------------------------------------------------------------------------

def test_same_seed_and_version_give_identical_scenes_and_any_range_matches(cifar_like):
    root, split = cifar_like
    first = generate_scene_set(root, "val", num_scenes=12, seed=7, split_file=split)
    again = generate_scene_set(root, "val", num_scenes=12, seed=7, split_file=split)
    other = generate_scene_set(root, "val", num_scenes=12, seed=8, split_file=split)
    for name in ("images", "boxes", "labels", "num_objects"):
        assert torch.equal(getattr(first, name), getattr(again, name))
    assert not torch.equal(first.images, other.images)
    pool = read_image_folder(root, "val", split)
    tail = make_scenes(pool, [9, 10, 11], seed=7)
    assert torch.equal(tail.images, first.images[9:]) and torch.equal(tail.boxes, first.boxes[9:])


def test_training_scenes_use_only_training_images_and_evaluation_scenes_only_the_split(cifar_like):
    root, split = cifar_like
    listed = set(split.read_text().split())
    for name, inside in (("train", False), ("val", True)):
        pool = read_image_folder(root, name, split)
        scenes = make_scenes(pool, range(20), seed=0)
        used = np.concatenate([scenes.object_sources.ravel(), scenes.background_sources.ravel()])
        paths = {pool.paths[i] for i in used[used >= 0]}
        assert paths and all((p in listed) == inside for p in paths)
        objects = scenes.object_sources
        counted = objects >= 0
        assert (counted.sum(1) == scenes.num_objects.numpy()).all()
        assert (scenes.labels.numpy()[counted] == pool.labels.numpy()[objects[counted]]).all()


def test_boxes_are_the_pasted_images_extent_and_padding_is_zero(cifar_like):
    root, split = cifar_like
    pool = read_image_folder(root, "val", split)
    scenes = make_scenes(pool, range(30), seed=1, canvas=64)
    counts = scenes.num_objects
    assert counts.min() >= 1 and counts.max() <= MAX_OBJECTS and len(set(counts.tolist())) > 1
    slots = torch.arange(MAX_OBJECTS)[None] < counts[:, None]
    assert (scenes.boxes[~slots] == 0).all() and (scenes.labels[~slots] == -1).all()
    boxes = scenes.boxes[slots]
    assert (boxes[:, 2:] > boxes[:, :2]).all() and boxes.min() >= 0 and boxes.max() <= 64
    for i in range(30):  # the last pasted object is fully visible: its box holds exactly its resized image
        last = int(counts[i]) - 1
        x0, y0, x1, y1 = (int(v) for v in scenes.boxes[i, last])
        source = Image.fromarray(pool.images[scenes.object_sources[i, last]].numpy().transpose(1, 2, 0))
        crop = scenes.images[i, :, y0:y1, x0:x1].numpy().transpose(1, 2, 0)
        candidates = [source, source.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
        assert any(np.array_equal(crop, np.asarray(c.resize((x1 - x0, y1 - y0), Image.BILINEAR))) for c in candidates)


def test_shipped_sample_is_the_documented_evaluation_set():
    scenes = read_scene_set(BUILTIN_SCENES)
    assert len(scenes) == SAMPLE["num_scenes"] and scenes.canvas == SAMPLE["canvas"]
    assert scenes.meta == {"seed": SAMPLE["seed"], "version": 1, "canvas": 64, "split": "val"}
    assert scenes.class_names[0] == "airplane" and BUILTIN_SCENES.stat().st_size < 3_000_000
    # textured scenes: under 1 % of 8x8 patches nearly flat (CIFAR skies), every scene far from flat
    patches = scenes.images.float().unfold(2, 8, 8).unfold(3, 8, 8)
    assert (patches.std(dim=(-1, -2)).amax(dim=1) < 2).float().mean() < 0.01
    assert scenes.images.float().std(dim=(1, 2, 3)).min() > 20


@pytest.mark.skipif(not (SHARED / "data/cifar10/train").is_dir(), reason="CIFAR-10 training images absent")
def test_documented_command_rebuilds_the_shipped_sample():
    rebuilt = generate_scene_set(SHARED / "data/cifar10/train", "val", **SAMPLE)
    shipped = read_scene_set(BUILTIN_SCENES)
    for name in ("images", "boxes", "labels", "num_objects"):
        assert torch.equal(getattr(rebuilt, name), getattr(shipped, name))


def _scene_file(tmp_path: Path, **changes) -> Path:
    arrays = {"images": np.zeros((2, 3, 32, 32), np.uint8), "boxes": np.zeros((2, 2, 4), np.float32),
              "labels": np.array([[3, -1], [0, 0]]), "num_objects": np.array([1, 0]),
              "class_names": np.array(CLASSES)}
    arrays["boxes"][0, 0] = [2, 3, 20, 30]
    for name, value in changes.items():
        if callable(value):
            value(arrays)
        else:
            arrays[name] = value
    path = tmp_path / "scenes.npz"
    np.savez(path, **arrays)
    return path


def test_scene_file_round_trip_and_a_scene_without_objects_is_valid(tmp_path):
    scenes = read_scene_set(_scene_file(tmp_path))
    assert scenes.num_objects.tolist() == [1, 0] and scenes.boxes.dtype == torch.float32
    save_scene_set(scenes, tmp_path / "copy.npz")
    copy = read_scene_set(tmp_path / "copy.npz")
    assert torch.equal(copy.boxes, scenes.boxes) and copy.class_names == CLASSES


@pytest.mark.parametrize("change, message", [
    ({"boxes": lambda a: a["boxes"][0, 0].__setitem__(2, 1.0)}, "scene 0, object 0: box [2.0, 3.0, 1.0, 30.0] "
                                                                 "label 3 has zero or negative width or height"),
    ({"boxes": lambda a: a["boxes"][0, 0].__setitem__(3, 33.0)}, "lies outside the 32x32 image"),
    ({"boxes": lambda a: a["boxes"][0, 0].__setitem__(0, np.nan)}, "is not finite"),
    ({"boxes": np.zeros((2, 2, 5), np.float32)}, "boxes must be [2, M, 4]; got [2, 2, 5]"),
    ({"num_objects": np.array([1, 3])}, "scene 1: num_objects must be in [0, 2]; got 3"),
    ({"labels": np.array([[10, -1], [0, 0]])}, "has a label outside [0, 10)"),
    ({"images": np.zeros((0, 3, 32, 32), np.uint8)}, "holds no scenes"),
    ({"images": np.zeros((2, 3, 0, 0), np.uint8)}, "images must be [S, 3, C, C] with C > 0"),
])
def test_malformed_scene_files_are_one_line_errors(tmp_path, change, message):
    path = _scene_file(tmp_path, **change)
    with pytest.raises(DataError) as err:
        read_scene_set(path)
    assert str(err.value).startswith(f"scene file '{path}': ") and message in str(err.value)
    assert "\n" not in str(err.value)


# -- metrics --------------------------------------------------------------------------------------

def _boxes(*rows):
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


def test_map50_of_a_hand_made_case_is_cocos_101_point_interpolated_ap():
    # One class; 2 objects in 2 images; detections by score: TP (0.9), FP (0.8), TP (0.7).
    # Precision 1 up to recall 0.5, then 2/3 up to recall 1: COCO's 101 recall points give
    # (51 x 1 + 50 x 2/3) / 101.
    truth = [(_boxes([0, 0, 10, 10]), np.array([0])), (_boxes([0, 0, 10, 10]), np.array([0]))]
    found = [(_boxes([0, 0, 10, 10], [20, 20, 30, 30]), np.array([0.9, 0.8]), np.array([0, 0])),
             (_boxes([1, 0, 10, 10]), np.array([0.7]), np.array([0]))]
    value, se = coco_map(truth, found, (0.5,))
    assert value == pytest.approx((51 + 50 * 2 / 3) / 101, abs=1e-12) and np.isnan(se)


def test_map_averages_iou_thresholds_and_classes_with_ground_truth_only():
    # Class 0: a detection at IoU 0.72 matches at thresholds 0.50..0.70 (5 of 10) -> AP 0.5.
    # Class 1: its only detection misses -> AP 0. Class 2 has detections but no objects: left out.
    truth = [(_boxes([0, 0, 10, 10], [20, 20, 30, 30]), np.array([0, 1]))]
    found = [(_boxes([0, 0, 10, 7.2], [40, 40, 50, 50], [20, 20, 30, 30]), np.array([0.9, 0.8, 0.7]),
              np.array([0, 1, 2]))]
    assert coco_map(truth, found, (0.5,))[0] == pytest.approx(0.5)
    thresholds = tuple(np.round(np.linspace(0.5, 0.95, 10), 2))
    assert coco_map(truth, found, thresholds)[0] == pytest.approx(0.25)


def _batch(truth_boxes, truth_labels, counts, det_boxes, det_scores, det_labels, det_counts):
    as_t = torch.as_tensor
    return {"boxes": as_t(truth_boxes, dtype=torch.float32), "labels": as_t(truth_labels),
            "num_objects": as_t(counts), "boxes_hat": as_t(det_boxes, dtype=torch.float32),
            "scores_hat": as_t(det_scores, dtype=torch.float32), "labels_hat": as_t(det_labels),
            "num_detections": as_t(det_counts)}


def test_metrics_from_padded_batches_match_the_reference_and_bootstrap_repeats():
    scenes = read_scene_set(BUILTIN_SCENES)
    shift = torch.randn(200, MAX_OBJECTS, 2, generator=torch.Generator().manual_seed(0)) * 6
    noisy = scenes.boxes + torch.cat([shift, shift], dim=-1)
    scores = torch.rand(scenes.labels.shape, generator=torch.Generator().manual_seed(1))
    batch = _batch(scenes.boxes, scenes.labels, scenes.num_objects, noisy.clamp(0, 64), scores,
                   scenes.labels.clamp(min=0), scenes.num_objects)
    metrics = make_metrics(["map50", "map"])
    for start in range(0, 200, 64):  # streamed in uneven batches
        metrics.update({k: v[start:start + 64] for k, v in batch.items()})
    result = metrics.compute()
    counts = scenes.num_objects.tolist()
    truth = [(scenes.boxes[i, :n].double().numpy(), scenes.labels[i, :n].numpy()) for i, n in enumerate(counts)]
    found = [(noisy.clamp(0, 64)[i, :n].double().numpy(), scores[i, :n].numpy(), scenes.labels[i, :n].numpy())
             for i, n in enumerate(counts)]
    assert result["map50"] == pytest.approx(coco_map(truth, found, (0.5,))[0])
    assert 0.2 < result["map50"] < 0.9 and 0 < result["map"] < result["map50"]
    assert 0 < result["map50_se"] < 0.1 and 0 < result["map_se"] < 0.1
    again = make_metrics(["map50"])
    again.update(batch)
    assert again.compute()["map50_se"] == result["map50_se"]


def test_perfect_detections_score_one_and_images_without_objects_count_their_false_positives():
    boxes = [[[0, 0, 10, 10], [0, 0, 0, 0]], [[0, 0, 0, 0], [0, 0, 0, 0]]]
    perfect = make_metrics([{"map50": {"bootstrap": 0}}])
    perfect.update(_batch(boxes, [[4, -1], [-1, -1]], [1, 0], boxes, [[0.9, 0], [0, 0]], [[4, 0], [0, 0]], [1, 0]))
    assert perfect.compute()["map50"] == pytest.approx(1.0)
    with_fp = make_metrics([{"map50": {"bootstrap": 0}}])
    with_fp.update(_batch(boxes, [[4, -1], [-1, -1]], [1, 0], [[[0, 0, 10, 10], [0, 0, 0, 0]],
                          [[5, 5, 15, 15], [0, 0, 0, 0]]], [[0.5, 0], [0.9, 0]], [[4, 0], [4, 0]], [1, 1]))
    assert with_fp.compute()["map50"] == pytest.approx(0.5)  # the false positive outranks the hit


@pytest.mark.parametrize("changes, message", [
    ({"boxes_hat": torch.zeros(2, 3)}, "`boxes_hat` must be [N, slots, 4]; got [2, 3]"),
    ({"num_objects": torch.tensor([1, 5])}, "`num_objects` must be [2] counts in [0, 2]"),
    ({"boxes": torch.tensor([[[5.0, 0, 1, 10], [0, 0, 0, 0]]] * 2)}, "`boxes` of image 0 must be finite"),
    ({"scores_hat": torch.zeros(2, 3)}, "`scores_hat` must be [2, 2] like `boxes_hat`"),
])
def test_malformed_metric_inputs_are_data_errors(changes, message):
    batch = _batch([[[0, 0, 10, 10], [0, 0, 0, 0]]] * 2, [[1, -1]] * 2, [1, 1],
                   [[[0, 0, 10, 10], [0, 0, 0, 0]]] * 2, [[0.9, 0]] * 2, [[1, 0]] * 2, [1, 1])
    batch.update(changes)
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]").replace("`", ".")):
        make_metrics(["map50"]).update(batch)


def test_metric_settings_are_checked():
    with pytest.raises(ParameterError, match="`bootstrap` of metric 'map' must be an integer >= 0"):
        make_metrics([{"map": {"bootstrap": -1}}])


# -- detector -------------------------------------------------------------------------------------

def test_detector_maps_and_decoded_detections_have_the_declared_shapes():
    model = CenterNetDetector(width=8).eval()
    with torch.no_grad():
        out = model(torch.rand(3, 3, 64, 96))
    assert out["heatmap"].shape == (3, 10, 16, 24) and out["size"].shape == out["offset"].shape == (3, 2, 16, 24)
    boxes, scores, labels = decode_detections(out, (64, 96), 30)
    assert boxes.shape == (3, 30, 4) and scores.shape == labels.shape == (3, 30)
    assert boxes.dtype == scores.dtype == torch.float32 and labels.dtype == torch.int64
    assert (scores[:, :-1] >= scores[:, 1:]).all() and (boxes[..., 2] <= 96).all() and (boxes >= 0).all()
    # a 16x16 image has 4x4x10 = 160 cells, at most 160 peaks: the other slots are padding
    with torch.no_grad():
        boxes, scores, labels = decode_detections(model(torch.rand(1, 3, 16, 16)), (16, 16), 200)
    assert scores.shape == (1, 200) and (scores[0, 160:] == 0).all() and (boxes[0, 160:] == 0).all()
    with pytest.raises(ValueError, match="multiples of 16"):
        model(torch.rand(1, 3, 40, 40))


def test_decoding_the_loss_targets_gives_back_the_true_boxes():
    scenes = read_scene_set(BUILTIN_SCENES).subset(range(16))
    target = centernet_targets(scenes.boxes, scenes.labels, scenes.num_objects, 10, (16, 16))
    assert target["heatmap"].amax() == 1 and target["heatmap"].shape == (16, 10, 16, 16)
    # maps that are the targets: +20 logits at centre cells, sizes and offsets written there
    heat = torch.where(target["heatmap"] == 1, 20.0, -20.0)
    size, offset = torch.zeros(16, 2, 256), torch.zeros(16, 2, 256)
    for b in range(16):
        for m in range(int(scenes.num_objects[b])):
            size[b, :, target["cell"][b, m]] = target["size"][b, m]
            offset[b, :, target["cell"][b, m]] = target["offset"][b, m]
    maps = {"heatmap": heat, "size": size.view(16, 2, 16, 16), "offset": offset.view(16, 2, 16, 16)}
    boxes, scores, labels = decode_detections(maps, (64, 64), 10)
    metric = make_metrics([{"map": {"bootstrap": 0}}])
    metric.update(_batch(scenes.boxes, scenes.labels, scenes.num_objects, boxes, scores, labels,
                         (scores > 0.5).sum(1)))
    assert metric.compute()["map"] == pytest.approx(1.0)


def test_loss_trains_every_parameter_and_a_few_steps_fit_a_small_batch():
    torch.manual_seed(0)
    scenes = read_scene_set(BUILTIN_SCENES).subset(range(8))
    model = CenterNetDetector(width=16)
    images = scenes.images.float() / 255
    losses = detection_loss(model(images), scenes.boxes, scenes.labels, scenes.num_objects)
    assert set(losses) == {"loss", "heatmap", "size", "offset"}
    losses["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters() if p.requires_grad)
    optimiser = torch.optim.Adam(model.parameters(), 5e-3)
    first = losses["loss"].item()
    for _ in range(25):
        optimiser.zero_grad()
        loss = detection_loss(model(images), scenes.boxes, scenes.labels, scenes.num_objects)["loss"]
        loss.backward()
        optimiser.step()
    assert loss.item() < first / 3


def test_detector_checkpoint_round_trip_and_size(tmp_path):
    model = CenterNetDetector().eval()
    export_detector(model, tmp_path / "det.pt", {"metrics": {"map50": 0.0}})
    assert (tmp_path / "det.pt").stat().st_size <= 10 * 2**20
    loaded = load_detector(tmp_path / "det.pt")
    assert loaded.arch == model.arch and loaded.metadata["metrics"] == {"map50": 0.0}
    image = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded(image)["heatmap"], model(image)["heatmap"], atol=0.05)
    torch.save({"format": "something else"}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="is not a jsccflow detector checkpoint"):
        load_detector(tmp_path / "foreign.pt")


# -- blocks and flowgraphs ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_detector(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("detector") / "tiny.pt"
    export_detector(CenterNetDetector(width=8), path, {})
    return str(path)


@pytest.mark.parametrize("name", DETECTION_FLOWGRAPHS)
def test_detection_flowgraphs_validate_without_a_trained_detector(name, capsys):
    assert main(["validate", str(REPO / "flowgraphs" / f"{name}.yaml")]) == 0
    out = capsys.readouterr().out
    assert "det.boxes: float32 [50,4]" in out and "src.image: float32 [3,64,64]" in out


@pytest.mark.parametrize("name, items", [("detection_clean", 40), ("sdjscc_detection_awgn", 20),
                                         ("sscc_bpg_detection_awgn", 8)])
def test_detection_flowgraphs_run_on_the_shipped_sample(name, items, tiny_detector, tmp_path, capsys):
    out = tmp_path / "results.json"
    argv = ["run", str(REPO / "flowgraphs" / f"{name}.yaml"), "--set", f"det.checkpoint={tiny_detector}",
            "--set", f"options.max_items={items}", "--set", "options.batch_size=8", "--set", "options.device=cpu",
            "--output", str(out), "--no-progress"]
    assert main(argv) == 0
    metrics = json.loads(out.read_text())["metrics"]
    assert 0 <= metrics["map50"] <= 1 and 0 <= metrics["map"] <= metrics["map50"]
    assert np.isfinite(metrics["map50_se"])
    if name != "detection_clean":
        assert metrics["bpp"] == 0.25


def test_missing_detector_checkpoint_is_a_one_line_error(capsys):
    assert main(["run", str(REPO / "flowgraphs" / "detection_clean.yaml"), "--set", "det.checkpoint=no_such_detector",
                 "--no-progress"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and "detector checkpoint 'no_such_detector' is neither a file" in line
    assert "detector_scenes" in line  # the shipped names are listed


DETECT_FOLDER = """\
options: {{id: det_folder, batch_size: 4, max_items: 6, device: cpu}}
blocks:
  - {{id: src, type: detection_source, params: {{dataset: {dataset}, {extra}}}}}
  - {{id: det, type: detector, params: {{checkpoint: {checkpoint}}}}}
  - {{id: metrics, type: metric_sink, params: {{metrics: [{{map50: {{bootstrap: 0}}}}]}}}}
connections:
  - src.image -> det.image
  - src.boxes -> metrics.boxes
  - src.labels -> metrics.labels
  - src.num_objects -> metrics.num_objects
  - det.boxes -> metrics.boxes_hat
  - det.scores -> metrics.scores_hat
  - det.labels -> metrics.labels_hat
  - det.num_detections -> metrics.num_detections
"""


def test_folder_scenes_are_made_batch_by_batch_as_the_generator_makes_them(cifar_like, tiny_detector):
    from sdjscc_phy.blocks.detection import DetectionSource
    from sdjscc_phy.core.block import BatchContext, SetupContext

    root, split = cifar_like
    source = DetectionSource("src", dataset="folder", root=str(root), split="train", split_file=str(split),
                             num_scenes=6, scene_seed=3, canvas=32)
    assert source.num_items() == 6 and source.infer_shapes({})["boxes"] == (MAX_OBJECTS, 4)
    source.setup(SetupContext(torch.device("cpu"), "host", 0, {}, {}))
    batch = source.process(None, BatchContext(1, 4, 2, "host", torch.device("cpu"), 0, "src", 0))
    expected = make_scenes(read_image_folder(root, "train", split), [4, 5], seed=3, canvas=32)
    assert torch.equal(batch["image"], expected.images.float() / 255)
    assert torch.equal(batch["boxes"], expected.boxes) and batch["num_objects"].dtype == torch.int64


def test_detector_rejects_a_canvas_that_is_not_a_multiple_of_16(write_flowgraph, tiny_detector, cifar_like, capsys):
    root, split = cifar_like
    text = DETECT_FOLDER.format(dataset="folder", extra=f"root: {root}, split_file: {split}, canvas: 40",
                                checkpoint=tiny_detector)
    assert main(["validate", write_flowgraph(text)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "block 'det'" in line and "H = 40 is not a multiple of 16" in line


def test_malformed_scene_file_stops_a_run_with_one_line(write_flowgraph, tiny_detector, tmp_path, capsys):
    bad = _scene_file(tmp_path, boxes=lambda a: a["boxes"][0, 0].__setitem__(2, -4.0))
    text = DETECT_FOLDER.format(dataset="file", extra=f"path: {bad}", checkpoint=tiny_detector)
    assert main(["run", write_flowgraph(text), "--no-progress"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and "scene 0, object 0" in line and "negative width" in line


def test_a_fresh_detector_block_trains_through_its_map_outputs(tiny_detector):
    from sdjscc_phy.blocks.detection import Detector
    from sdjscc_phy.core.block import BatchContext

    torch.manual_seed(0)
    block = Detector("det", checkpoint=None, width=16)
    assert block.model.arch == {"num_classes": 10, "width": 16, "backbone": "centernet"} and block.model.training
    shapes = block.infer_shapes({"image": (3, 64, 64)})
    assert shapes["heatmap"] == ("C", 16, 16) and shapes["size"] == shapes["offset"] == (2, 16, 16)
    scenes = read_scene_set(BUILTIN_SCENES).subset(range(8))
    images = scenes.images.float() / 255
    optimiser = torch.optim.Adam(block.model.parameters(), 5e-3)
    ctx = BatchContext(0, 0, 8, "torch", torch.device("cpu"), 0, "det", 0)
    losses = []
    for _ in range(20):
        out = block.process(dict(image=images), ctx)
        assert out["heatmap"].shape == (8, 10, 16, 16) and out["boxes"].shape == (8, 50, 4)
        loss = detection_loss(out, scenes.boxes, scenes.labels, scenes.num_objects)["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 2


def test_architecture_parameters_must_match_the_checkpoint(tiny_detector):
    from sdjscc_phy.blocks.detection import Detector

    assert Detector("det", checkpoint=tiny_detector, width=8).model.arch["width"] == 8
    with pytest.raises(CheckpointError, match="block 'det': parameter 'width' is 48 but checkpoint .* has 8"):
        Detector("det", checkpoint=tiny_detector, width=48).model


def test_a_vgg_detector_starts_from_the_vgg_classifiers_trunk_and_has_the_declared_shapes():
    from sdjscc_phy.blocks.detection import Detector
    from sdjscc_phy.models.classifier import load_classifier

    block = Detector("det", checkpoint=None, backbone="vgg", init_backbone="classifier_vgg_cifar10", width=16)
    model, vgg = block.model, load_classifier("classifier_vgg_cifar10")
    assert model.arch == {"num_classes": 10, "width": 16, "backbone": "vgg", "vgg_widths": vgg.arch["widths"]}
    trunk = vgg.trunk.state_dict()
    assert model.vgg.state_dict().keys() == trunk.keys()
    assert all(torch.equal(model.vgg.state_dict()[k], trunk[k]) for k in trunk)  # weights and BN statistics
    with torch.no_grad():
        out = model.eval()(torch.rand(2, 3, 64, 96))
        assert model.features(torch.rand(2, 3, 64, 96)).shape == (2, 16, 16, 24)
    assert out["heatmap"].shape == (2, 10, 16, 24) and out["size"].shape == out["offset"].shape == (2, 2, 16, 24)
    # without init_backbone the same trunk starts from random weights
    fresh = Detector("det", checkpoint=None, backbone="vgg", width=16).model
    assert not torch.equal(fresh.vgg[0].weight, model.vgg[0].weight)


def test_bad_init_backbone_is_a_one_line_error(capsys):
    from sdjscc_phy.blocks.detection import Detector

    with pytest.raises(CheckpointError, match="block 'det': parameter 'init_backbone': .*must come from a VGG"):
        Detector("det", checkpoint=None, backbone="vgg", init_backbone="classifier_cifar10").model  # the task network
    with pytest.raises(ParameterError, match="parameter 'init_backbone': only for a fresh detector"):
        Detector("det", checkpoint=None, init_backbone="classifier_vgg_cifar10")  # backbone defaults to centernet
    with pytest.raises(ParameterError, match="parameter 'frozen_stages': only for backbone: vgg"):
        Detector("det", checkpoint=None, frozen_stages=1)
    argv = ["run", str(REPO / "flowgraphs" / "detection_clean.yaml"), "--set", "det.checkpoint=null", "--set",
            "det.backbone=vgg", "--set", "det.init_backbone=no_such_classifier", "--no-progress"]
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and "parameter 'init_backbone'" in line and "no_such_classifier" in line


def test_frozen_vgg_stages_keep_weights_and_statistics_while_the_rest_trains():
    from sdjscc_phy.blocks.detection import Detector

    block = Detector("det", checkpoint=None, backbone="vgg", init_backbone="classifier_vgg_cifar10", width=8,
                     frozen_stages=1)
    model = block.model
    groups = block.parameter_groups()
    assert set(groups) == {"default", "backbone"}
    assert {id(p) for p in groups["backbone"]} == {id(p) for p in model.stage(1).parameters()} | {
        id(p) for p in model.stage(2).parameters()}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    block.train(True)
    assert not model.stage(0)[1].training and model.stage(1)[1].training
    scenes = read_scene_set(BUILTIN_SCENES).subset(range(4))
    optimiser = torch.optim.SGD([p for g in groups.values() for p in g], 0.1)
    loss = detection_loss(model(scenes.images.float() / 255), scenes.boxes, scenes.labels, scenes.num_objects)["loss"]
    loss.backward()
    optimiser.step()
    after = model.state_dict()
    frozen = [k for k in before if k.startswith(("vgg.0.", "vgg.1.", "vgg.3.", "vgg.4."))]
    assert len(frozen) == 2 + 2 * 5 and all(torch.equal(before[k], after[k]) for k in frozen)
    assert not torch.equal(before["vgg.7.weight"], after["vgg.7.weight"])  # stage 2's first convolution
    assert not torch.equal(before["vgg.8.running_mean"], after["vgg.8.running_mean"])


def test_vgg_detector_round_trips_and_old_checkpoints_load_as_the_residual_detector(tmp_path):
    from sdjscc_phy.models.detector import VggDetector

    model = VggDetector(width=8).eval()
    export_detector(model, tmp_path / "vgg.pt", {})
    loaded = load_detector(tmp_path / "vgg.pt")
    assert isinstance(loaded, VggDetector) and loaded.arch == model.arch
    # checkpoints written before the VGG backbone record no backbone: the residual detector
    export_detector(CenterNetDetector(width=8), tmp_path / "old.pt", {})
    payload = torch.load(tmp_path / "old.pt", weights_only=True)
    del payload["config"]["backbone"]
    torch.save(payload, tmp_path / "old.pt")
    assert type(load_detector(tmp_path / "old.pt")) is CenterNetDetector


# -- training through a flowgraph -----------------------------------------------------------------

def test_a_fresh_detector_is_seeded_by_the_flowgraph_seed_not_the_global_generator():
    from sdjscc_phy.blocks.detection import Detector
    from sdjscc_phy.core.block import SetupContext

    def fresh(seed: int) -> dict[str, torch.Tensor]:
        block = Detector("det", checkpoint=None, width=8)
        torch.manual_seed(seed + 100)  # a different global state every time
        block.setup(SetupContext(torch.device("cpu"), "torch", seed, {}, {}))
        return block.model.state_dict()

    first, again, other = fresh(5), fresh(5), fresh(6)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["stem.0.0.weight"], other["stem.0.0.weight"])


def test_new_scenes_per_epoch_reads_the_next_range_of_the_set(cifar_like):
    from sdjscc_phy.blocks.detection import DetectionSource
    from sdjscc_phy.core.block import BatchContext, SetupContext

    root, split = cifar_like
    source = DetectionSource("src", dataset="folder", root=str(root), split="train", split_file=str(split),
                             num_scenes=5, scene_seed=3, canvas=32, new_scenes_per_epoch=True)
    source.setup(SetupContext(torch.device("cpu"), "host", 0, {}, {}))
    pool = read_image_folder(root, "train", split)
    for epoch, first in ((None, 0), (-1, 0), (0, 0), (2, 10)):
        batch = source.process(None, BatchContext(0, 0, 2, "host", torch.device("cpu"), 0, "src", 0, epoch=epoch))
        expected = make_scenes(pool, [first, first + 1], seed=3, canvas=32)
        assert torch.equal(batch["boxes"], expected.boxes) and torch.equal(batch["image"], expected.images / 255)
    with pytest.raises(ParameterError, match="parameter 'new_scenes_per_epoch': needs dataset 'folder'"):
        DetectionSource("src", dataset="builtin", new_scenes_per_epoch=True)


def test_detection_loss_block_is_the_models_loss_and_an_empty_scene_only_penalises_detections():
    from sdjscc_phy.blocks.losses import DetectionLoss
    from sdjscc_phy.core.block import BatchContext

    torch.manual_seed(0)
    scenes = read_scene_set(BUILTIN_SCENES).subset(range(4))
    maps = CenterNetDetector(width=8)(scenes.images.float() / 255)
    block = DetectionLoss("loss", weight=0.5)
    block.setup(None)
    block.process({**maps, "boxes": scenes.boxes, "labels": scenes.labels, "num_objects": scenes.num_objects},
                  BatchContext(0, 0, 4, "torch", torch.device("cpu"), 0, "loss", 0))
    expected = detection_loss(maps, scenes.boxes, scenes.labels, scenes.num_objects)["loss"]
    torch.testing.assert_close(block.objective(), 0.5 * expected)
    # an image without objects: no positive cell, no size or offset term, only the heatmap's false alarms
    empty = detection_loss(maps, scenes.boxes, scenes.labels, torch.zeros(4, dtype=torch.int64))
    assert empty["size"] == 0 and empty["offset"] == 0 and empty["loss"] > 0
    probs = torch.sigmoid(maps["heatmap"])
    torch.testing.assert_close(empty["loss"], -(torch.nn.functional.logsigmoid(-maps["heatmap"]) * probs**2).sum())


def test_detector_recipe_trains_on_generated_scenes_and_its_export_runs(cifar_like, tmp_path):
    from sdjscc_phy.training.recipe import load_recipe
    from sdjscc_phy.training.trainer import Trainer

    root, split = cifar_like
    export = tmp_path / "det.pt"
    recipe = load_recipe(REPO / "recipes" / "detector_scenes.yaml", [
        f"output_dir={tmp_path / 'runs'}", f"set=[data_root={root}, src.split_file={split}]",
        # the same 4 scenes every epoch, so that the loss must fall within a few steps
        "stages.0.variables={num_scenes: 4, width: 8}", "stages.0.set=src.new_scenes_per_epoch=false",
        "stages.0.epochs=12", "stages.0.batch_size=4",
        "stages.0.optimizer={name: Adam, lr: 0.01}", "stages.0.schedule={kind: constant}",
        "stages.0.validation.set=[src.dataset=builtin, src.new_scenes_per_epoch=false, options.max_items=8]",
        f"stages.0.export={export}"], check_flowgraphs=True)
    trainer = Trainer(recipe, progress=False)
    metrics = trainer.run()["detector"]
    losses = [loss for _, loss in trainer.step_losses]
    assert len(losses) == 12 and losses[-1] < 0.75 * losses[0]
    assert 0 <= metrics["val_map50"] <= 1 and "val_loss_centernet" in metrics
    assert load_detector(export).arch == {"num_classes": 10, "width": 8, "backbone": "vgg", "vgg_widths": [24, 48, 96]}


def test_detection_finetune_recipe_trains_the_codec_on_a_frozen_detectors_features(cifar_like, tiny_detector, tmp_path):
    from sdjscc_phy.models.jscc import load_codec
    from sdjscc_phy.training.recipe import load_recipe
    from sdjscc_phy.training.trainer import Trainer

    root, split = cifar_like
    export = tmp_path / "codec.pt"
    recipe = load_recipe(REPO / "recipes" / "sdjscc_detection_finetune.yaml", [
        f"output_dir={tmp_path / 'runs'}", f"set=[data_root={root}, src.split_file={split}]",
        f"stages.0.variables={{num_scenes: 8, detector: {tiny_detector}}}", "stages.0.batch_size=4",
        "stages.0.validation.set=[src.dataset=builtin, src.new_scenes_per_epoch=false, options.max_items=4]",
        f"stages.0.export={export}"], check_flowgraphs=True)
    trainer = Trainer(recipe, progress=False)
    metrics = trainer.run()["sdjscc_detection"]
    assert len(trainer.step_losses) == 2 and all(np.isfinite(loss) for _, loss in trainer.step_losses)
    assert metrics["val_loss_semantic"] > 0 and 0 <= metrics["val_map50"] <= 1
    before, after = load_codec("sdjscc_awgn").state_dict(), load_codec(export).state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the codec was trained
