"""Deep JSCC (MSE) then SD-JSCC (semantic loss, GSW) through the training flowgraphs on tiny data; GSW math."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import make_image_folder
from sdjscc_phy.core.flowgraph import load_flowgraph
from sdjscc_phy.errors import FlowgraphError, RecipeError
from sdjscc_phy.models.classifier import CifarClassifier, VggClassifier, export_classifier
from sdjscc_phy.models.jscc import load_codec
from sdjscc_phy.training import Trainer, load_recipe
from sdjscc_phy.training import gsw


REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO / "flowgraphs" / "train"


@pytest.fixture
def recipe_path(tmp_path) -> Path:
    """Stage 1 (MSE, fresh codec) and stage 2 (semantic loss from stage 1's export, GSW fitted on 20 items)
    through flowgraphs/train/ on 3 classes x 12 random 32x32 JPEGs."""
    make_image_folder(tmp_path / "images", ("a", "b", "c"), 12, 32)
    (tmp_path / "val.txt").write_text("a/0.jpg\nb/0.jpg\nc/0.jpg\na/1.jpg\nb/1.jpg\nc/1.jpg\n")
    torch.manual_seed(0)
    export_classifier(CifarClassifier(widths=(8, 8, 8), num_classes=3), tmp_path / "clf.pt", ["a", "b", "c"], {})
    common = {"epochs": 1, "batch_size": 10, "optimizer": {"name": "Adam", "lr": 1e-3}, "train": ["enc", "dec"],
              "validation": {"set": ["src.split=val"]}}
    recipe = {"seed": 3, "output_dir": "runs", "variables": {"bpp": 0.25, "snr_db": 5.0},
              "set": [f"data_root={tmp_path / 'images'}", f"src.split_file={tmp_path / 'val.txt'}"],
              "stages": [
                  {**common, "name": "mse", "flowgraph": str(TRAIN / "deepjscc_awgn.yaml"), "export": "export/mse.pt",
                   "set": ["enc.width=16", "dec.width=16"]},
                  {**common, "name": "sem", "flowgraph": str(TRAIN / "sdjscc_awgn.yaml"), "export": "export/sem.pt",
                   "variables": {"codec": str(tmp_path / "export" / "mse.pt"), "classifier": str(tmp_path / "clf.pt"),
                                 "layer": "block1", "tau": 2.0},
                   "set": ["semantic.gsw_images=20"]},
              ]}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_two_stages_train_export_and_reload(recipe_path):
    results = Trainer(load_recipe(recipe_path), progress=False).run()
    assert {"val_psnr_db", "val_mse", "val_loss_mse", "val_loss"} <= set(results["mse"])
    assert {"val_psnr_db", "val_accuracy", "val_loss_semantic"} <= set(results["sem"])
    codec = load_codec(str(recipe_path.parent / "export" / "sem.pt"))
    assert codec.config.code_channels == 4 and codec.config.width == 16
    assert codec.metadata["metrics"]["val_accuracy"] == results["sem"]["val_accuracy"]
    assert codec.metadata["recipe"]["variables"]["tau"] == 2.0


def test_a_stage_that_loads_an_earlier_export_is_checked_when_it_starts(recipe_path):
    """Before stage 1 has run, stage 2's codec does not exist: the recipe validates, and stage 2's own
    mistakes still show."""
    load_recipe(recipe_path, check_flowgraphs=True)
    with pytest.raises(RecipeError, match="stage 'sem'.*block 'semantic': parameter 'layer': must be one of"):
        load_recipe(recipe_path, ["stages.sem.variables.layer=bogus"], check_flowgraphs=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_both_stages_train_on_the_gpu_and_export_checkpoints_a_cpu_loads(recipe_path):
    from test_training import all_tensors_on_cpu

    results = Trainer(load_recipe(recipe_path, ["device=cuda"]), progress=False).run()
    for name in ("mse", "sem"):
        export = recipe_path.parent / "export" / f"{name}.pt"
        assert all_tensors_on_cpu(torch.load(export, weights_only=True))
        assert load_codec(str(export)).metadata["metrics"] == results[name]
    assert 0.0 <= results["sem"]["val_accuracy"] <= 1.0 and np.isfinite(results["sem"]["val_psnr_db"])


def test_gsw_weights_are_fitted_once_on_the_calibration_items(recipe_path):
    from sdjscc_phy.training.trainer import StageRun

    Trainer(load_recipe(recipe_path), progress=False, only=["mse"]).run()
    recipe = load_recipe(recipe_path)
    stage = StageRun(recipe, recipe["stages"][1], torch.device("cpu"))
    semantic = stage.fg.blocks["semantic"]
    stage.calibrate()
    assert semantic.weights.shape == (8,) and float(semantic.weights.sum()) == pytest.approx(1.0)
    # eq. 10 over the first 20 items of the calibration order (epoch -1, no augmentation)
    values = stage.scheduler.run_batch(0, 0, 10, epoch=-1, only={"src"})
    more = stage.scheduler.run_batch(1, 10, 10, epoch=-1, only={"src"})
    pairs = [(values[("src", "image")], values[("src", "label")]), (more[("src", "image")], more[("src", "label")])]
    raw = gsw.mean_raw_weights(semantic.classifier, pairs, "block1", "true_class")
    torch.testing.assert_close(semantic.weights, gsw.semantic_weights(raw, 2.0, 1.0))


@pytest.mark.parametrize("mode", ["paper", "off"])
def test_every_gsw_mode_trains_per_batch(recipe_path, mode):
    overrides = [f"stages.sem.variables.gsw_mode=\"{mode}\"", "stages.sem.set=semantic.per_batch=true"]  # YAML: off = false
    results = Trainer(load_recipe(recipe_path, overrides), progress=False).run()
    assert np.isfinite(results["sem"]["val_mse"])


def test_true_class_gsw_needs_the_labels(recipe_path, tmp_path):
    fg = (TRAIN / "sdjscc_awgn.yaml").read_text().replace("  - src.label -> semantic.label\n", "")
    (tmp_path / "nolabel.yaml").write_text(fg)
    with pytest.raises(RecipeError, match="block 'semantic': input port 'label': gsw_mode 'true_class' needs"):
        load_recipe(recipe_path, [f"stages.sem.flowgraph={tmp_path / 'nolabel.yaml'}",
                                  "stages.sem.variables.codec=deepjscc_awgn"], check_flowgraphs=True)


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


def test_semantic_loss_views_shift_and_mirror_original_and_reconstruction_alike(tmp_path):
    from sdjscc_phy.blocks.losses import SemanticLoss
    from sdjscc_phy.core.block import BatchContext

    torch.manual_seed(0)
    export_classifier(CifarClassifier(widths=(8, 8, 8)), tmp_path / "clf.pt", [f"c{i}" for i in range(10)], {})
    cpu = torch.device("cpu")

    def ctx(training: bool) -> BatchContext:
        return BatchContext(3, 0, 6, "torch", cpu, 0, "semantic", 0, epoch=1, training=training)

    views, plain = (SemanticLoss(name, classifier=str(tmp_path / "clf.pt"), gsw_mode="off", view_shift=shift)
                    for name, shift in (("semantic", 4), ("plain", 0)))
    for block in (views, plain):
        block.setup(ctx(False))
    images = torch.rand(6, 3, 32, 32)
    pair = {"image": images, "image_hat": (images + 0.1 * torch.randn_like(images)).clamp(0, 1)}
    torch.testing.assert_close(views.loss(pair, ctx(False)), plain.loss(pair, ctx(False)))  # validation: as they are
    view, view_hat = views.views(pair["image"], pair["image_hat"], ctx(True))
    assert not torch.allclose(view, images)
    torch.testing.assert_close(views.loss(pair, ctx(True)), plain.loss({"image": view, "image_hat": view_hat}, ctx(False)))
    assert float(views.loss({"image": images, "image_hat": images}, ctx(True))) == 0.0  # one view of both


def test_bpp_variable_sets_the_rate_of_a_fresh_codec(recipe_path):
    """0.125 bpp = 2 code channels of 8x8: 128 bits, 64 QPSK symbols (k/n = 1/48, CONVENTIONS.md)."""
    overrides = ["variables.bpp=0.125", "stages.mse.variables.constellation=qpsk"]
    Trainer(load_recipe(recipe_path, overrides), progress=False, only=["mse"]).run()
    assert load_codec(str(recipe_path.parent / "export" / "mse.pt")).config.code_channels == 2


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
    recipe = load_recipe(recipe_path, ["stages.mse.set=enc.logit_scale=0.25"])
    Trainer({**recipe, "stages": recipe["stages"][:1]}, progress=False).run()
    assert load_codec(str(recipe_path.parent / "export" / "mse.pt")).encoder.logit_scale == 0.25
    with pytest.raises(RecipeError, match="block 'enc': parameter 'logit_scale': must be in"):
        load_recipe(recipe_path, ["stages.mse.set=enc.logit_scale=0"], check_flowgraphs=True)


def test_a_fresh_gdn_codec_trains_and_exports_its_nonlinearity(recipe_path):
    gdn = ["stages.mse.set=enc.nonlinearity=gdn", "stages.mse.set=dec.nonlinearity=gdn"]
    recipe = load_recipe(recipe_path, gdn)
    Trainer({**recipe, "stages": recipe["stages"][:1]}, progress=False).run()
    assert load_codec(str(recipe_path.parent / "export" / "mse.pt")).config.nonlinearity == "gdn"
    with pytest.raises(RecipeError, match="block 'dec': parameter 'nonlinearity': must be one of"):
        load_recipe(recipe_path, ["stages.mse.set=dec.nonlinearity=GDN"], check_flowgraphs=True)


def test_the_cross_entropy_term_alone_trains_the_codec_through_the_frozen_task_network(recipe_path):
    """sdjscc_ce_awgn.yaml: with the semantic loss weighted 0 (skipped), the task network's cross-entropy is
    the whole objective, so the codec moves only if its gradient passes through the frozen classifier."""
    overrides = [f"stages.sem.flowgraph={TRAIN / 'sdjscc_ce_awgn.yaml'}", "stages.sem.set=semantic.weight=0"]
    results = Trainer(load_recipe(recipe_path, overrides), progress=False).run()
    assert "val_loss_ce" in results["sem"] and "val_loss_semantic" in results["sem"]
    before, after = (load_codec(str(recipe_path.parent / "export" / f"{n}.pt")) for n in ("mse", "sem"))
    for half in ("encoder", "decoder"):
        moved = [not torch.equal(a, b) for a, b in zip(getattr(before, half).state_dict().values(),
                                                       getattr(after, half).state_dict().values(), strict=True)]
        assert any(moved), half


@pytest.mark.parametrize("flowgraph, loss", [("sdjscc_awgn.yaml", "semantic"), ("sdjscc_ce_awgn.yaml", "semantic"),
                                             ("cl_awgn.yaml", "cl")])
def test_no_loss_reads_the_unseen_vgg_classifier(recipe_path, flowgraph, loss):
    """The VGG-style classifier is the unseen receiver: a loss naming it is a one-line validation error."""
    tmp_path = recipe_path.parent
    export_classifier(VggClassifier(widths=(4, 4, 4), num_classes=3), tmp_path / "vgg.pt", ["a", "b", "c"], {})
    with pytest.raises(FlowgraphError) as err:
        load_flowgraph(str(TRAIN / flowgraph), [f"data_root={tmp_path / 'images'}", f"src.split_file={tmp_path / 'val.txt'}",
                                                 f"classifier={tmp_path / 'vgg.pt'}",
                                                 "codec=deepjscc_awgn"])
    (line,) = str(err.value).splitlines()
    assert f"block '{loss}'" in line and "parameter 'classifier'" in line and "VggClassifier" in line, line


def test_semantic_loss_over_several_networks_is_the_mean_of_each_networks_loss(tmp_path):
    """more_classifiers: eq. 13 per network with its own weights, averaged; the unseen VGG may not be one."""
    from sdjscc_phy.blocks.losses import SemanticLoss
    from sdjscc_phy.core.block import BatchContext

    names = [f"c{i}" for i in range(10)]
    for seed, widths in ((0, (8, 8, 8)), (1, (4, 8, 16))):
        torch.manual_seed(seed)
        export_classifier(CifarClassifier(widths=widths), tmp_path / f"clf{seed}.pt", names, {})
    export_classifier(VggClassifier(widths=(4, 4, 4)), tmp_path / "vgg.pt", names, {})
    ctx = BatchContext(3, 0, 6, "torch", torch.device("cpu"), 0, "semantic", 0, epoch=1, training=False)
    first, second = (str(tmp_path / f"clf{seed}.pt") for seed in (0, 1))
    blocks = [SemanticLoss("semantic", classifier=c, more_classifiers=more, gsw_mode="paper", layer="block2")
              for c, more in ((first, []), (second, []), (first, [second]))]
    images = torch.rand(6, 3, 32, 32)
    batch = {"image": images, "image_hat": (images + 0.1 * torch.randn_like(images)).clamp(0, 1),
             "label": torch.arange(6)}
    for block in blocks:
        block.setup(ctx)
        block.calibrate([batch])
    one, two, both = (float(block.loss(batch, ctx)) for block in blocks)
    assert one != pytest.approx(two)
    assert both == pytest.approx((one + two) / 2)
    torch.testing.assert_close(blocks[2].more_weights[0], blocks[1].weights)
    with pytest.raises(Exception, match="parameter 'more_classifiers'.*VggClassifier"):
        SemanticLoss("semantic", classifier=first, more_classifiers=[str(tmp_path / "vgg.pt")]).networks  # noqa: B018
