"""The BER workflow: Eb/N0 on the channels, the metric sink's stopping rule (stop after N errors), BLER."""

from __future__ import annotations

import math

import pytest
import torch

from sdjscc_phy.blocks.channels import AwgnChannel, ebno_to_snr_db
from sdjscc_phy.core.flowgraph import load_flowgraph
from sdjscc_phy.core.scheduler import run_flowgraph
from sdjscc_phy.errors import FlowgraphError, ParameterError
from sdjscc_phy.metrics import make_metric
from test_link_ber import LINK as LINK_TEMPLATE
from test_link_ber import q

# The closed-form BER tests' link, with Eb/N0 instead of Es/N0 and a stopping rule.
LINK = LINK_TEMPLATE.format(items=100000, path="host", bits=200, const="qpsk", channel="awgn_channel", snr_db=10.0,
                            extra=", ebno_db: 4.0")
RULE = ["sink.metrics=[ber, bler]", "sink.max_errors=1000"]


def test_ebno_is_es_n0_less_the_information_bits_per_symbol():
    assert ebno_to_snr_db(4.0, 2) == pytest.approx(4.0 + 10 * math.log10(2))
    assert ebno_to_snr_db(4.0, 4, 0.5) == pytest.approx(4.0 + 10 * math.log10(2))
    assert ebno_to_snr_db(0.0, 6, 3 / 4) == pytest.approx(10 * math.log10(4.5))


def test_stopping_after_max_errors_meets_the_closed_form_qpsk_ber(write_flowgraph):
    fg = load_flowgraph(write_flowgraph(LINK), RULE)
    assert fg.blocks["ch"].snr_db == pytest.approx(4.0 + 10 * math.log10(2))  # k = 2 from the mapper
    result = run_flowgraph(fg)
    assert result.stopped_early and result.items < 100000
    bit_errors = result.metrics["ber"] * result.items * 200
    assert 1000 <= bit_errors < 1000 + 500 * 200  # stopped within the batch that crossed 1000 errors
    theory = q(math.sqrt(2 * 10 ** 0.4))  # Gray QPSK: BER = Q(sqrt(2 Eb/N0)) = 0.0125 at 4 dB
    assert result.metrics["ber"] == pytest.approx(theory, abs=4 * result.metrics["ber_se"])
    # Each 200-bit item fails when any bit does (nearly independent bits at this BER):
    assert result.metrics["bler"] == pytest.approx(1 - (1 - theory) ** 200, abs=4 * result.metrics["bler_se"])


def test_min_items_and_block_errors(write_flowgraph):
    path = write_flowgraph(LINK)
    result = run_flowgraph(load_flowgraph(path, [*RULE, "sink.error_unit=block", "sink.min_items=3000"]))
    assert result.items == 3000 and result.stopped_early  # 1000 block errors come in the first few batches
    result = run_flowgraph(load_flowgraph(path, [*RULE, "sink.max_errors=50", "sink.error_unit=block"]))
    assert result.items == 500  # one batch: 500 items of which ~92 % have an error


def test_a_run_without_enough_errors_runs_to_max_items(write_flowgraph):
    result = run_flowgraph(load_flowgraph(write_flowgraph(LINK), [*RULE, "ch.ebno_db=12", "options.max_items=1000"]))
    assert result.items == 1000 and not result.stopped_early and result.metrics["ber"] < 1e-3


def test_code_rate_comes_from_the_ldpc_encoder(write_flowgraph):
    path = write_flowgraph("""\
        options: {max_items: 10}
        blocks:
          - {id: src, type: bit_source, params: {num_bits: 192}}
          - {id: enc, type: ldpc_encoder, params: {code: nr5g, k: 192, n: 256}}
          - {id: map, type: symbol_mapper, params: {constellation: qam16}}
          - {id: ch, type: awgn_channel, params: {ebno_db: 3.0}}
          - {id: demap, type: symbol_demapper, params: {constellation: qam16}}
          - {id: dec, type: ldpc_decoder, params: {code: nr5g, k: 192, n: 256}}
          - {id: sink, type: metric_sink, params: {metrics: [ber, bler]}}
        connections:
          - src.bits -> enc.bits
          - enc.bits -> map.bits
          - map.symbols -> ch.x
          - ch.y -> demap.y
          - ch.no -> demap.no
          - demap.llr -> dec.llr
          - dec.bits -> sink.bits_hat
          - src.bits -> sink.bits
        """)
    fg = load_flowgraph(path)
    assert fg.blocks["ch"].snr_db == pytest.approx(3.0 + 10 * math.log10(4 * 192 / 256))
    assert "code_rate" not in fg.output_tags[("dec", "bits")]
    assert load_flowgraph(path, ["ch.code_rate=0.5"]).blocks["ch"].snr_db == pytest.approx(3.0 + 10 * math.log10(2))


def test_ebno_without_a_mapper_needs_bits_per_symbol_and_the_rule_needs_bits(write_flowgraph):
    path = write_flowgraph("""\
        options: {max_items: 10}
        blocks:
          - {id: src, type: image_source, params: {dataset: builtin}}
          - {id: sink, type: metric_sink, params: {metrics: [psnr_db], max_errors: 10}}
        connections:
          - src.image -> sink.image
          - src.image -> sink.image_hat
        """)
    with pytest.raises(FlowgraphError) as info:
        load_flowgraph(path)
    (error,) = info.value.errors
    assert error.endswith("block 'sink': parameter 'max_errors' counts errors of 'bits_hat' (or 'llr') against "
                          "'bits': connect input port 'bits'; parameter 'max_errors' counts errors of 'bits_hat' "
                          "(or 'llr') against 'bits': connect input port 'bits_hat'")
    channel = AwgnChannel("ch", ebno_db=1.0)  # symbols from elsewhere than a symbol_mapper
    with pytest.raises(ParameterError, match="parameter 'bits_per_symbol': needed with ebno_db"):
        channel.propagate_tags({"x": {}}, {"x": (64,)})
    assert AwgnChannel("ch", ebno_db=1.0, bits_per_symbol=4).snr_db == pytest.approx(1.0 + 10 * math.log10(4))


def test_bler_is_the_fraction_of_items_with_a_bit_error():
    bler = make_metric("bler")
    bits = torch.zeros(4, 8, dtype=torch.uint8)
    received = bits.clone()
    received[1, 3] = received[3, 0] = received[3, 7] = 1
    bler.update(bits, received)
    assert bler.compute()["bler"] == 0.5
