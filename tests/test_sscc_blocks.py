"""SSCC baseline blocks (image codec + LDPC): bit-exact at high SNR, graceful at low SNR, shapes checked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sdjscc_phy.blocks.sscc import FALLBACKS, ImageCodecDecoder, ImageCodecEncoder
from sdjscc_phy.codecs import decode, encode_to_budget
from sdjscc_phy.core.block import BatchContext, SetupContext
from sdjscc_phy.core.flowgraph import load_flowgraph
from sdjscc_phy.core.scheduler import run_flowgraph
from sdjscc_phy.data.datasets import read_builtin
from sdjscc_phy.errors import FlowgraphError

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted(str(p) for p in (REPO / "flowgraphs").glob("sscc_*_ldpc_*.yaml"))
JPEG_AWGN = str(REPO / "flowgraphs" / "sscc_jpeg_ldpc_awgn.yaml")
ITEMS = 40


def ctx(batch_size: int) -> BatchContext:
    return BatchContext(0, 0, batch_size, "host", torch.device("cpu"), 0, "block", 1)


def setup(block):
    block.setup(SetupContext(torch.device("cpu"), "host", 0, {}, {}, frozenset()))
    return block


def expected_images(codec: str, budget: int, count: int) -> tuple[torch.Tensor, np.ndarray]:
    """The codec's own decoding of each payload (the shipped flowgraphs' CIFAR-mean fallback where it does not
    fit), and the fits flags."""
    images = read_builtin().images[:count]
    out = torch.tensor(FALLBACKS["cifar_mean"])[:, None, None].expand(count, 3, 32, 32).clone()
    fits = np.zeros(count, bool)
    for i in range(count):
        result = encode_to_budget(images[i].permute(1, 2, 0).numpy().copy(), codec, budget)
        if result.fits:
            fits[i] = True
            decoded = decode(result.payload, codec, result.quality, 32, 32)
            out[i] = torch.from_numpy(np.array(decoded)).permute(2, 0, 1).float() / 255.0
    return out, fits


def run_capturing(path: str, overrides: list[str]):
    """Run a flowgraph, returning its metrics and the decoded images (captured from the codec decoder)."""
    fg = load_flowgraph(path, ["options.device=cpu", *overrides])
    decoder = fg.blocks["sdec"]
    captured: list[torch.Tensor] = []
    original = decoder.process_host

    def capture(inputs, context):
        out = original(inputs, context)
        captured.append(out["image"].cpu())
        return out

    decoder.process_host = capture
    metrics = run_flowgraph(fg).metrics
    return metrics, torch.cat(captured)


def test_high_snr_is_bit_exact_codec_decoding():
    metrics, images = run_capturing(JPEG_AWGN, ["snr_db=40", f"options.max_items={ITEMS}", "options.batch_size=16"])
    want, fits = expected_images("jpeg", 192, ITEMS)
    assert 0 < fits.sum() < ITEMS  # both kinds of image occur in the sample
    assert torch.equal(images, want)
    assert metrics["ldpc_bler"] == 0.0
    assert metrics["decode_failure_rate"] == pytest.approx(1 - fits.mean())
    assert metrics["decode_nonfit_rate"] == pytest.approx(1 - fits.mean())
    assert metrics["decode_corrupt_rate"] == 0.0
    assert metrics["source_fit_rate"] == pytest.approx(fits.mean())
    assert metrics["bpp"] == pytest.approx(0.25)  # 256 channel bits per 32x32 image


def test_low_snr_runs_with_failed_codewords_and_decodes():
    metrics, images = run_capturing(JPEG_AWGN, ["snr_db=-5", f"options.max_items={ITEMS}", "options.batch_size=16"])
    assert metrics["ldpc_bler"] > 0.95
    assert metrics["decode_failure_rate"] >= 1 - metrics["source_fit_rate"]
    assert images.shape == (ITEMS, 3, 32, 32) and images.min() >= 0 and images.max() <= 1
    assert np.isfinite(metrics["psnr_db"]) and 0 <= metrics["accuracy"] <= 1


def test_rejecting_failed_codewords_gives_the_fallback():
    encoder, decoder = setup(ImageCodecEncoder("e", codec="jpeg", source_bits=256)), setup(ImageCodecDecoder("d", codec="jpeg"))
    images = read_builtin().images[:8].float() / 255.0
    sent = encoder.process_host({"image": images}, ctx(8))
    assert sent["fits"].sum() > 0
    out = decoder.process_host({**sent, "ok": torch.zeros(8, dtype=torch.int64)}, ctx(8))["image"]
    assert torch.all(out == 0.5)
    assert decoder.results()["decode_failure_rate"] == 1.0
    assert decoder.results()["decode_rejected_rate"] == pytest.approx(sent["fits"].float().mean().item())


def test_ldpc_k_mismatch_is_one_line_error():
    with pytest.raises(FlowgraphError) as info:
        load_flowgraph(JPEG_AWGN, ["senc.source_bits=200"])
    (error,) = info.value.errors
    assert "block 'cenc'" in error and "k = 192" in error and "\n" not in error


def test_unsupported_code_is_a_parameter_error():
    with pytest.raises(FlowgraphError) as info:
        load_flowgraph(JPEG_AWGN, ["cenc.code=ieee80211n"])
    assert any("block 'cenc'" in e and "1944" in e for e in info.value.errors)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: Path(p).stem)
def test_shipped_flowgraphs_validate_and_run(path):
    assert len(SHIPPED) == 6
    fg = load_flowgraph(path, ["options.max_items=20", "options.device=cpu"])
    metrics = run_flowgraph(fg).metrics
    for name in ("accuracy", "f1_macro", "psnr_db", "ssim", "bpp", "ldpc_bler", "decode_failure_rate",
                 "source_fit_rate"):
        assert np.isfinite(metrics[name]), name
    assert metrics["bpp"] == pytest.approx(0.25)
