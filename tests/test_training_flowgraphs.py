"""Training through flowgraphs: a plugin channel trains, every torch path passes gradients (or says it does
not), the validator's training-graph checks, SNR as a per-item signal, the analog deep-JSCC blocks, and the
fast-Rayleigh 64-QAM SD-JSCC recipe."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import installed_plugin, make_image_folder
from sdjscc_phy.blocks.analog import normalise_power, to_complex, to_real
from sdjscc_phy.core.block import BatchContext, SetupContext
from sdjscc_phy.core.flowgraph import load_flowgraph
from sdjscc_phy.core.loss import LossBlock
from sdjscc_phy.core.registry import registry
from sdjscc_phy.core.scheduler import run_flowgraph
from sdjscc_phy.errors import RecipeError
from sdjscc_phy.training import Trainer, load_recipe
from sdjscc_phy.training.recipe import check_training_graph

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO / "flowgraphs" / "train"

PHASE_NOISE_PLUGIN = '''
"""A third-party channel: Gaussian phase noise, differentiable in its input symbols."""
import torch
from sdjscc_phy.core.block import Block
from sdjscc_phy.core.params import Param
from sdjscc_phy.core.ports import Port


class PhaseNoise(Block):
    """y = x exp(j phi), phi ~ N(0, sigma_rad^2) per symbol."""

    type_name = "plugin_phase_noise"
    inputs = (Port("x", "complex64", ("S",), "symbols"),)
    outputs = (Port("y", "complex64", ("S",), "rotated symbols"),)
    params = (Param("sigma_rad", "float", 0.1, low=0.0, unit="rad", doc="phase noise standard deviation"),)

    def process_torch(self, inputs, ctx):
        x = inputs["x"]
        phi = self.p.sigma_rad * torch.randn(x.shape, generator=ctx.generator, device=x.device)
        return {"y": x * torch.polar(torch.ones_like(phi), phi)}


class HardLimiter(Block):
    """Clips the amplitude of each symbol to 1 (a sign-and-compare; declared non-differentiable)."""

    type_name = "plugin_hard_limiter"
    differentiable = False
    inputs = (Port("x", "complex64", ("S",), "symbols"),)
    outputs = (Port("y", "complex64", ("S",), "symbols of amplitude <= 1"),)

    def process_torch(self, inputs, ctx):
        x = inputs["x"].detach()
        return {"y": x / x.abs().clamp_min(1.0)}


BLOCKS = [PhaseNoise, HardLimiter]
'''


@pytest.fixture
def phase_noise_plugin(tmp_path_factory, monkeypatch):
    yield from installed_plugin(tmp_path_factory, monkeypatch, "jsccflow_phase_noise", PHASE_NOISE_PLUGIN)


@pytest.fixture
def images(tmp_path) -> Path:
    make_image_folder(tmp_path / "images", ("a", "b", "c"), 12, 32)
    (tmp_path / "val.txt").write_text("a/0.jpg\nb/0.jpg\nc/0.jpg\na/1.jpg\nb/1.jpg\nc/1.jpg\n")
    return tmp_path


def plugin_flowgraph(tmp_path: Path, channel: str) -> Path:
    """Deep JSCC through a plugin channel (after the AWGN channel), fresh codec, MSE."""
    text = (TRAIN / "deepjscc_awgn.yaml").read_text()
    text = text.replace("  - {id: demap,", f"  - {{id: pn, type: {channel}}}\n  - {{id: demap,")
    text = text.replace("  - ch.y -> demap.y\n", "  - ch.y -> pn.x\n  - pn.y -> demap.y\n")
    path = tmp_path / f"{channel}.yaml"
    path.write_text(text)
    return path


def write_recipe(tmp_path: Path, flowgraph: Path, **stage) -> Path:
    recipe = {"seed": 0, "output_dir": str(tmp_path / "runs"),
              "set": [f"data_root={tmp_path / 'images'}", f"src.split_file={tmp_path / 'val.txt'}"],
              "stages": [{"name": "s", "flowgraph": str(flowgraph), "train": ["enc", "dec"], "epochs": 1,
                          "batch_size": 10, "optimizer": {"name": "Adam", "lr": 3e-3},
                          "set": ["enc.width=8", "dec.width=8"], "validation": {"set": ["src.split=val"]}, **stage}]}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


# --- a plugin trains ---------------------------------------------------------------------------
def test_a_plugin_channel_trains_gradients_reach_the_encoder_and_the_loss_falls(phase_noise_plugin, images):
    from sdjscc_phy.training.trainer import StageRun

    builtin = ["stages.s.set=src.dataset=builtin", "stages.s.set=src.split=all", "stages.s.validation.set=[]"]
    recipe = load_recipe(write_recipe(images, plugin_flowgraph(images, "plugin_phase_noise")), builtin)
    stage = StageRun(recipe, recipe["stages"][0], torch.device("cpu"))
    assert type(stage.fg.blocks["pn"]).__module__ == "jsccflow_phase_noise"
    optimizer = torch.optim.Adam([p for ps in stage.parameter_groups().values() for p in ps], lr=1e-2)
    encoder = stage.fg.blocks["enc"].codec.encoder
    losses = []
    for step in range(25):  # the same batch of CIFAR-10 images again and again: the loss must fall
        loss = stage.training_loss(0, 0)
        optimizer.zero_grad()
        loss.backward()
        if step == 0:
            assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())
        optimizer.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])


def test_a_plugin_flowgraph_trains_through_the_trainer(phase_noise_plugin, images):
    results = Trainer(load_recipe(write_recipe(images, plugin_flowgraph(images, "plugin_phase_noise"))),
                      progress=False).run()
    assert math.isfinite(results["s"]["val_psnr_db"])


def test_a_non_differentiable_block_between_the_trained_blocks_and_the_loss_is_refused(phase_noise_plugin, images):
    path = write_recipe(images, plugin_flowgraph(images, "plugin_hard_limiter"))
    with pytest.raises(RecipeError) as info:
        load_recipe(path, check_flowgraphs=True)
    (line,) = [l for l in str(info.value).splitlines() if "non-differentiable" in l]
    assert line.startswith(f"{path}:") and "plugin_hard_limiter.yaml:" in line
    assert "non-differentiable block 'pn' (plugin_hard_limiter) lies between trained block 'enc' and loss 'mse'" in line


def test_a_loss_without_a_trained_block_upstream_is_refused(images):
    text = (TRAIN / "deepjscc_awgn.yaml").read_text().replace(
        "  - {id: metrics,", "  - {id: still, type: mse_loss}\n  - {id: metrics,")
    text += "  - src.image -> still.image\n  - src.image -> still.image_hat\n"
    (images / "extra.yaml").write_text(text)
    with pytest.raises(RecipeError, match="loss 'still' has no trained block upstream \\(train: enc, dec\\)"):
        load_recipe(write_recipe(images, images / "extra.yaml"), check_flowgraphs=True)


def test_integer_ports_carry_no_gradient(write_flowgraph):
    """Only the predicted label (int64) links the trained classifier to the loss: no gradient can flow."""
    fg = load_flowgraph(write_flowgraph("""\
        options: {max_items: 10, path: torch}
        blocks:
          - {id: src, type: image_source}
          - {id: clf, type: classifier}
          - {id: frozen, type: classifier}
          - {id: ce, type: cross_entropy}
        connections:
          - src.image -> clf.image
          - src.image -> frozen.image
          - frozen.logits -> ce.logits
          - clf.label_hat -> ce.label
        """))
    (problem,) = check_training_graph(fg, ["clf"])
    assert "a port without gradient (an integer or noise-variance output) lies between trained block 'clf' and loss 'ce'" in problem


# --- every torch path passes gradients or says it does not --------------------------------------
EXAMPLES = {("float32", (3, "H", "W")): lambda: torch.rand(4, 3, 32, 32),
            ("float32", ("N",)): lambda: torch.rand(4, 256), ("bits", ("N",)): lambda: torch.rand(4, 256),
            ("complex64", ("S",)): lambda: torch.randn(4, 64, dtype=torch.complex64),
            ("float32", ("C",)): lambda: torch.randn(4, 10), ("float32", ("D",)): lambda: torch.randn(4, 32),
            ("int64", ()): lambda: torch.tensor([0, 1, 2, 3]), ("float32", ()): lambda: torch.tensor([0., 5., 10., 20.]),
            ("float32", ("S",)): lambda: torch.full((4, 64), 0.3),
            # detection: maps on an 8x8 stride-4 grid (32x32 scenes) and M = 4 object slots
            ("float32", ("C", "h", "w")): lambda: torch.randn(4, 10, 8, 8),
            ("float32", (2, "h", "w")): lambda: torch.rand(4, 2, 8, 8),
            ("float32", ("M", 4)): lambda: torch.tensor([[2.0, 3.0, 20.0, 17.0]]).repeat(4, 4, 1),
            ("int64", ("M",)): lambda: torch.tensor([[1, 2, 3, -1]]).repeat(4, 1)}


# optional ports a block refuses alongside another (cross_entropy: hard labels or a teacher's scores)
EXCLUSIVE = {"cross_entropy": {"teacher_logits"}}


def example_inputs(cls) -> dict[str, torch.Tensor]:
    inputs = {}
    for port in cls.inputs:
        if port.name in EXCLUSIVE.get(cls.type_name, ()):
            continue
        tensor = EXAMPLES[(port.dtype, port.shape)]()
        if port.name == "z":
            tensor = torch.nn.functional.normalize(tensor, dim=1)
        inputs[port.name] = tensor.requires_grad_(tensor.is_floating_point() or tensor.is_complex())
    return inputs


@pytest.mark.parametrize("type_name", sorted(n for n, c in registry().items() if "torch" in c.available_paths()
                                             and c.inputs))
def test_every_torch_path_passes_gradients_or_declares_itself_non_differentiable(type_name):
    cls = registry()[type_name]
    if not cls.differentiable:
        pytest.skip(f"{type_name} declares itself non-differentiable")
    torch.manual_seed(0)
    block = cls(type_name, **{p.name: None for p in cls.params if p.required and p.nullable})  # fresh models
    inputs = example_inputs(cls)
    shapes = {k: tuple(v.shape[1:]) for k, v in inputs.items()}
    outputs = block.infer_shapes(shapes)
    block.setup(SetupContext(torch.device("cpu"), "torch", 0, shapes, outputs, frozenset(p.name for p in cls.outputs)))
    block.train(True)
    ctx = BatchContext(0, 0, 4, "torch", torch.device("cpu"), 0, type_name, 1, 0, True)
    produced = block.process_torch(inputs, ctx)
    if isinstance(block, LossBlock):
        total = block.value
    else:
        total = sum(v.abs().sum() if v.is_complex() else v.sum() for v in produced.values()
                    if v.is_floating_point() or v.is_complex())
    total.backward()
    reached = {name for name, v in inputs.items() if v.grad is not None and v.grad.abs().sum() > 0}
    assert reached, f"{type_name}: no gradient reached any input of {sorted(inputs)}"
    signals = {n for n in inputs if n in ("x", "e", "bits", "y", "p1", "image_hat", "logits", "z")}
    assert signals <= reached, f"{type_name}: no gradient reached {sorted(signals - reached)}"


# --- SNR as a signal ------------------------------------------------------------------------------
@pytest.mark.parametrize("channel", ["awgn_channel", "rayleigh_channel"])
@pytest.mark.parametrize("path", ["host", "torch"])
def test_per_item_snr_port_sets_each_items_noise_on_both_paths(channel, path):
    from sdjscc_phy.blocks.channels import AwgnChannel, RayleighChannel
    from sdjscc_phy.kernels.mapping import constellation

    cls = {"awgn_channel": AwgnChannel, "rayleigh_channel": RayleighChannel}[channel]
    block = cls("ch", snr_db=99.0)  # the parameter is only the default: the port wins
    rng = np.random.default_rng(0)
    points = torch.from_numpy(constellation(2)[rng.integers(0, 4, (300, 2048))]).to(torch.complex64)
    snr = torch.tensor([0.0, 10.0, 20.0]).repeat(100)
    ctx = BatchContext(0, 0, 300, path, torch.device("cpu"), 5, "ch", 11)
    out = block.process({"x": points, "snr_db": snr}, ctx)
    noise = out["y"] - points  # with CSI the Rayleigh receiver equalises back to x + n h*/|h|^2
    for value in (0.0, 10.0, 20.0):
        rows = snr == value
        n0 = 10 ** (-value / 10)
        measured = float(noise[rows].abs().square().mean())
        if channel == "awgn_channel":
            assert measured == pytest.approx(n0, rel=0.03)
            assert torch.allclose(out["no"][rows], torch.full_like(out["no"][rows], n0))
        else:  # equalised noise N0/|h|^2 is heavy-tailed: compare with the reported per-symbol variance
            assert float((noise[rows].abs().square() / out["no"][rows]).mean()) == pytest.approx(1.0, rel=0.05)
            assert float(torch.median(out["no"][rows] * out["h"][rows].abs().square())) == pytest.approx(n0, rel=1e-4)


def test_unconnected_snr_port_keeps_the_parameter_and_the_host_noise(write_flowgraph):
    text = """\
        options: {seed: 1, batch_size: 100, max_items: 300}
        variables: {snr_db: 7.0}
        blocks:
          - {id: src,   type: bit_source, params: {num_bits: 512}}
          - {id: map,   type: symbol_mapper}
          - {id: ch,    type: awgn_channel, params: {snr_db: $snr_db}}
          - {id: demap, type: symbol_demapper}
          - {id: sink,  type: metric_sink, params: {metrics: [ber]}}
        connections:
          - src.bits -> map.bits
          - map.symbols -> ch.x
          - ch.y -> demap.y
          - ch.no -> demap.no
          - demap.llr -> sink.llr
          - src.bits -> sink.bits
        """
    text = textwrap.dedent(text)
    fixed = run_flowgraph(load_flowgraph(write_flowgraph(text))).metrics["ber"]
    per_item = text.replace("  - {id: map,", "  - {id: snr, type: snr_source, params: {values: [7.0]}}\n  - {id: map,")
    per_item += "  - snr.snr_db -> ch.snr_db\n"
    # the same noise, scaled per item: equal within float32 rounding of sqrt(N0) x unit noise
    assert run_flowgraph(load_flowgraph(write_flowgraph(per_item, "b.yaml"))).metrics["ber"] == pytest.approx(fixed, abs=1e-3)


def test_snr_source_draws_seeded_values_in_its_range_or_list():
    from sdjscc_phy.blocks.snr_source import SnrSource

    ctx = lambda batch, epoch=None: BatchContext(batch, 0, 1000, "host", torch.device("cpu"), 4, "snr", 0, epoch)
    uniform = SnrSource("snr", low_db=-2.0, high_db=8.0)
    a, b = uniform.process({}, ctx(0))["snr_db"], uniform.process({}, ctx(0))["snr_db"]
    assert torch.equal(a, b) and a.dtype == torch.float32 and -2.0 <= float(a.min()) and float(a.max()) <= 8.0
    assert not torch.equal(a, uniform.process({}, ctx(1))["snr_db"])  # another batch
    assert not torch.equal(a, uniform.process({}, ctx(0, epoch=0))["snr_db"])  # a training epoch: its own draw
    listed = SnrSource("snr", values=[0.0, 20.0]).process({}, ctx(0))["snr_db"]
    assert set(listed.tolist()) == {0.0, 20.0}
    with pytest.raises(Exception, match="high_db"):
        SnrSource("snr", low_db=5.0, high_db=1.0)


# --- analog deep JSCC ---------------------------------------------------------------------------
def test_power_normaliser_gives_unit_energy_per_item_and_complex_to_real_inverts_the_pairing():
    values = torch.randn(5, 1024) * torch.arange(1, 6)[:, None]
    symbols = normalise_power(to_complex(values))
    assert symbols.shape == (5, 512) and symbols.dtype == torch.complex64
    torch.testing.assert_close(symbols.abs().square().mean(1), torch.ones(5))
    torch.testing.assert_close(to_real(to_complex(values)), values)


def test_analog_recipe_trains_and_its_export_runs_in_the_analog_flowgraph(images):
    recipe = load_recipe(REPO / "recipes" / "deepjscc_analog_cifar10.yaml", [
        f"output_dir={images / 'runs'}", f"set=[data_root={images / 'images'}, src.split_file={images / 'val.txt'}]",
        "stages.0.epochs=1", "stages.0.batch_size=12", f"stages.0.export={images / 'analog.pt'}",
        "stages.0.set=enc.width=8", "stages.0.set=dec.width=8"])
    Trainer(recipe, progress=False).run()
    fg = load_flowgraph(str(REPO / "flowgraphs" / "deepjscc_analog_awgn.yaml"), [
        f"enc.checkpoint={images / 'analog.pt'}", f"dec.checkpoint={images / 'analog.pt'}", "options.max_items=20"])
    assert fg.output_shapes[("pn", "symbols")] == (512,)  # k/n = 512 / (3 x 32 x 32) = 1/6
    assert run_flowgraph(fg).metrics["psnr_db"] > 5


# --- train through the channel you deploy on ----------------------------------------------------
def test_fast_rayleigh_qam64_recipe_validates_and_trains_a_few_steps(images):
    from sdjscc_phy.training.trainer import StageRun

    recipe = load_recipe(REPO / "recipes" / "sdjscc_rayleigh_fast_qam64.yaml", [
        f"output_dir={images / 'runs'}", f"set=[data_root={images / 'images'}, src.split_file={images / 'val.txt'}]",
        "stages.deepjscc_rayleigh.set=enc.width=8", "stages.deepjscc_rayleigh.set=dec.width=8"], check_flowgraphs=False)
    stage = StageRun(recipe, recipe["stages"][0], torch.device("cpu"))
    assert stage.fg.output_shapes[("map", "symbols")] == (64,)  # 0.375 bpp: 384 bits = 64 64-QAM symbols
    assert stage.fg.blocks["ch"].p.coherence == "fast"
    optimizer = torch.optim.Adam([p for ps in stage.parameter_groups().values() for p in ps], lr=3e-3)
    for step in range(3):
        loss = stage.training_loss(0, step % stage.num_batches())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert math.isfinite(float(loss.detach()))
