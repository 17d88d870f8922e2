"""Multi-task JSCC (MCR², nearest class subspace, SNR gate) and CL-JSCC (NT-Xent): losses on known cases,
gate masks -> symbols sent, the shipped recipes trained on a few images through `jsccflow train` (their
training flowgraphs), and the shipped flowgraphs run with tiny checkpoints."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_image_folder
from sdjscc_phy.blocks.multitask import MultitaskDecoder
from sdjscc_phy.cli.main import main
from sdjscc_phy.core.flowgraph import load_flowgraph
from sdjscc_phy.core.scheduler import run_flowgraph
from sdjscc_phy.errors import JsccflowError, PortError
from sdjscc_phy.models.classifier import CifarClassifier, export_classifier
from sdjscc_phy.models.jscc import load_codec
from sdjscc_phy.models.multitask import MultitaskConfig, MultitaskJscc, export_multitask, load_multitask
from sdjscc_phy.training.losses import coding_rate, mcr2, nt_xent

REPO = Path(__file__).resolve().parents[1]


# --- losses -------------------------------------------------------------------------------------
def test_mcr2_of_two_orthogonal_unit_features_is_closed_form():
    # R(Z) = ½ logdet(I + 2/(2·1) I) = ln 2; each class alone: ½ logdet(I + 2/(1·1) e eᵀ) = ½ ln 3
    z, labels = torch.eye(2), torch.tensor([0, 1])
    out = mcr2(z, labels, eps=1.0)
    assert float(out["r"]) == pytest.approx(math.log(2))
    assert float(out["r_c"]) == pytest.approx(0.5 * math.log(3))
    assert float(out["delta_r"]) == pytest.approx(math.log(2) - 0.5 * math.log(3))


def test_coding_rate_matches_an_eigenvalue_reference_and_rewards_separated_classes():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(12, 5))
    eigenvalues = np.linalg.eigvalsh(np.eye(5) + 5 / (12 * 0.5**2) * z.T @ z)
    assert float(coding_rate(torch.tensor(z), eps=0.5)) == pytest.approx(0.5 * np.log(eigenvalues).sum(), rel=1e-5)
    labels = torch.tensor([0] * 6 + [1] * 6)
    separated = torch.zeros(12, 4)
    separated[:6, :2], separated[6:, 2:] = torch.randn(6, 2), torch.randn(6, 2)
    mixed = separated[torch.tensor([0, 6, 1, 7, 2, 8, 3, 9, 4, 10, 5, 11])]  # same features, labels scrambled
    assert mcr2(separated, labels, 0.5)["delta_r"] > mcr2(mixed, labels, 0.5)["delta_r"]


def test_nt_xent_of_orthogonal_pairs_is_closed_form_and_matches_a_loop():
    # views e1, e2, e1, e2 at τ = 1: each view's positive has similarity 1, its two negatives 0
    views = torch.eye(2)
    assert float(nt_xent(views, views.clone(), 1.0)) == pytest.approx(math.log((math.e + 2) / math.e))
    torch.manual_seed(0)
    a, p, tau = torch.randn(5, 7), torch.randn(5, 7), 0.3
    v = torch.nn.functional.normalize(torch.cat([a, p]), dim=1)
    losses = []
    for i in range(10):
        j = (i + 5) % 10
        den = sum(math.exp(float(v[i] @ v[k]) / tau) for k in range(10) if k != i)
        losses.append(-math.log(math.exp(float(v[i] @ v[j]) / tau) / den))
    assert float(nt_xent(a, p, tau)) == pytest.approx(sum(losses) / 10, rel=1e-5)


def test_rate_loss_is_the_fraction_sent_or_its_capacity_price():
    from sdjscc_phy.blocks.losses import RateLoss

    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    rate = RateLoss("rate")
    assert float(rate.loss({"mask": mask}, None)) == pytest.approx(0.75)
    # 0 dB: log2(1 + 1) = 1 bit per channel use; 10 log10(3) dB: log2(1 + 3) = 2 bits
    snr = torch.tensor([0.0, 10 * math.log10(3.0)])
    assert float(rate.loss({"mask": mask, "snr_db": snr}, None)) == pytest.approx((0.5 * 1 + 1.0 * 2) / 2)


def test_distillation_is_t_squared_kl_of_softened_scores_and_zero_for_a_matching_student():
    from sdjscc_phy.blocks.losses import CrossEntropy

    torch.manual_seed(0)
    student, teacher = torch.randn(5, 10, requires_grad=True), torch.randn(5, 10)
    for t in (1.0, 4.0):
        kd = CrossEntropy("kd", temperature=t)
        q = torch.softmax(teacher / t, 1)
        expected = t * t * (q * (q.log() - torch.log_softmax(student / t, 1))).sum(1).mean()
        torch.testing.assert_close(kd.loss({"logits": student, "teacher_logits": teacher}, None), expected)
        assert float(kd.loss({"logits": teacher, "teacher_logits": teacher}, None)) == pytest.approx(0.0, abs=1e-6)
    kd.loss({"logits": student, "teacher_logits": teacher}, None).backward()
    assert student.grad.abs().sum() > 0


@pytest.mark.parametrize("targets", [[], ["src.label -> ce.label", "teacher.logits -> ce.teacher_logits"]])
def test_cross_entropy_needs_exactly_one_kind_of_target(write_flowgraph, targets):
    lines = "\n".join(f"          - {c}" for c in targets)
    path = write_flowgraph(f"""\
        options: {{max_items: 10, path: torch}}
        blocks:
          - {{id: src, type: image_source}}
          - {{id: student, type: classifier}}
          - {{id: teacher, type: classifier}}
          - {{id: ce, type: cross_entropy}}
        connections:
          - src.image -> student.image
          - src.image -> teacher.image
          - student.logits -> ce.logits
{lines}
        """)
    with pytest.raises(JsccflowError) as info:
        load_flowgraph(path)
    (line,) = str(info.value).splitlines()
    assert "block 'ce'" in line and "input ports 'label' and 'teacher_logits': connect exactly one" in line


# --- model ------------------------------------------------------------------------------------
def stepped_gate(model: MultitaskJscc) -> MultitaskJscc:
    """Gate logits 1 - a_c·relu(snr/10), a = (0, 0.5, 1, 2): 4 channels at 0 dB, 3 at 5, 2 at 10, 1 at 20."""
    with torch.no_grad():
        for p in model.gate.parameters():
            p.zero_()
        model.gate.net[0].weight[0, 0] = 1.0
        model.gate.net[2].weight[:, 0] = torch.tensor([0.0, 0.5, 1.0, 2.0]).neg()
        model.gate.net[2].bias.fill_(1.0)
    return model


def tiny_model(gated: bool, num_classes: int = 10) -> MultitaskJscc:
    torch.manual_seed(0)
    model = MultitaskJscc(MultitaskConfig(code_channels=4, width=8, feature_dim=8, head_width=8,
                                          num_classes=num_classes, subspace_dim=2, gated=gated))
    return stepped_gate(model) if gated else model


@pytest.mark.parametrize(("snr_db", "channels"), [(0.0, 4), (5.0, 3), (10.0, 2), (20.0, 1)])
def test_gate_mask_sets_the_channels_sent(snr_db, channels):
    model = tiny_model(gated=True)
    mask = model.channel_mask(snr_db, 3)
    assert mask.shape == (3, 4) and mask.sum(1).tolist() == [channels] * 3
    bits = model.bit_mask(mask, 256)
    assert bits.shape == (3, 256) and bits[0].sum() == 64 * channels and bits[0, :64].all()  # channel-major


def test_erased_bits_read_as_p1_one_half_and_gradients_reach_the_gate():
    model = tiny_model(gated=True)
    snr = torch.tensor([20.0, 0.0])
    mask = model.bit_mask(model.channel_mask(snr, 2), 256)
    p1 = torch.rand(2, 256)
    received = model.erase(p1, mask)
    assert torch.all(received[0, 64:] == 0.5)
    torch.testing.assert_close(received[0, :64], p1[0, :64])
    torch.testing.assert_close(received[1], p1[1])
    model.decoder(received, 32, 32).sum().backward()
    assert model.gate.net[2].bias.grad.abs().sum() > 0


def test_threshold_gate_sends_fewer_channels_as_the_snr_rises_and_learns_its_thresholds():
    torch.manual_seed(0)
    model = MultitaskJscc(MultitaskConfig(code_channels=4, width=8, feature_dim=8, head_width=8, subspace_dim=2,
                                          gated=True, gate_kind="threshold"))
    snr = torch.linspace(0.0, 20.0, 81)
    start = model.channel_mask(torch.tensor([0.0, 14.0, 19.0, 24.0]), 4).sum(1)
    assert start.tolist() == [4.0, 3.0, 2.0, 1.0]  # thresholds start apart: 12.5, 17.5, 22.5, 27.5 dB
    with torch.no_grad():
        model.gate.threshold.copy_(torch.tensor([0.5, 1.0, 1.5, 3.0]))  # 5, 10, 15, 30 dB
    sent = model.channel_mask(torch.tensor([0.0, 7.0, 12.0, 20.0]), 4).sum(1)
    assert sent.tolist() == [4.0, 3.0, 2.0, 1.0]
    with torch.no_grad():
        model.gate.threshold.copy_(torch.rand(4) * 2.0)
    counts = model.channel_mask(snr, 81).sum(1)
    assert torch.all(counts[1:] <= counts[:-1])  # monotone for any thresholds
    model.channel_mask(torch.tensor([9.0]), 1).sum().backward()
    assert model.gate.threshold.grad.abs().sum() > 0


def test_the_relaxed_gate_attenuates_channels_by_its_sigmoid():
    torch.manual_seed(0)
    model = MultitaskJscc(MultitaskConfig(code_channels=4, width=8, feature_dim=8, head_width=8, subspace_dim=2,
                                          gated=True, gate_kind="threshold"))
    snr = torch.tensor([12.5, 20.0])
    relaxed = model.channel_mask(snr, 2, relaxed=True)
    torch.testing.assert_close(relaxed, torch.sigmoid((torch.tensor([12.5, 17.5, 22.5, 27.5]) - snr[:, None]) / 2.0))
    assert torch.equal(model.channel_mask(snr, 2), (relaxed > 0.5).float())  # the hard mask rounds it
    p1 = torch.ones(2, 256)
    received = model.erase(p1, model.bit_mask(relaxed, 256))  # attenuated towards erasure (0.5)
    torch.testing.assert_close(received[:, ::64], 0.5 + 0.5 * relaxed)


def class_bit_model(tiny_classifier: str, gated: bool = False) -> MultitaskJscc:
    torch.manual_seed(0)
    return MultitaskJscc(MultitaskConfig(code_channels=4, width=8, feature_dim=8, head_width=8, subspace_dim=2,
                                         num_classes=3, classifier="linear", gated=gated, gate_kind="threshold",
                                         class_bits=16, tx_classifier=tiny_classifier))


def test_class_bits_replace_the_start_of_the_last_code_channel_and_are_never_gated(tiny_data):
    model = class_bit_model(tiny_data["clf"], gated=True)
    image = torch.rand(2, 3, 32, 32)
    code, e = model.encoder(image), model.encode(image)
    assert model.class_slice(256) == slice(192, 208)
    torch.testing.assert_close(e[:, :192], code[:, :192])
    torch.testing.assert_close(e[:, 208:], code[:, 208:])
    torch.testing.assert_close(e[:, 192:208], model.class_encoder(image))
    assert not torch.allclose(e[:, 192:208], code[:, 192:208])
    mask = model.bit_mask(model.channel_mask(torch.tensor([0.0, 30.0]), 2), 256)
    assert mask[0].sum() == 256 and mask[1].sum() == 16 and mask[1, 192:208].all()  # all gated off but the class bits
    # the transmitter's classifier is frozen and outside the module tree: neither trained nor exported
    assert not any("classifier." in k for k in model.state_dict())
    assert not any(p.requires_grad for p in model.class_encoder.classifier.parameters())


def test_the_receiver_reads_the_class_bits_and_starts_where_a_codec_without_them_was(tiny_data):
    model = class_bit_model(tiny_data["clf"])
    p1 = torch.rand(3, 256)
    torch.testing.assert_close(model.embed(p1, 32, 32), model.head(model.grid(p1, 32, 32)))  # zero-initialised reader
    torch.nn.init.normal_(model.class_reader.net[-1].weight)
    changed = p1.clone()
    changed[:, 192:208] = 1.0 - changed[:, 192:208]
    assert not torch.allclose(model.embed(changed, 32, 32), model.embed(p1, 32, 32))
    model.embed(p1, 32, 32).sum().backward()
    assert model.class_reader.net[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize(("field", "message"), [
    ("class_bits: 10", "class_bits = 10 must fill whole qam16 symbols"),
    ("class_bits: 68", "class_bits = 68 must fill whole qam16 symbols within one code channel of 64 bits"),
    ("class_bits: -4", "class_bits must be an integer >= 0"),
    ("{class_bits: 16, tx_classifier: nosuch}", "classifier checkpoint 'nosuch' is neither a file nor a shipped name")])
def test_bad_class_bits_are_one_error_line(field, message, tmp_path, capsys):
    flowgraph = tmp_path / "mt.yaml"
    architecture = field if field.startswith("{") else "{" + field + "}"
    flowgraph.write_text((REPO / "flowgraphs" / "multitask_awgn.yaml").read_text().replace(
        "params: {checkpoint: $codec, snr_db: $snr_db, constellation: qam16}",
        "params: {checkpoint: null, architecture: " + architecture + ", snr_db: $snr_db, constellation: qam16}"))
    assert main(["run", str(flowgraph)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err


@pytest.mark.parametrize("field", ["gate_kind: monotone", "classifier: knn"])
def test_a_bad_architecture_choice_is_one_error_line(field, tmp_path, capsys):
    flowgraph = tmp_path / "mt.yaml"
    flowgraph.write_text((REPO / "flowgraphs" / "multitask_awgn.yaml").read_text().replace(
        "params: {checkpoint: $codec, snr_db: $snr_db, constellation: qam16}",
        "params: {checkpoint: null, architecture: {gated: true, " + field + "}, snr_db: $snr_db, constellation: qam16}"))
    assert main(["run", str(flowgraph)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'enc'" in err and field.split(":")[0] in err and "Traceback" not in err


def test_nearest_class_subspace_classifies_features_in_their_class_subspace():
    model = MultitaskJscc(MultitaskConfig(feature_dim=4, num_classes=2, subspace_dim=2))
    torch.manual_seed(0)
    z = torch.zeros(20, 4)
    z[:10, :2], z[10:, 2:] = torch.randn(10, 2), torch.randn(10, 2)
    labels = torch.tensor([0] * 10 + [1] * 10)
    model.fit_class_statistics(z, labels)
    logits = model.logits(z)
    assert torch.equal(logits.argmax(1), labels)
    torch.testing.assert_close(logits[torch.arange(20), labels], torch.zeros(20), atol=1e-5, rtol=0)


def test_linear_classifier_reads_raw_features_and_the_subspace_receiver_the_unit_ones():
    torch.manual_seed(0)
    model = MultitaskJscc(MultitaskConfig(feature_dim=4, num_classes=2, subspace_dim=2, classifier="linear"))
    h = 3 * torch.randn(6, 4)
    torch.testing.assert_close(model.scores(h), model.linear(h))
    torch.testing.assert_close(model.scores(h, "subspace"), model.logits(h / h.norm(dim=1, keepdim=True)))
    with pytest.raises(ValueError, match="no linear classifier"):
        tiny_model(gated=False).scores(torch.randn(2, 8), "linear")


def test_a_gated_codec_starts_from_an_ungated_multitask_codec_and_keeps_a_fresh_gate(multitask_checkpoints):
    source = load_multitask(multitask_checkpoints["ungated"])
    gated = MultitaskJscc(MultitaskConfig(code_channels=4, width=8, feature_dim=8, head_width=8, subspace_dim=2,
                                          gated=True))
    MultitaskDecoder._initialise(gated, multitask_checkpoints["ungated"])
    for name, value in source.state_dict().items():
        assert torch.equal(gated.state_dict()[name], value), name
    assert torch.all(gated.gate.net[2].bias == 1.0)  # every channel open, as a fresh gate starts
    wider = MultitaskJscc(MultitaskConfig(code_channels=4, width=16, feature_dim=8, head_width=8, subspace_dim=2))
    with pytest.raises(PortError, match="parameter 'init_codec'.*does not match"):
        MultitaskDecoder._initialise(wider, multitask_checkpoints["ungated"])


# --- recipes through `jsccflow train` ------------------------------------------------------------
@pytest.fixture
def tiny_data(tmp_path) -> dict[str, str]:
    make_image_folder(tmp_path / "images", ("a", "b", "c"), 8, 32)
    (tmp_path / "val.txt").write_text("a/0.jpg\nb/0.jpg\nc/0.jpg\n")
    torch.manual_seed(0)
    export_classifier(CifarClassifier(widths=(8, 8, 8), num_classes=3), tmp_path / "clf.pt", ["a", "b", "c"], {})
    return {"root": str(tmp_path / "images"), "split": str(tmp_path / "val.txt"), "clf": str(tmp_path / "clf.pt"),
            "dir": str(tmp_path)}


def stage_overrides(stage: str, export: str, variables: dict, *flowgraph_sets: str) -> list[str]:
    items = {"batch_size": 8, "epochs": 1, "checkpoint_every_steps": 0, "export": export}
    out = [f"--set=stages.{stage}.{k}={v}" for k, v in items.items()]
    out += [f"--set=stages.{stage}.variables.{k}={v}" for k, v in variables.items()]
    return out + [f"--set=stages.{stage}.set={text}" for text in flowgraph_sets]


def data_sets(d: dict) -> list[str]:
    return [f"--set=set=data_root={d['root']}", f"--set=set=src.split_file={d['split']}"]


ARCHITECTURE = ("{code_channels: 4, width: 8, feature_dim: 6, head_width: 8, num_classes: 3, subspace_dim: 2, "
                "classifier: linear, gated: %s}")


@pytest.mark.parametrize("device", [
    "cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU"))])
def test_multitask_recipe_trains_gated_and_ungated_on_a_few_images(tiny_data, device):
    d = tiny_data
    argv = ["train", str(REPO / "recipes" / "multitask_cifar10.yaml"), "--no-progress",
            f"--set=output_dir={d['dir']}/runs", f"--set=device={device}", *data_sets(d),
            f"--set=variables.teacher={d['clf']}"]
    for stage, gated, init in (("multitask", "false", "null"), ("multitask_gate", "true", "null"),
                               ("multitask_gated", "true", f"{d['dir']}/multitask_gate.pt")):
        argv += stage_overrides(stage, f"{d['dir']}/{stage}.pt", {"init_codec": init, "architecture":
                                ARCHITECTURE % gated}, "dec.stats_images=21")
    assert main(argv) == 0
    gate_stage, gated = load_multitask(f"{d['dir']}/multitask_gate.pt"), load_multitask(f"{d['dir']}/multitask_gated.pt")
    assert gated.gate is not None and load_multitask(f"{d['dir']}/multitask.pt").gate is None
    assert gate_stage.metadata["recipe"]["variables"]["rate_weight"] == 0.0005
    assert gated.config.num_classes == 3
    assert {"val_accuracy", "val_psnr_db", "val_symbols_per_image", "val_loss_kd"} <= set(gated.metadata["metrics"])
    assert gated.linear is not None and gated.class_bases.abs().sum() > 0  # subspaces fitted for a linear codec too
    # the last stage keeps the gate the gate stage learned (enc.train_gate=false) and trains the encoder
    assert torch.all(gate_stage.gate.net[2].bias != 1.0)  # moved from its fresh start by the gate stage
    for name, value in gate_stage.gate.state_dict().items():
        assert torch.equal(gated.gate.state_dict()[name], value), name
    assert any(not torch.equal(a, b) for a, b in zip(gated.encoder.parameters(), gate_stage.encoder.parameters()))


def test_a_codec_with_class_bits_trains_from_one_without_and_exports_its_class_maps(tiny_data):
    d = tiny_data
    plain = ARCHITECTURE % "false"
    with_bits = plain[:-1] + f", class_bits: 16, tx_classifier: {d['clf']}}}"
    for name, init, architecture in (("plain", "null", plain), ("bits", f"{d['dir']}/plain.pt", with_bits)):
        argv = ["train", str(REPO / "recipes" / "multitask_cifar10.yaml"), "--no-progress", "--stage=multitask",
                f"--set=output_dir={d['dir']}/runs_{name}", *data_sets(d), f"--set=variables.teacher={d['clf']}"]
        assert main(argv + stage_overrides("multitask", f"{d['dir']}/{name}.pt",
                                           {"init_codec": init, "architecture": architecture})) == 0
    plain_model, model = load_multitask(f"{d['dir']}/plain.pt"), load_multitask(f"{d['dir']}/bits.pt")
    assert model.config.class_bits == 16 and model.class_encoder is not None
    assert model.class_reader.net[-1].weight.abs().sum() > 0  # trained from its zero start
    assert any(not torch.equal(a, b) for a, b in zip(model.encoder.parameters(), plain_model.encoder.parameters()))


def test_cl_recipe_trains_both_stages_on_a_few_images(tiny_data):
    d = tiny_data
    argv = ["train", str(REPO / "recipes" / "cl_cifar10.yaml"), "--no-progress", f"--set=output_dir={d['dir']}/runs",
            *data_sets(d), f"--set=variables.classifier={d['clf']}"]
    argv += stage_overrides("cl_pretrain", f"{d['dir']}/pre.pt", {"codec": "null"}, "enc.width=8", "dec.width=8")
    argv += stage_overrides("cl", f"{d['dir']}/cl.pt", {"codec": f"{d['dir']}/pre.pt"})
    assert main(argv) == 0
    codec = load_codec(f"{d['dir']}/cl.pt")
    assert codec.config.width == 8 and codec.metadata["recipe"]["variables"]["mse_weight"] == 100.0
    assert 0.0 <= codec.metadata["metrics"]["val_accuracy"] <= 1.0 and "val_loss_cl" in codec.metadata["metrics"]


# --- flowgraphs ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def multitask_checkpoints(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("mt")
    paths = {}
    for name, gated in (("ungated", False), ("gated", True)):
        model = tiny_model(gated)
        model.fit_class_statistics(torch.randn(100, 8), torch.arange(100) % 10)
        paths[name] = str(root / f"{name}.pt")
        export_multitask(model, paths[name], {})
    return paths


def test_the_training_flowgraph_starts_transmitter_and_receiver_from_init_codec(multitask_checkpoints):
    source = load_multitask(multitask_checkpoints["gated"])
    architecture = ("{code_channels: 4, width: 8, feature_dim: 8, head_width: 8, subspace_dim: 2, gated: true, "
                    "classifier: subspace}")
    fg = load_flowgraph(str(REPO / "flowgraphs" / "train" / "multitask_awgn.yaml"),
                        [f"init_codec={multitask_checkpoints['gated']}", f"architecture={architecture}",
                         "src.dataset=builtin", "src.split=all"])
    for block in ("enc", "dec"):
        state = fg.blocks[block].model.state_dict()
        for name, value in source.state_dict().items():
            assert torch.equal(state[name], value.float()), (block, name)


def run_multitask(checkpoint: str, *extra: str) -> dict[str, float]:
    overrides = [f"codec={checkpoint}", "options.max_items=30", "options.batch_size=16", *extra]
    return run_flowgraph(load_flowgraph(str(REPO / "flowgraphs" / "multitask_awgn.yaml"), overrides)).metrics


@pytest.mark.parametrize(("snr_db", "symbols"), [(0.0, 64), (10.0, 32), (20.0, 16)])
def test_gated_multitask_flowgraph_reports_the_symbols_it_sends(multitask_checkpoints, snr_db, symbols):
    metrics = run_multitask(multitask_checkpoints["gated"], f"snr_db={snr_db}")
    assert metrics["symbols_per_image"] == symbols and metrics["bpp"] == symbols * 4 / 1024
    assert {"accuracy", "f1_macro", "psnr_db", "ssim"} <= set(metrics)
    assert 0.0 <= metrics["accuracy"] <= 1.0 and 0 < metrics["psnr_db"] < 100


def test_the_linear_receiver_of_a_subspace_codec_is_one_error_line(multitask_checkpoints):
    with pytest.raises(JsccflowError, match="parameter 'classifier': the codec has no linear classifier"):
        run_multitask(multitask_checkpoints["ungated"], "dec.classifier=linear")


def test_gate_off_and_ungated_codecs_send_every_symbol(multitask_checkpoints):
    assert run_multitask(multitask_checkpoints["gated"], "snr_db=20", "enc.gate=false")["symbols_per_image"] == 64
    metrics = run_multitask(multitask_checkpoints["ungated"], "snr_db=20", "options.path=torch")
    assert metrics["symbols_per_image"] == 64 and metrics["bpp"] == 0.25


def test_cl_flowgraph_runs_with_given_checkpoints(tmp_path):
    from sdjscc_phy.models.jscc import JsccCodec, JsccConfig, export_codec

    torch.manual_seed(0)
    export_codec(JsccCodec(JsccConfig(code_channels=4, width=16)), tmp_path / "codec.pt", {})
    export_classifier(CifarClassifier(widths=(8, 8, 8)), tmp_path / "clf.pt", [f"c{i}" for i in range(10)], {})
    overrides = [f"enc.checkpoint={tmp_path / 'codec.pt'}", f"dec.checkpoint={tmp_path / 'codec.pt'}",
                 f"task.checkpoint={tmp_path / 'clf.pt'}", "options.max_items=20", "options.batch_size=10"]
    metrics = run_flowgraph(load_flowgraph(str(REPO / "flowgraphs" / "cl_awgn.yaml"), overrides)).metrics
    assert metrics["bpp"] == 0.25 and {"accuracy", "f1_macro", "psnr_db", "ssim"} <= set(metrics)


def test_every_declared_gate_kind_has_a_module():
    from sdjscc_phy.models import MULTITASK_GATES
    from sdjscc_phy.models.multitask import GATES

    assert tuple(GATES) == MULTITASK_GATES
