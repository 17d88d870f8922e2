"""BER of bit_source -> mapper -> channel -> demapper -> metric_sink flowgraphs vs closed-form curves,
on the Numba (host) and the torch path."""

from __future__ import annotations

import math

import pytest

from sdjscc_phy.core.flowgraph import load_flowgraph
from sdjscc_phy.core.scheduler import run_flowgraph

LINK = """\
options: {{seed: 11, batch_size: 500, max_items: {items}, device: cpu, path: {path}}}
blocks:
  - {{id: src,   type: bit_source,      params: {{num_bits: {bits}}}}}
  - {{id: map,   type: symbol_mapper,   params: {{constellation: {const}}}}}
  - {{id: ch,    type: {channel},  params: {{snr_db: {snr_db}{extra}}}}}
  - {{id: demap, type: symbol_demapper, params: {{constellation: {const}, method: maxlog}}}}
  - {{id: sink,  type: metric_sink,     params: {{metrics: [ber]}}}}
connections:
  - src.bits -> map.bits
  - map.symbols -> ch.x
  - ch.y -> demap.y
  - ch.no -> demap.no
  - demap.llr -> sink.llr
  - src.bits -> sink.bits
"""


def q(x: float) -> float:
    return 0.5 * math.erfc(x / math.sqrt(2.0))


def ber_theory(const: str, channel: str, snr_db: float) -> float:
    """Closed-form Gray-coded BER at Es/N0 = snr_db (nearest-point decisions)."""
    g = 10 ** (snr_db / 10)
    if channel == "rayleigh":
        assert const == "bpsk"
        return 0.5 * (1 - math.sqrt(g / (1 + g)))
    if const == "bpsk":
        return q(math.sqrt(2 * g))
    if const == "qpsk":
        return q(math.sqrt(g))
    a = math.sqrt(g / 5)  # 16-QAM: half the minimum distance over the noise std per real dimension
    return (3 * q(a) + 2 * q(3 * a) - q(5 * a)) / 4


CASES = [
    ("bpsk", "awgn", 2.0, 400, 1000, ""),
    ("bpsk", "awgn", 6.0, 400, 1000, ""),
    ("qpsk", "awgn", 5.0, 200, 1000, ""),
    ("qam16", "awgn", 8.0, 200, 1000, ""),
    ("qam16", "awgn", 14.0, 400, 1000, ""),
    ("bpsk", "rayleigh", 5.0, 200, 1000, ", coherence: fast"),
    ("bpsk", "rayleigh", 10.0, 4000, 16, ", coherence: block"),
]


@pytest.mark.parametrize("path", ["host", "torch"])
@pytest.mark.parametrize("const,channel,snr_db,items,bits,extra", CASES)
def test_ber_matches_closed_form(write_flowgraph, path, const, channel, snr_db, items, bits, extra):
    text = LINK.format(items=items, path=path, bits=bits, const=const, snr_db=snr_db, extra=extra,
                       channel=f"{channel}_channel")
    metrics = run_flowgraph(load_flowgraph(write_flowgraph(text))).metrics
    expected = ber_theory(const, channel, snr_db)
    # ber_se is the standard error over items, so block fading's correlated bits are accounted for.
    assert abs(metrics["ber"] - expected) < 5 * metrics["ber_se"] + 1e-4, (metrics, expected)
