"""Neural blocks in flowgraphs: checkpoints by path, shapes from the checkpoint, gradients on the torch path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from sdjscc_phy.blocks.binarizer import Binarizer
from sdjscc_phy.blocks.channels import AwgnChannel
from sdjscc_phy.blocks.mapping import SymbolDemapper, SymbolMapper
from sdjscc_phy.blocks.neural import JsccDecoder, JsccEncoder
from sdjscc_phy.cli.main import main
from sdjscc_phy.core.block import BatchContext, SetupContext
from sdjscc_phy.core.flowgraph import load_flowgraph
from sdjscc_phy.core.scheduler import run_flowgraph
from sdjscc_phy.errors import FlowgraphError
from sdjscc_phy.models.classifier import CifarClassifier, VggClassifier, export_classifier
from sdjscc_phy.models.jscc import JsccCodec, JsccConfig, export_codec

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, str]:
    """A tiny random codec (0.25 bpp), classifier and unseen (VGG-style) classifier, exported like the shipped ones."""
    root = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    codec_path, classifier_path = root / "codec.pt", root / "classifier.pt"
    export_codec(JsccCodec(JsccConfig(code_channels=4, width=16)), codec_path, {})
    model = CifarClassifier(widths=(8, 8, 8))
    export_classifier(model, classifier_path, [f"c{i}" for i in range(10)], {})
    export_classifier(VggClassifier(widths=(4, 8, 8)), root / "vgg.pt", [f"c{i}" for i in range(10)], {})
    return {"codec": str(codec_path), "classifier": str(classifier_path), "unseen": str(root / "vgg.pt")}


def overrides(ckpt: dict, *extra: str) -> list[str]:
    return [f"enc.checkpoint={ckpt['codec']}", f"dec.checkpoint={ckpt['codec']}",
            f"task.checkpoint={ckpt['classifier']}", f"unseen.checkpoint={ckpt['unseen']}", "options.max_items=40",
            "options.batch_size=16", *extra]


@pytest.mark.parametrize("name", ["sdjscc_awgn", "deepjscc_awgn", "sdjscc_rayleigh", "deepjscc_rayleigh"])
def test_shipped_flowgraphs_run_with_given_checkpoints(checkpoints, name):
    fg = load_flowgraph(str(REPO / "flowgraphs" / f"{name}.yaml"), overrides(checkpoints))
    assert fg.output_shapes[("enc", "e")] == (256,) and fg.output_shapes[("dec", "image")] == (3, 32, 32)
    metrics = run_flowgraph(fg).metrics
    assert metrics["bpp"] == 0.25
    assert {"accuracy", "f1_macro", "psnr_db", "ssim", "unseen_accuracy", "unseen_accuracy_se"} <= set(metrics)
    assert 0.0 <= metrics["accuracy"] <= 1.0 and 0.0 <= metrics["unseen_accuracy"] <= 1.0 and 0 < metrics["psnr_db"] < 100


def test_every_shipped_accuracy_flowgraph_also_scores_with_the_unseen_classifier():
    """Where the task classifier scores images, the unseen one scores the same images into its own sink."""
    checked = []
    for path in sorted((REPO / "flowgraphs").glob("*.yaml")):
        graph = yaml.safe_load(path.read_text())
        blocks = {b["id"]: b for b in graph["blocks"]}
        tasks = [i for i, b in blocks.items()
                 if b["type"] == "classifier" and b["params"]["checkpoint"] == "classifier_cifar10"]
        if not tasks:
            continue
        source_of = {dst: src for src, dst in (c.replace(" ", "").split("->") for c in graph["connections"])}
        fed_by_unseen = [dst.split(".")[0] for dst, src in source_of.items() if src == "unseen.logits"]
        assert blocks["unseen"]["params"] == {"checkpoint": "classifier_vgg_cifar10"}, path.name
        assert source_of["unseen.image"] == source_of[f"{tasks[0]}.image"], path.name
        (sink,) = fed_by_unseen
        assert blocks[sink]["params"]["prefix"] == "unseen_" and "accuracy" in blocks[sink]["params"]["metrics"]
        assert source_of[f"{sink}.label"] == "src.label", path.name
        checked.append(path.stem)
    assert {"sdjscc_awgn", "deepjscc_rayleigh", "cl_awgn", "classifier_clean", "sscc_jpeg_ldpc_awgn"} <= set(checked)


def test_same_seed_reproduces_a_neural_run(checkpoints):
    path = str(REPO / "flowgraphs" / "sdjscc_awgn.yaml")
    first = run_flowgraph(load_flowgraph(path, overrides(checkpoints))).metrics
    again = run_flowgraph(load_flowgraph(path, overrides(checkpoints))).metrics
    assert first == again


def test_rate_mismatch_and_bad_checkpoint_are_one_line_errors(checkpoints, tmp_path, capsys):
    path = str(REPO / "flowgraphs" / "sdjscc_awgn.yaml")
    with pytest.raises(FlowgraphError) as info:
        load_flowgraph(path, overrides(checkpoints, "enc.bpp=0.5"))
    assert any("parameter 'bpp' is 0.5 but checkpoint" in e and "codes 0.25 bpp" in e for e in info.value.errors)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    assert main(["validate", path, *[f"--set={o}" for o in overrides(checkpoints, f"dec.checkpoint={corrupt}")]]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {path}:") and f"codec checkpoint '{corrupt}' is unreadable" in line


def test_gradients_reach_the_encoder_through_the_torch_path(checkpoints):
    cpu = torch.device("cpu")
    blocks = [JsccEncoder("enc", checkpoint=checkpoints["codec"]), Binarizer("q"),
              SymbolMapper("map", constellation="qam16"), AwgnChannel("ch", snr_db=5.0),
              SymbolDemapper("demap", constellation="qam16"), JsccDecoder("dec", checkpoint=checkpoints["codec"])]
    for block in blocks:
        block.setup(SetupContext(cpu, "torch", 0, {}, {}, frozenset({"p1", "llr"})))
    ctx = BatchContext(0, 0, 4, "torch", cpu, 0, "x", 1)
    image = torch.rand(4, 3, 32, 32)
    e = blocks[0].process({"image": image}, ctx)["e"]
    bits = blocks[1].process({"e": e}, ctx)["bits"]
    symbols = blocks[2].process({"bits": bits}, ctx)["symbols"]
    received = blocks[3].process({"x": symbols}, ctx)
    p1 = blocks[4].process(received, ctx)["p1"]
    image_hat = blocks[5].process({"p1": p1}, ctx)["image"]
    torch.nn.functional.mse_loss(image_hat, image).backward()
    first_conv = blocks[0].codec.encoder.net[0].weight
    assert first_conv.grad is not None and first_conv.grad.abs().sum() > 0
