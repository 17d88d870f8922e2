"""symbol_file_sink records the received symbols as SigMF, and leaves nothing behind on a failed run."""

from __future__ import annotations

import numpy as np
import pytest
from sigmf import sigmffile

from sdjscc_phy.core.flowgraph import load_flowgraph
from sdjscc_phy.core.scheduler import run_flowgraph

FG = """\
options: {{seed: 2, batch_size: 7, max_items: 20}}
blocks:
  - {{id: src, type: bit_source, params: {{num_bits: 32}}}}
  - {{id: map, type: symbol_mapper, params: {{constellation: qpsk}}}}
  - {{id: rec, type: symbol_file_sink, params: {{path: {path}, annotate_items: true}}}}
connections:
  - src.bits -> map.bits
  - map.symbols -> rec.symbols
"""


def test_recording_round_trips(write_flowgraph, tmp_path):
    base = tmp_path / "qpsk"
    run_flowgraph(load_flowgraph(write_flowgraph(FG.format(path=base))))
    recording = sigmffile.fromfile(str(base))
    samples = recording.read_samples()
    assert samples.dtype == np.complex64 and samples.shape == (20 * 16,)
    assert np.allclose(np.abs(samples), 1.0, atol=1e-6)  # QPSK points, Es = 1
    assert recording.get_global_field("core:datatype") == "cf32_le"
    assert len(recording.get_annotations()) == 20


def test_failed_run_leaves_no_files(write_flowgraph, tmp_path, monkeypatch):
    from sdjscc_phy.blocks.mapping import SymbolMapper

    calls = []

    def failing(self, inputs, ctx):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated crash in the second batch")
        return original(self, inputs, ctx)

    original = SymbolMapper.process_host
    monkeypatch.setattr(SymbolMapper, "process_host", failing)
    with pytest.raises(RuntimeError):
        run_flowgraph(load_flowgraph(write_flowgraph(FG.format(path=tmp_path / "qpsk"))))
    assert list(tmp_path.glob("qpsk*")) == [] and list(tmp_path.glob(".*")) == []
