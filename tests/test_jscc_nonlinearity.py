"""The codec's ``nonlinearity`` option: GDN / inverse GDN against a hand computation, shapes, old checkpoints, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sdjscc_phy.cli.main import main
from sdjscc_phy.errors import ParameterError
from sdjscc_phy.models.gdn import GDN
from sdjscc_phy.models.jscc import JsccCodec, JsccConfig, export_codec, load_codec

REPO = Path(__file__).resolve().parents[1]


def _gdn(inverse: bool) -> GDN:
    """Two channels with beta = (1, 2) and gamma = [[0.1, 0.2], [0.3, 0.4]] (stored as square roots)."""
    gdn = GDN(2, inverse=inverse)
    with torch.no_grad():
        gdn.beta.copy_(torch.tensor([1.0, 2.0]).sqrt())
        gdn.gamma.copy_(torch.tensor([[0.1, 0.2], [0.3, 0.4]]).sqrt())
    return gdn


@pytest.mark.parametrize("inverse", [False, True])
def test_gdn_divides_each_channel_by_its_weighted_energy(inverse):
    x = torch.tensor([1.0, -2.0, 0.5, 3.0]).reshape(1, 2, 1, 2)  # channel 0: (1, -2), channel 1: (0.5, 3)
    x0, x1 = x[0, 0, 0], x[0, 1, 0]
    norm0 = (1.0 + 0.1 * x0**2 + 0.2 * x1**2).sqrt()  # beta_0 + sum_j gamma_0j x_j^2
    norm1 = (2.0 + 0.3 * x0**2 + 0.4 * x1**2).sqrt()
    expected = torch.stack([x0 * norm0, x1 * norm1]) if inverse else torch.stack([x0 / norm0, x1 / norm1])
    torch.testing.assert_close(_gdn(inverse)(x)[0, :, 0], expected, rtol=1e-5, atol=1e-6)


def test_gdn_parameters_below_their_bound_still_move_up():
    """The reparametrisation keeps beta and gamma non-negative without freezing a parameter at its bound."""
    gdn = GDN(2)
    with torch.no_grad():
        gdn.gamma.fill_(-1.0)
    gdn(torch.ones(1, 2, 1, 1)).sum().backward()  # a larger gamma lowers this loss: descent raises gamma
    assert (gdn.gamma.grad < 0).all()
    gdn.zero_grad()
    (-gdn(torch.ones(1, 2, 1, 1))).sum().backward()  # here descent would lower gamma further: no gradient
    assert (gdn.gamma.grad == 0).all()


@pytest.mark.parametrize("nonlinearity", ["prelu", "gdn"])
def test_every_nonlinearity_keeps_the_code_and_image_shapes(nonlinearity):
    codec = JsccCodec(JsccConfig(code_channels=4, width=16, nonlinearity=nonlinearity))
    e = codec.encoder(torch.rand(3, 3, 32, 24))
    assert e.shape == (3, 4 * 8 * 6) and ((e >= 0) & (e <= 1)).all()
    assert codec.decoder(e, 32, 24).shape == (3, 3, 32, 24)
    gdns = [m for m in codec.modules() if isinstance(m, GDN)]
    # GDN after the encoder's two strided convolutions, inverse GDN after the decoder's input and two upsamplings
    assert [g.inverse for g in gdns] == ([False, False, True, True, True] if nonlinearity == "gdn" else [])


def test_a_gdn_codec_round_trips_through_its_export(tmp_path):
    torch.manual_seed(0)
    codec = JsccCodec(JsccConfig(code_channels=4, width=16, nonlinearity="gdn")).eval()
    export_codec(codec, tmp_path / "gdn.pt", {})
    loaded = load_codec(str(tmp_path / "gdn.pt"))
    assert loaded.config.nonlinearity == "gdn"
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():  # fp16 export: the weights are rounded
        torch.testing.assert_close(loaded.encoder(images), codec.encoder(images), atol=2e-3, rtol=0)


def test_a_checkpoint_without_the_key_loads_as_prelu_unchanged(tmp_path):
    """Checkpoints written before the option existed (every shipped codec) have no ``nonlinearity`` key."""
    shipped = torch.load(REPO / "sdjscc_phy" / "checkpoints" / "deepjscc_awgn.pt", weights_only=False)
    assert "nonlinearity" not in shipped["config"]
    torch.manual_seed(0)
    codec = JsccCodec(JsccConfig(code_channels=4, width=16)).eval()
    export_codec(codec, tmp_path / "new.pt", {})
    payload = torch.load(tmp_path / "new.pt", weights_only=False)
    del payload["config"]["nonlinearity"]
    torch.save(payload, tmp_path / "old.pt")
    old, new = load_codec(str(tmp_path / "old.pt")), load_codec(str(tmp_path / "new.pt"))
    assert old.config.nonlinearity == "prelu"
    assert all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), new.state_dict().values()))
    assert load_codec("deepjscc_awgn").config.nonlinearity == "prelu"


def test_an_unknown_nonlinearity_is_refused():
    with pytest.raises(ParameterError, match=r"model.nonlinearity must be one of \(prelu, gdn\); got 'relu'"):
        JsccConfig(nonlinearity="relu")


@pytest.mark.parametrize("override, message", [
    ("enc.nonlinearity=relu", "block 'enc': parameter 'nonlinearity': must be one of ('prelu', 'gdn'); got 'relu'"),
    ("dec.nonlinearity=gdn", "block 'dec': parameter 'nonlinearity' differs from checkpoint 'deepjscc_awgn'"),
])
def test_a_bad_nonlinearity_in_a_flowgraph_is_one_error_line(capsys, override, message):
    path = str(REPO / "flowgraphs" / "deepjscc_awgn.yaml")
    assert main(["validate", path, f"--set={override}"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {path}:") and message in line
