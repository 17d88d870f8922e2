"""The jscc stage: deep-JSCC (MSE) then SD-JSCC (semantic loss, GSW) on tiny data; GSW math."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import make_image_folder
from sdjscc_phy.errors import RecipeError
from sdjscc_phy.models.classifier import CifarClassifier, export_classifier
from sdjscc_phy.models.jscc import load_codec
from sdjscc_phy.training import Trainer, load_recipe
from sdjscc_phy.training import gsw


@pytest.fixture
def recipe_path(tmp_path) -> Path:
    """Stage 1 (MSE) and stage 2 (semantic, per-image and global GSW) on 3 classes x 12 random 32x32 JPEGs."""
    make_image_folder(tmp_path / "images", ("a", "b", "c"), 12, 32)
    (tmp_path / "val.txt").write_text("a/0.jpg\nb/0.jpg\nc/0.jpg\na/1.jpg\nb/1.jpg\nc/1.jpg\n")
    torch.manual_seed(0)
    export_classifier(CifarClassifier(widths=(8, 8, 8), num_classes=3), tmp_path / "clf.pt", ["a", "b", "c"], {})
    common = {"kind": "jscc", "epochs": 1, "batch_size": 10, "optimizer": {"name": "Adam", "lr": 1e-3},
              "data": {"root": "images", "split_file": "val.txt"}, "model": {"bpp": 0.25, "width": 16},
              "link": {"constellation": "qam16", "channel": "awgn", "snr_db": 5.0}}
    recipe = {"seed": 3, "output_dir": "runs", "stages": [
        {**common, "name": "mse", "export": "export/mse.pt", "loss": {"kind": "mse"}},
        {**common, "name": "sem", "export": "export/sem.pt", "init_from": "export/mse.pt", "classifier": "clf.pt",
         "link": {**common["link"], "channel": "rayleigh"},
         "loss": {"kind": "semantic", "layer": "block1", "mse_weight": 0.1,
                  "gsw": {"mode": "true_class", "tau": 2.0, "r": 1.0, "per_batch": False, "images": 20}}},
    ]}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_two_stages_train_export_and_reload(recipe_path):
    results = Trainer(load_recipe(recipe_path), progress=False).run()
    assert set(results["mse"]) == {"val_psnr_db", "val_mse", "val_saturated"}
    assert {"val_psnr_db", "val_mse", "val_acc"} <= set(results["sem"])
    codec = load_codec(str(recipe_path.parent / "export" / "sem.pt"))
    assert codec.config.code_channels == 4 and codec.link["channel"] == "rayleigh"
    assert codec.metadata["metrics"]["val_acc"] == results["sem"]["val_acc"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_both_stages_train_on_the_gpu_and_export_checkpoints_a_cpu_loads(recipe_path):
    from test_training import all_tensors_on_cpu

    results = Trainer(load_recipe(recipe_path, ["device=cuda"]), progress=False).run()
    for name in ("mse", "sem"):
        export = recipe_path.parent / "export" / f"{name}.pt"
        assert all_tensors_on_cpu(torch.load(export, weights_only=True))
        assert load_codec(str(export)).metadata["metrics"] == results[name]
    assert 0.0 <= results["sem"]["val_acc"] <= 1.0 and np.isfinite(results["sem"]["val_psnr_db"])


def test_val_saturated_reports_an_encoder_stuck_in_the_sigmoid_tails(recipe_path):
    from sdjscc_phy.training.stages import STAGE_KINDS

    recipe = load_recipe(recipe_path)
    stage = STAGE_KINDS["jscc"](recipe["stages"][0], seed=0)
    stage.setup()
    assert stage.evaluate()["val_saturated"] < 0.5  # a fresh encoder sits near e = 0.5
    with torch.no_grad():
        stage.codec.encoder.net[-1].bias.copy_(torch.tensor([40.0, -40.0, 40.0, -40.0]))
    assert stage.evaluate()["val_saturated"] == 1.0


@pytest.mark.parametrize("mode", ["paper", "off"])
def test_every_gsw_mode_trains_per_batch(recipe_path, mode):
    overrides = [f"stages.sem.loss.gsw.mode={mode}", "stages.sem.loss.gsw.per_batch=true"]
    results = Trainer(load_recipe(recipe_path, overrides), progress=False).run()
    assert np.isfinite(results["sem"]["val_mse"])


def test_unknown_feature_layer_is_a_recipe_error(recipe_path):
    with pytest.raises(RecipeError, match="stage 'sem': loss.layer must be one of .*got 'bogus'"):
        Trainer(load_recipe(recipe_path, ["stages.sem.loss.layer=bogus"]), progress=False).run()


def test_semantic_loss_needs_a_classifier(recipe_path):
    with pytest.raises(RecipeError, match="loss.kind 'semantic' needs 'classifier'"):
        Trainer(load_recipe(recipe_path, ["stages.sem.classifier=null"]), progress=False).run()


def test_gsw_weights_follow_eq_10_and_the_paper_mode_is_the_class_average():
    torch.manual_seed(1)
    model = CifarClassifier(widths=(8, 8, 8), num_classes=4).eval()
    images, labels = torch.rand(6, 3, 32, 32), torch.tensor([0, 1, 2, 3, 0, 1])
    grads, logits = gsw.channel_gradients(model, images, "block2")
    assert grads.shape == (6, 4, 8) and logits.shape == (6, 4)
    torch.testing.assert_close(gsw.raw_weights(model, images, labels, "block2", "paper"), grads.mean(1))
    torch.testing.assert_close(gsw.raw_weights(model, images, labels, "block2", "true_class"),
                               grads[torch.arange(6), labels])
    w = gsw.semantic_weights(torch.tensor([[0.0, 1.0, 2.0]]), tau=2.0, r=3.0)
    torch.testing.assert_close(w, 3.0 * torch.softmax(torch.tensor([[0.0, 2.0, 4.0]]), dim=-1))
    assert float(w.sum()) == pytest.approx(3.0)


def test_semantic_loss_is_eq_13():
    f, f_hat = torch.zeros(2, 3, 2, 2), torch.ones(2, 3, 2, 2)
    f_hat[1] *= 2
    weights = torch.tensor([1.0, 0.0, 0.5])
    # per image: sum_k w_k * ||f'_k - f_k||^2 = 4 * (1 + 0.5) * d^2; mean over the batch of d = 1 and 2
    assert float(gsw.semantic_loss(f_hat, f, weights)) == pytest.approx((6.0 + 24.0) / 2)


def test_bandwidth_ratio_sets_the_rate(recipe_path):
    """bpp = 3 · k/n · bits per symbol (docs/conventions.md): k/n = 1/48 is 0.25 bpp with 16-QAM, 0.125 with QPSK."""
    overrides = ["stages.mse.model.bpp=null", f"stages.mse.model.bandwidth_ratio={1 / 48}",
                 "stages.mse.link.constellation=qpsk"]
    Trainer(load_recipe(recipe_path, overrides), progress=False, only=["mse"]).run()
    codec = load_codec(str(recipe_path.parent / "export" / "mse.pt"))
    assert codec.config.code_channels == 2  # 0.125 bpp = 2 code channels of 8x8: 128 bits, 64 QPSK symbols


def test_effective_maps_counts_uniform_and_concentrated_weights():
    assert gsw.effective_maps(torch.full((8,), 0.125)) == pytest.approx(8.0)
    assert gsw.effective_maps(torch.tensor([1.0, 0.0, 0.0, 0.0])) == pytest.approx(1.0)
    assert gsw.effective_maps(torch.tensor([0.5, 0.5, 0.0, 0.0])) == pytest.approx(2.0)


def test_logit_scale_keeps_the_bits_and_lets_gradient_through_a_saturated_encoder():
    from sdjscc_phy.models.jscc import JsccCodec, JsccConfig
    from sdjscc_phy.phy.quantization import binarize_straight_through

    torch.manual_seed(0)
    plain = JsccCodec(JsccConfig(code_channels=4, width=16))
    scaled = JsccCodec(JsccConfig(code_channels=4, width=16, logit_scale=0.03))
    scaled.load_state_dict(plain.state_dict())
    with torch.no_grad():  # logits of |z| ~ 40, as in the trained codecs (median |z| 34)
        for codec in (plain, scaled):
            codec.encoder.net[-1].bias.copy_(torch.tensor([40.0, -40.0, 40.0, -40.0]))
    images = torch.rand(6, 3, 32, 32)
    grads = []
    for codec in (plain, scaled):
        e = codec.encoder(images)
        binarize_straight_through(e).sum().backward()
        grads.append(codec.encoder.net[0].weight.grad.abs().mean())
    assert torch.equal(plain.encoder(images) > 0.5, scaled.encoder(images) > 0.5)
    assert grads[1] > 1e6 * grads[0] and grads[1] > 0


def test_logit_scale_is_stored_with_the_codec_and_checked(recipe_path):
    from sdjscc_phy.training.stages import STAGE_KINDS

    recipe = load_recipe(recipe_path, ["stages.mse.model.logit_scale=0.25"])
    Trainer({**recipe, "stages": recipe["stages"][:1]}, progress=False).run()
    assert load_codec(str(recipe_path.parent / "export" / "mse.pt")).encoder.logit_scale == 0.25
    with pytest.raises(RecipeError, match="logit_scale must be a number > 0; got 0"):
        bad = load_recipe(recipe_path, ["stages.mse.model.logit_scale=0"])
        STAGE_KINDS["jscc"](bad["stages"][0], seed=0).setup()
