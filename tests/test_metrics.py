"""Metrics: values against independent references (hand counts, numpy formulas, torchmetrics on the
whole data), streaming = one-shot, reset, standard errors, registry and error handling."""

import math

import numpy as np
import pytest
import torch

from sdjscc_phy.errors import DataError, ParameterError, RegistryError
from sdjscc_phy.metrics import (
    Accuracy,
    Ber,
    Bpp,
    F1Macro,
    Metric,
    Psnr,
    PsnrOfMeanMse,
    RunningMoments,
    Ssim,
    available_metrics,
    make_metric,
    make_metrics,
    metric_class,
    register_metric,
)
from sdjscc_phy.metrics.functional import per_image_ssim

ALL_METRICS = ["accuracy", "f1_macro", "psnr_db", "psnr_db_of_mean_mse", "ssim", "mse", "ber", "bpp"]
NUM_BATCHES, BATCH, NUM_CLASSES, NUM_BITS = 5, 6, 7, 64


def numpy_macro_f1(label: np.ndarray, pred: np.ndarray) -> float:
    """Macro F1 by hand, over the classes present in label or pred (scikit-learn's default labels)."""
    scores = []
    for c in np.union1d(label, pred):
        tp = np.sum((pred == c) & (label == c))
        fp = np.sum((pred == c) & (label != c))
        fn = np.sum((pred != c) & (label == c))
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def se(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1) / np.sqrt(len(values)))


@pytest.fixture(scope="module")
def batches():
    """Five batches of every input a metric sink may carry."""
    gen = torch.Generator().manual_seed(1234)
    out = []
    for _ in range(NUM_BATCHES):
        image = torch.rand(BATCH, 3, 16, 16, generator=gen)
        noise = 0.1 * torch.randn(image.shape, generator=gen)
        bits = torch.randint(0, 2, (BATCH, NUM_BITS), generator=gen, dtype=torch.uint8)
        flips = (torch.rand(bits.shape, generator=gen) < 0.1).to(torch.uint8)
        out.append(
            {
                "image": image,
                "image_hat": (image + noise).clamp(0, 1),
                "logits": torch.randn(BATCH, NUM_CLASSES, generator=gen),
                "label": torch.randint(0, NUM_CLASSES, (BATCH,), generator=gen),
                "bits": bits,
                "bits_hat": bits ^ flips,
                "num_bits": torch.randint(100, 300, (BATCH,), generator=gen),
            }
        )
    return out


@pytest.fixture(scope="module")
def whole(batches):
    return {k: torch.cat([b[k] for b in batches]) for k in batches[0]}


# --- classification -------------------------------------------------------------------------------

LABEL = torch.tensor([0, 0, 1, 1, 2, 2, 2, 3])
PRED = torch.tensor([0, 1, 1, 1, 2, 0, 2, 3])


def test_accuracy_and_f1_on_a_hand_counted_example():
    # per class F1 = 2tp / (2tp + fp + fn): 0 -> 2/4, 1 -> 4/5, 2 -> 4/5, 3 -> 2/2
    acc, f1 = Accuracy(num_classes=4), F1Macro(num_classes=4)
    acc.update(LABEL, label_hat=PRED)
    f1.update(LABEL, label_hat=PRED)
    assert acc.compute()["accuracy"] == pytest.approx(6 / 8)
    assert acc.compute()["accuracy_se"] == pytest.approx(se(np.array([1, 0, 1, 1, 1, 0, 1, 1.0])))
    assert f1.compute()["f1_macro"] == pytest.approx((0.5 + 0.8 + 0.8 + 1.0) / 4)


def test_f1_macro_leaves_out_classes_absent_from_labels_and_predictions():
    f1 = F1Macro(num_classes=6)
    f1.update(LABEL, label_hat=PRED)
    assert f1.compute()["f1_macro"] == pytest.approx(0.775, abs=1e-6)


def test_classification_from_logits_matches_numpy(whole):
    label, logits = whole["label"].numpy(), whole["logits"].numpy()
    pred = logits.argmax(axis=1)
    acc, f1 = Accuracy(), F1Macro()  # num_classes from the logits
    acc.update(whole["label"], logits=whole["logits"])
    f1.update(whole["label"], logits=whole["logits"])
    correct = (pred == label).astype(float)
    assert acc.compute() == pytest.approx({"accuracy": correct.mean(), "accuracy_se": se(correct)})
    assert f1.compute()["f1_macro"] == pytest.approx(numpy_macro_f1(label, pred), abs=1e-6)
    assert acc.num_classes == NUM_CLASSES


def test_label_hat_needs_num_classes():
    with pytest.raises(ParameterError, match="num_classes"):
        Accuracy().update(LABEL, label_hat=PRED)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"label_hat": PRED, "logits": torch.zeros(8, 4)}, "exactly one"),
        ({"label_hat": PRED + 4}, r"\[0, 4\)"),
        ({"logits": torch.zeros(8, 5)}, "4 classes"),
        ({"label_hat": PRED.float()}, "integer"),
    ],
)
def test_classification_input_errors(kwargs, message):
    with pytest.raises(DataError, match=message):
        Accuracy(num_classes=4).update(LABEL, **kwargs)


# --- images ---------------------------------------------------------------------------------------


def test_psnr_mse_match_numpy_per_image(whole):
    x, y = whole["image"].double().numpy(), whole["image_hat"].double().numpy()
    mse = ((x - y) ** 2).reshape(len(x), -1).mean(axis=1)
    psnr = 10 * np.log10(1.0 / mse)
    metrics = make_metrics(["psnr_db", "psnr_db_of_mean_mse", "mse"])
    metrics.update(whole)
    out = metrics.compute()
    assert out["psnr_db"] == pytest.approx(psnr.mean(), abs=1e-4)
    assert out["psnr_db_se"] == pytest.approx(se(psnr), rel=1e-3)
    assert out["psnr_db_of_mean_mse"] == pytest.approx(10 * np.log10(1.0 / mse.mean()), abs=1e-4)
    assert out["mse"] == pytest.approx(mse.mean(), rel=1e-5)
    assert out["mse_se"] == pytest.approx(se(mse), rel=1e-4)
    assert out["psnr_db"] != pytest.approx(out["psnr_db_of_mean_mse"], abs=1e-3)  # the two definitions differ


def ssim_reference_pairs():
    """Image pairs whose SSIM was computed once with scikit-image 0.26.0 (float64):
    ``structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=1, channel_axis=2)`` per image, HWC. PCG64 streams are stable across numpy versions."""
    rng = np.random.default_rng(20240501)
    a = rng.random((4, 3, 32, 32))
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1)
    yield a, b, [0.944150149930, 0.945047016044, 0.946341905682, 0.947917240906]
    yy, xx = np.mgrid[0:40, 0:48] / 48.0
    c = np.stack([np.stack([xx, yy, (xx + yy) / 2])] * 2)
    d = np.clip(c + 0.05 * rng.standard_normal(c.shape), 0, 1)
    d[1] = 1 - c[1]  # inverted contrast: negative SSIM
    yield c, d, [0.519922878099, -0.188038642185]


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-11), (torch.float32, 1e-6)])
def test_ssim_equals_scikit_image_over_the_valid_region(dtype, tolerance):
    for a, b, expected in ssim_reference_pairs():
        got = per_image_ssim(torch.from_numpy(a).to(dtype), torch.from_numpy(b).to(dtype))
        assert got.dtype == dtype
        assert got.double().numpy() == pytest.approx(expected, abs=tolerance)


def test_ssim_metric_is_the_mean_of_per_image_ssim(whole):
    ssim = Ssim()
    ssim.update(whole["image"], whole["image_hat"])
    per_image = per_image_ssim(whole["image"], whole["image_hat"]).double().numpy()
    out = ssim.compute()
    assert out["ssim"] == pytest.approx(per_image.mean(), abs=1e-6)
    assert out["ssim_se"] == pytest.approx(se(per_image), rel=1e-4)


def test_perfect_reconstruction_reports_the_cap_not_inf(whole):
    image = whole["image"][:4]
    metrics = make_metrics(["psnr_db", "psnr_db_of_mean_mse", "ssim", "mse"])
    metrics.update({"image": image, "image_hat": image})
    out = metrics.compute()
    assert out["psnr_db"] == 100.0 and out["psnr_db_of_mean_mse"] == 100.0 and out["psnr_db_se"] == 0.0
    assert out["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert out["mse"] == 0.0

    capped = Psnr(max_db=60.0)
    capped.update(image, image)
    capped.update(whole["image"][4:6], whole["image_hat"][4:6])
    finite = -10 * torch.log10((whole["image"][4:6] - whole["image_hat"][4:6]).double().square().mean((1, 2, 3)))
    assert capped.compute()["psnr_db"] == pytest.approx((4 * 60.0 + finite.sum().item()) / 6, abs=1e-4)


@pytest.mark.parametrize(
    "image_hat, message",
    [
        (lambda x: x + 0.5, r"\[0, 1\]"),
        (lambda x: x[:, :, :8], "same shape"),
        (lambda x: (x * 255).to(torch.uint8), "floating"),
        (lambda x: torch.full_like(x, float("nan")), r"\[0, 1\]"),
    ],
)
def test_image_input_errors(whole, image_hat, message):
    with pytest.raises(DataError, match=message):
        Psnr().update(whole["image"][:2], image_hat(whole["image"][:2]))


@pytest.mark.parametrize("max_db", [0, -1.0, float("inf"), "100"])
def test_max_db_must_be_positive_and_finite(max_db):
    with pytest.raises(ParameterError, match="max_db"):
        PsnrOfMeanMse(max_db=max_db)


# --- bits -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.uint8, torch.bool, torch.float32, torch.int64])
def test_ber_matches_numpy(whole, dtype):
    bits, bits_hat = whole["bits"].numpy(), whole["bits_hat"].numpy()
    per_item = (bits != bits_hat).mean(axis=1)
    ber = Ber()
    ber.update(whole["bits"].to(dtype), whole["bits_hat"].to(dtype))
    assert ber.compute() == pytest.approx({"ber": (bits != bits_hat).mean(), "ber_se": se(per_item)})


def test_ber_rejects_soft_values():
    with pytest.raises(DataError, match="hard bits"):
        Ber().update(torch.zeros(2, 8), torch.randn(2, 8))


def test_bpp_is_bits_over_pixels():
    bpp = Bpp()
    bpp.update(256, torch.zeros(3, 3, 32, 32))  # the paper's 0.25 bpp point
    assert bpp.compute() == {"bpp": 0.25}
    bpp.update(torch.tensor([512, 1024]), torch.zeros(2, 3, 32, 32))
    assert bpp.compute()["bpp"] == pytest.approx((3 * 0.25 + 0.5 + 1.0) / 5)


# --- streaming, reset, standard errors --------------------------------------------------------------


def test_streaming_equals_one_shot_for_every_metric(batches, whole):
    streamed, one_shot = make_metrics(ALL_METRICS), make_metrics(ALL_METRICS)
    for batch in batches:
        streamed.update(batch)
    one_shot.update(whole)
    a, b = streamed.compute(), one_shot.compute()
    assert list(a) == list(b)
    for key in a:
        assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-9), key


def test_reset_forgets_everything(batches):
    metrics = make_metrics(ALL_METRICS)
    for batch in batches:
        metrics.update(batch)
    metrics.reset()
    for metric in metrics.metrics:
        with pytest.raises(DataError, match="no data"):
            metric.compute()
    metrics.update(batches[0])
    fresh = make_metrics(ALL_METRICS)
    fresh.update(batches[0])
    assert metrics.compute() == fresh.compute()


def test_running_moments_stay_accurate_far_from_zero():
    rng = np.random.default_rng(0)
    values = 1e6 + rng.standard_normal(1000) * 1e-3
    moments = RunningMoments()
    for chunk in np.array_split(values, 7):
        moments.add(torch.from_numpy(chunk))
    assert moments.count == 1000
    assert moments.mean == pytest.approx(values.mean(), rel=1e-15)
    assert moments.standard_error == pytest.approx(se(values), rel=1e-6)


def test_standard_error_is_nan_for_one_item():
    acc = Accuracy(num_classes=4)
    acc.update(LABEL[:1], label_hat=PRED[:1])
    assert math.isnan(acc.compute()["accuracy_se"])


# --- registry and sink interface -------------------------------------------------------------------


def test_registry_names_keys_and_directions():
    assert set(ALL_METRICS) <= set(available_metrics())
    assert metric_class("f1_macro") is F1Macro
    assert Accuracy.output_keys() == ("accuracy", "accuracy_se")
    assert metric_class("psnr_db_of_mean_mse").output_keys() == ("psnr_db_of_mean_mse",)
    assert make_metrics(ALL_METRICS).higher_is_better == {
        "accuracy": True, "f1_macro": True, "psnr_db": True, "psnr_db_of_mean_mse": True,
        "ssim": True, "mse": False, "ber": False, "bpp": None,
    }  # fmt: skip


def test_compute_keys_are_the_declared_output_keys(batches):
    metrics = make_metrics(ALL_METRICS)
    metrics.update(batches[0])
    assert list(metrics.compute()) == [k for m in metrics.metrics for k in m.output_keys()]
    assert all(isinstance(v, float) for v in metrics.compute().values())


def test_yaml_style_specs_and_their_errors():
    metrics = make_metrics(["accuracy", {"f1_macro": {"num_classes": 4}}, {"psnr_db": {"max_db": 80}}])
    assert [m.name for m in metrics.metrics] == ["accuracy", "f1_macro", "psnr_db"]
    assert metrics.metrics[1].num_classes == 4 and metrics.metrics[2].max_db == 80.0
    with pytest.raises(ParameterError, match="must be one of"):
        make_metric("acuracy")
    with pytest.raises(ParameterError, match=r"takes settings \(max_db\); got \(max_dB\)"):
        make_metric("psnr_db", max_dB=80)
    with pytest.raises(ParameterError, match="more than once"):
        make_metrics(["ssim", "ssim"])
    with pytest.raises(ParameterError, match="num_classes"):
        make_metric("accuracy", num_classes=1)


def test_missing_inputs_are_all_reported(batches):
    metrics = make_metrics(["accuracy", "ber", "bpp"])
    assert metrics.input_problems({"label", "logits", "image"}) == [
        "metric 'ber': connect input port 'bits'", "metric 'ber': connect input port 'bits_hat'",
        "metric 'bpp': connect input port 'num_bits'"]
    assert metrics.inputs == ("logits|label_hat", "label", "bits", "bits_hat", "num_bits", "image")
    with pytest.raises(DataError, match=r"needs input 'bits' and 'bits_hat'; got \['image'\]"):
        metrics.metrics[1].update_from({"image": batches[0]["image"]})


def test_registering_a_name_twice_is_an_error():
    with pytest.raises(RegistryError, match="twice"):

        @register_metric("accuracy")
        class Another(Metric):
            pass
