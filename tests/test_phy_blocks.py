"""PHY blocks: host and torch paths agree, gradients flow through the torch path, shapes are checked."""

from __future__ import annotations

import pytest
import torch

from sdjscc_phy.blocks.binarizer import Binarizer
from sdjscc_phy.blocks.channels import AwgnChannel, RayleighChannel
from sdjscc_phy.blocks.mapping import SymbolDemapper, SymbolMapper
from sdjscc_phy.core.block import BatchContext, SetupContext
from sdjscc_phy.core.flowgraph import load_flowgraph
from sdjscc_phy.core.scheduler import run_flowgraph
from sdjscc_phy.errors import FlowgraphError
from test_link_ber import LINK


def ctx(path: str, batch_size: int, seed: int = 5) -> BatchContext:
    return BatchContext(0, 0, batch_size, path, torch.device("cpu"), seed, "block", seed + 1)


def ready(block, connected=("llr", "p1")):
    block.setup(SetupContext(torch.device("cpu"), "host", 0, {}, {}, frozenset(connected)))
    return block


@pytest.mark.parametrize("constellation", ["bpsk", "qpsk", "qam16", "qam64"])
def test_mapper_and_demapper_paths_agree(constellation):
    mapper, demapper = ready(SymbolMapper("m", constellation=constellation)), ready(SymbolDemapper("d", constellation=constellation))
    bits = torch.randint(0, 2, (8, 96), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    host = mapper.process_host({"bits": bits}, ctx("host", 8))["symbols"]
    soft = mapper.process_torch({"bits": bits.float()}, ctx("torch", 8))["symbols"]
    assert torch.equal(host, soft)
    assert host.abs().square().mean().item() == pytest.approx(1.0, abs=0.3)  # Es = 1 (random bits)
    noisy = host + 0.3 * torch.randn(host.shape, dtype=torch.complex64, generator=torch.Generator().manual_seed(2))
    no = torch.full(host.shape, 0.09)
    for method in ("app", "maxlog"):
        demapper.p.method = method
        a = demapper.process_host({"y": noisy, "no": no}, ctx("host", 8))
        b = demapper.process_torch({"y": noisy, "no": no}, ctx("torch", 8))
        torch.testing.assert_close(a["llr"], b["llr"], rtol=1e-4, atol=1e-3)
        torch.testing.assert_close(a["p1"], b["p1"], rtol=1e-4, atol=1e-5)
    # Noiseless symbols decode to the sent bits; LLR > 0 means bit 1 (Sionna's sign).
    clean = demapper.process_host({"y": host, "no": torch.full(host.shape, 1e-3)}, ctx("host", 8))["llr"]
    assert torch.equal((clean > 0).to(torch.uint8), bits)


def test_binarizer_paths_agree_and_pass_gradients_straight_through():
    block = Binarizer("q")
    e = torch.tensor([[0.1, 0.5, 0.51, 0.9]], requires_grad=True)
    host = block.process_host({"e": e.detach()}, ctx("host", 1))["bits"]
    soft = block.process_torch({"e": e}, ctx("torch", 1))["bits"]
    assert host.dtype == torch.uint8 and host.tolist() == [[0, 0, 1, 1]]
    assert torch.equal(soft.detach(), host.float())
    (soft * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert e.grad.tolist() == [[1.0, 2.0, 3.0, 4.0]]


@pytest.mark.parametrize("channel", [AwgnChannel("ch", snr_db=3.0),
                                     RayleighChannel("ch", snr_db=3.0, coherence="fast"),
                                     RayleighChannel("ch", snr_db=3.0, coherence="block")])
def test_gradient_reaches_a_parameter_before_the_binarizer(channel):
    """encoder logit -> binarizer (STE) -> mapper -> channel -> demapper -> loss on P(b=1)."""
    logits = torch.nn.Parameter(torch.randn(4, 64, generator=torch.Generator().manual_seed(0)))
    chain = [Binarizer("q"), ready(SymbolMapper("m", constellation="qam16")), channel,
             ready(SymbolDemapper("d", constellation="qam16"))]
    signal = {"e": torch.sigmoid(logits)}
    renames = [{"bits": "bits"}, {"symbols": "x"}, {"y": "y", "no": "no"}, {}]
    for block, rename in zip(chain, renames):
        out = block.process_torch(signal, ctx("torch", 4))
        signal = {rename.get(k, k): v for k, v in out.items()} if rename else out
    loss = (signal["p1"] - 1.0).square().mean()
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    assert torch.isfinite(logits.grad).all()


def test_channel_paths_agree_in_distribution():
    x = torch.ones(200, 500, dtype=torch.complex64)
    awgn = AwgnChannel("ch", snr_db=0.0)
    for path in ("host", "torch"):
        out = awgn.process({"x": x}, ctx(path, 200))
        noise = out["y"] - x
        assert noise.abs().square().mean().item() == pytest.approx(1.0, rel=0.02)  # N0 = 1 at 0 dB
        assert noise.real.var().item() == pytest.approx(0.5, rel=0.02)  # N0/2 per real dimension
        assert torch.all(out["no"] == 1.0)
    rayleigh = RayleighChannel("ch", snr_db=40.0, coherence="block", csi=True)
    for path in ("host", "torch"):
        out = rayleigh.process({"x": x}, ctx(path, 200))
        h = out["h"]
        assert torch.all(h == h[:, :1])  # one h per item
        assert h[:, 0].abs().square().mean().item() == pytest.approx(1.0, rel=0.25)  # E|h|^2 = 1
        torch.testing.assert_close(out["no"], (1e-4 / h.abs().square()).float(), rtol=1e-4, atol=0)
        assert (out["y"] - x).abs().median().item() < 0.05  # equalised


def test_host_channel_noise_does_not_depend_on_batch_size():
    awgn = AwgnChannel("ch", snr_db=5.0)
    x = torch.zeros(6, 10, dtype=torch.complex64)
    cpu = torch.device("cpu")
    whole = awgn.process_host({"x": x}, BatchContext(0, 0, 6, "host", cpu, 1, "ch", 99))["y"]
    first = awgn.process_host({"x": x[:4]}, BatchContext(0, 0, 4, "host", cpu, 1, "ch", 99))["y"]
    rest = awgn.process_host({"x": x[4:]}, BatchContext(1, 4, 2, "host", cpu, 1, "ch", 99))["y"]
    assert torch.equal(whole, torch.cat([first, rest]))


# 250 bits over 64-QAM: 41 full symbols and one with 4 bits and 2 of padding.
PADDED = LINK.format(items=40, path="host", bits=250, const="qam64", channel="awgn_channel", snr_db=30.0, extra="")


def test_mapper_pads_the_last_symbol_and_the_demapper_drops_the_padding(write_flowgraph):
    fg = load_flowgraph(write_flowgraph(PADDED))
    assert fg.output_shapes[("map", "symbols")] == (42,)  # ceil(250 / 6): 2 padding bits in the last symbol
    assert fg.output_shapes[("demap", "llr")] == (250,)
    for path in ("host", "torch"):
        result = run_flowgraph(load_flowgraph(write_flowgraph(PADDED), [f"options.path={path}"]))
        assert result.metrics["ber"] == 0.0  # 30 dB: every payload bit back, none of the padding kept


@pytest.mark.parametrize("num_bits", [1, 5, 97])
def test_padded_mapping_paths_agree(num_bits):
    mapper = ready(SymbolMapper("m", constellation="qam64"))
    demapper = ready(SymbolDemapper("d", constellation="qam64"))
    demapper._payload_bits = num_bits  # what validation reads from the mapper's tag
    bits = torch.randint(0, 2, (4, num_bits), generator=torch.Generator().manual_seed(num_bits), dtype=torch.uint8)
    host = mapper.process_host({"bits": bits}, ctx("host", 4))
    soft = mapper.process_torch({"bits": bits.float()}, ctx("torch", 4))
    assert host["symbols"].shape == (4, -(-num_bits // 6)) and torch.equal(host["symbols"], soft["symbols"])
    assert host["num_bits"].tolist() == [6 * host["symbols"].shape[1]] * 4
    no = torch.full(host["symbols"].shape, 1e-3)
    llr_host = demapper.process_host({"y": host["symbols"], "no": no}, ctx("host", 4))["llr"]
    llr_torch = demapper.process_torch({"y": host["symbols"], "no": no}, ctx("torch", 4))["llr"]
    torch.testing.assert_close(llr_host, llr_torch, rtol=1e-4, atol=1e-3)
    assert torch.equal((llr_host > 0).to(torch.uint8), bits)  # LLR > 0 means bit 1, as without padding


def test_demapping_with_another_constellation_than_the_mapper_is_a_validation_error(write_flowgraph):
    with pytest.raises(FlowgraphError) as info:
        load_flowgraph(write_flowgraph(PADDED), ["demap.constellation=qam16"])
    (error,) = info.value.errors
    assert "block 'demap': parameter 'constellation': the symbols on port 'y' were mapped to qam64" in error
