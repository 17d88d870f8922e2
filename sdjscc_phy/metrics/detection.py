"""COCO-style mean average precision of detections: ``map50`` (IoU 0.5) and ``map`` (IoU 0.5:0.05:0.95).

Inputs per batch (metric-sink port names): ground truth ``boxes`` ``[N, M, 4]``, ``labels`` ``[N, M]``,
``num_objects`` ``[N]`` (entries past the count are padding) and detections ``boxes_hat`` ``[N, K, 4]``,
``scores_hat`` ``[N, K]``, ``labels_hat`` ``[N, K]``, ``num_detections`` ``[N]``; boxes are
``[x0, y0, x1, y1]`` in pixels. The numbers are pycocotools' ``COCOeval`` (the COCO reference
implementation, which torchmetrics' ``MeanAveragePrecision`` also calls): 101-point interpolated
precision, area range "all", at most ``max_detections`` detections per image by score, averaged over the
classes that have ground truth. An image without objects counts (its detections are false positives).

Standard errors (``map50_se``, ``map_se``): the standard deviation of the metric over ``bootstrap``
resamples of the images (with replacement; resample draws seeded, so runs repeat). The per-image
matching is done once; each resample only re-accumulates the precision-recall curves.

Unlike the other metrics, these keep every image's boxes until ``compute()`` (AP is not a mean over
images): memory grows as about (M + K) x 24 bytes per image.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np

from sdjscc_phy.errors import DataError, JsccflowError, ParameterError
from sdjscc_phy.metrics.base import Metric
from sdjscc_phy.metrics.functional import as_tensor
from sdjscc_phy.metrics.registry import register_metric

BOOTSTRAP_SEED = 0


def _cocoeval():
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise JsccflowError("metrics map50/map need pycocotools: pip install 'pycocotools>=2.0.8'") from None
    return COCO, COCOeval


def _coco(num_images: int, annotations: list[dict], categories: list[int]):
    COCO, _ = _cocoeval()
    coco = COCO()
    coco.dataset = {"images": [{"id": i} for i in range(num_images)], "annotations": annotations,
                    "categories": [{"id": c} for c in categories]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _annotations(per_image: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]) -> list[dict]:
    """COCO annotation dicts of per-image (boxes xyxy, labels, scores or None): xywh boxes, category =
    label + 1, ids from 1 (COCOeval marks a match by a nonzero annotation id)."""
    out = []
    for image_id, (boxes, labels, scores) in enumerate(per_image):
        for j, (box, label) in enumerate(zip(boxes.tolist(), labels.tolist())):
            w, h = box[2] - box[0], box[3] - box[1]
            ann = {"id": len(out) + 1, "image_id": image_id, "category_id": int(label) + 1,
                   "bbox": [box[0], box[1], w, h], "area": w * h, "iscrowd": 0}
            if scores is not None:
                ann["score"] = float(scores[j])
            out.append(ann)
    return out


def _mean_precision(evaluator) -> float:
    """COCOeval.summarize()'s AP (area 'all', the last maxDets): mean precision over IoU thresholds,
    recall points and classes, leaving out classes without ground truth (precision -1)."""
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.accumulate()
    precision = evaluator.eval["precision"][:, :, :, 0, -1]
    valid = precision[precision > -1]
    return float(valid.mean()) if valid.size else float("nan")


def coco_map(ground_truth: list[tuple[np.ndarray, np.ndarray]], detections: list[tuple[np.ndarray, ...]],
             iou_thresholds: tuple[float, ...], max_detections: int = 100, bootstrap: int = 0,
             seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """(mAP, bootstrap standard error) of per-image ``ground_truth`` (boxes xyxy ``[m, 4]``, labels ``[m]``)
    and ``detections`` (boxes ``[k, 4]``, scores ``[k]``, labels ``[k]``) at ``iou_thresholds``; the
    standard error is NaN when ``bootstrap`` < 2."""
    _, COCOeval = _cocoeval()
    num_images = len(ground_truth)
    categories = sorted({int(c) + 1 for _, labels in ground_truth for c in labels.tolist()}
                        | {int(c) + 1 for _, _, labels in detections for c in labels.tolist()}) or [1]
    gt = _coco(num_images, _annotations([(b, l, None) for b, l in ground_truth]), categories)
    dt = _coco(num_images, _annotations([(b, l, s) for b, s, l in detections]), categories)
    evaluator = COCOeval(gt, dt, "bbox")
    evaluator.params.iouThrs = np.asarray(iou_thresholds, dtype=np.float64)
    evaluator.params.areaRng, evaluator.params.areaRngLbl = [[0.0, 1e10]], ["all"]
    evaluator.params.maxDets = [max_detections]
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
    value = _mean_precision(evaluator)
    if bootstrap < 2:
        return value, float("nan")
    # evalImgs is ordered [category][area][image]; a resample picks images within every category.
    per_category = [evaluator.evalImgs[k * num_images:(k + 1) * num_images] for k in range(len(categories))]
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(bootstrap):
        pick = rng.integers(0, num_images, num_images)
        evaluator.evalImgs = [rows[i] for rows in per_category for i in pick]
        draws.append(_mean_precision(evaluator))
    return value, float(np.nanstd(draws, ddof=1))


class _CocoMap(Metric):
    """Shared state and input checks of ``map50`` and ``map``; subclasses set ``_iou_thresholds``."""

    higher_is_better = True
    reports_standard_error = True
    inputs = ("boxes", "labels", "num_objects", "boxes_hat", "scores_hat", "labels_hat", "num_detections")
    _iou_thresholds: tuple[float, ...]

    def __init__(self, bootstrap: int = 100, max_detections: int = 100) -> None:
        for name, value, low in (("bootstrap", bootstrap, 0), ("max_detections", max_detections, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ParameterError(f"`{name}` of metric '{self.name}' must be an integer >= {low}; got {value!r}")
        self.bootstrap, self.max_detections = bootstrap, max_detections
        self.reset()

    def reset(self) -> None:
        self._truth: list[tuple[np.ndarray, np.ndarray]] = []
        self._found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    @staticmethod
    def _unpad(boxes, counts, rest: tuple, names: tuple[str, ...]) -> list[tuple[np.ndarray, ...]]:
        """Per-image arrays (boxes, *rest) cut to each image's count, after shape and value checks."""
        boxes = as_tensor(boxes, names[0]).detach().cpu().double().numpy()
        counts = as_tensor(counts, names[-1]).detach().cpu().numpy()
        rest = [as_tensor(r, n).detach().cpu().numpy() for r, n in zip(rest, names[1:-1])]
        if boxes.ndim != 3 or boxes.shape[2] != 4:
            raise DataError(f"`{names[0]}` must be [N, slots, 4]; got {list(boxes.shape)}")
        num, slots = boxes.shape[:2]
        for r, name in zip(rest, names[1:-1]):
            if r.shape != (num, slots):
                raise DataError(f"`{name}` must be [{num}, {slots}] like `{names[0]}`; got {list(r.shape)}")
        if counts.shape != (num,) or (counts < 0).any() or (counts > slots).any():
            raise DataError(f"`{names[-1]}` must be [{num}] counts in [0, {slots}]; got {counts.tolist()}")
        out = []
        for i in range(num):
            b = boxes[i, :counts[i]]
            if not np.isfinite(b).all() or (b[:, 2:] < b[:, :2]).any():
                raise DataError(f"`{names[0]}` of image {i} must be finite [x0, y0, x1, y1] with x1 >= x0 and "
                                f"y1 >= y0; got {b.tolist()}")
            out.append((b, *(r[i, :counts[i]] for r in rest)))
        return out

    def update(self, boxes, labels, num_objects, boxes_hat, scores_hat, labels_hat, num_detections) -> None:
        """Add one batch of images (see the module docstring for shapes)."""
        truth = self._unpad(boxes, num_objects, (labels,), ("boxes", "labels", "num_objects"))
        found = self._unpad(boxes_hat, num_detections, (scores_hat, labels_hat),
                            ("boxes_hat", "scores_hat", "labels_hat", "num_detections"))
        if len(truth) != len(found):
            raise DataError(f"ground truth holds {len(truth)} images but detections {len(found)}")
        if any((t[1] < 0).any() for t in truth) or any((f[2] < 0).any() for f in found):
            raise DataError("`labels` / `labels_hat` of counted objects must be class indices >= 0")
        self._truth += truth
        self._found += found

    def compute(self) -> dict[str, float]:
        self._require_data(len(self._truth))
        value, se = coco_map(self._truth, self._found, self._iou_thresholds, self.max_detections, self.bootstrap)
        return {self.name: value, f"{self.name}_se": se}


@register_metric("map50")
class MeanAveragePrecision50(_CocoMap):
    """COCO mAP at IoU 0.5 (``map50``, Pascal VOC's measure) and its bootstrap standard error (``map50_se``)."""

    _iou_thresholds = (0.5,)


@register_metric("map")
class MeanAveragePrecision(_CocoMap):
    """COCO mAP averaged over IoU 0.5:0.05:0.95 (``map``) and its bootstrap standard error (``map_se``)."""

    _iou_thresholds = tuple(np.round(np.linspace(0.5, 0.95, 10), 2).tolist())
