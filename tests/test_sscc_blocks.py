"""SSCC baseline blocks (image codec + LDPC): bit-exact at high SNR, graceful at low SNR, shapes checked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sdjscc_phy.blocks.sscc import FALLBACKS, ImageCodecDecoder, ImageCodecEncoder, LdpcDecoderBlock, LdpcEncoder
from sdjscc_phy.codecs import decode, encode_to_budget
from sdjscc_phy.core.block import BatchContext, SetupContext
from sdjscc_phy.core.flowgraph import load_flowgraph
from sdjscc_phy.core.scheduler import run_flowgraph
from sdjscc_phy.data.datasets import read_builtin
from sdjscc_phy.errors import FlowgraphError, PortError

REPO = Path(__file__).resolve().parents[1]
FLOWGRAPHS = REPO / "flowgraphs"
#: shipped SSCC flowgraphs -> channel bpp: per-image 5G NR and packed 802.11n at equal channel uses
#: (0.25 bpp), and the paper's equal-source-bpp accounting (344 channel bits per image)
SHIPPED = {**{str(FLOWGRAPHS / f"sscc_{codec}_{code}_{channel}.yaml"): 0.25 for codec in ("jpeg", "webp", "bpg")
              for code in ("ldpc", "ldpc80211n") for channel in ("awgn", "rayleigh")},
           str(FLOWGRAPHS / "sscc_bpg_ldpc_awgn_equal_bpp.yaml"): 344 / 1024}
JPEG_AWGN = str(FLOWGRAPHS / "sscc_jpeg_ldpc_awgn.yaml")
PACKED_AWGN = str(FLOWGRAPHS / "sscc_jpeg_ldpc80211n_awgn.yaml")
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


def test_every_sscc_flowgraph_is_covered():
    # The detection SSCC flowgraphs (a detector instead of the classifier) run in test_detection.py.
    classification = {str(p) for p in FLOWGRAPHS.glob("sscc_*.yaml") if "_detection_" not in p.name}
    assert set(SHIPPED) == classification


@pytest.mark.parametrize("path", sorted(SHIPPED), ids=lambda p: Path(p).stem)
def test_shipped_flowgraphs_validate_and_run(path):
    fg = load_flowgraph(path, ["options.device=cpu"])
    assert fg.output_shapes[("cenc", "bits")] == (round(SHIPPED[path] * 1024),)  # channel bits per image
    if "80211n" in path:
        return  # packed: needs 243 images a batch; test_packed_clean_channel_... runs one end to end
    metrics = run_flowgraph(load_flowgraph(path, ["options.max_items=20", "options.device=cpu"])).metrics
    for name in ("accuracy", "f1_macro", "psnr_db", "ssim", "bpp", "ldpc_bler", "decode_failure_rate",
                 "source_fit_rate", "source_payload_bpp", "source_file_bpp"):
        assert np.isfinite(metrics[name]), name
    assert metrics["bpp"] == pytest.approx(SHIPPED[path])


# -- several images packed into IEEE 802.11n codewords (packing: batch) ---------------------------------
def packed_pair(**params):
    code = dict(code="ieee80211n", k=1458, n=1944, packing="batch", **params)
    return setup(LdpcEncoder("cenc", **code)), setup(LdpcDecoderBlock("cdec", **code))


def test_packed_clean_channel_is_bit_exact_codec_decoding():
    # 486 payload bits per image: 3 images per codeword, 648 channel bits each; 4 batches of 3.
    metrics, images = run_capturing(PACKED_AWGN, ["snr_db=40", "senc.source_bits=486", "options.batch_size=3",
                                                  "options.max_items=12"])
    want, fits = expected_images("jpeg", 486, 12)
    assert fits.sum() > 0
    assert torch.equal(images, want)
    assert metrics["ldpc_bler"] == 0.0 and metrics["ldpc_item_failure_rate"] == 0.0
    assert metrics["decode_failure_rate"] == pytest.approx(1 - fits.mean())
    assert metrics["bpp"] == pytest.approx(648 / 1024)


def test_a_failed_packed_codeword_rejects_every_image_with_bits_in_it():
    encoder, decoder = packed_pair()
    rng = np.random.default_rng(0)
    sent = torch.from_numpy(rng.integers(0, 2, (243, 192), dtype=np.uint8))
    coded = encoder.process_host({"bits": sent}, ctx(243))["bits"]
    assert coded.shape == (243, 256)  # 32 codewords of 1944 bits, cut into 256 channel bits per image
    llr = (2.0 * coded.float() - 1.0) * 8.0  # ln(P(1)/P(0)): confident, correct
    stream = llr.reshape(32, 1944)
    stream[5] = torch.from_numpy(rng.choice([-1.0, 1.0], 1944).astype(np.float32))  # codeword 5 garbled
    out = decoder.process_host({"llr": stream.reshape(243, 256)}, ctx(243))
    # Image i holds information bits [192 i, 192 (i + 1)) of the stream; codeword 5 holds [5 * 1458, 6 * 1458).
    hit = np.array([192 * i < 6 * 1458 and 192 * (i + 1) > 5 * 1458 for i in range(243)])
    assert hit.sum() == 9  # images 37..45: both end images straddle a neighbouring codeword
    assert np.array_equal(out["ok"].numpy() == 0, hit)
    assert torch.equal(out["bits"][torch.from_numpy(~hit)], sent[torch.from_numpy(~hit)])
    assert decoder.results()["ldpc_bler"] == pytest.approx(1 / 32)
    assert decoder.results()["ldpc_item_failure_rate"] == pytest.approx(9 / 243)


def test_packing_refuses_batches_that_do_not_fill_whole_codewords():
    encoder, decoder = packed_pair()
    with pytest.raises(PortError, match="multiple of 243 items"):
        encoder.process_host({"bits": torch.zeros(100, 192, dtype=torch.uint8)}, ctx(100))
    with pytest.raises(PortError, match="multiple of 243 items"):
        decoder.process_host({"llr": torch.zeros(100, 256)}, ctx(100))
    # In a flowgraph validation refuses it: 250 items end with a batch of 7.
    with pytest.raises(FlowgraphError) as info:
        load_flowgraph(PACKED_AWGN, ["options.max_items=250", "options.device=cpu"])
    assert [e.split(": ", 1)[1][:12] for e in info.value.errors] == ["block 'cenc'", "block 'cdec'"]
    assert all("got a batch of 7 items" in e for e in info.value.errors)


def test_packing_needs_whole_channel_bits_per_item():
    with pytest.raises(FlowgraphError) as info:
        load_flowgraph(PACKED_AWGN, ["senc.source_bits=100"])
    assert any("block 'cenc'" in e and "133.333" in e for e in info.value.errors)
