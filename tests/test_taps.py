"""Taps: image, constellation and tensor sinks write what the run carried, only when it completes, and
refuse unusable output paths at validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sdjscc_phy.blocks.taps import ImageSink
from sdjscc_phy.core.block import BatchContext, SetupContext
from sdjscc_phy.core.flowgraph import load_flowgraph
from sdjscc_phy.core.scheduler import run_flowgraph
from sdjscc_phy.data.datasets import read_builtin
from sdjscc_phy.errors import FlowgraphError

IMAGES = """\
options: {batch_size: 4, max_items: 12}
blocks:
  - {id: src, type: image_source, params: {dataset: builtin, limit: 12}}
  - {id: tap, type: image_sink, params: {path: PATH, max_items: 6, columns: 3, class_names: [a, b, c, d, e, f, g, h, i, j]}}
connections:
  - src.image -> tap.image
  - src.label -> tap.label
"""

LINK = """\
options: {batch_size: 8, max_items: 20, seed: 1}
variables: {snr_db: 25.0}
blocks:
  - {id: src, type: bit_source, params: {num_bits: 60}}
  - {id: map, type: symbol_mapper, params: {constellation: qam16}}
  - {id: ch, type: awgn_channel, params: {snr_db: $snr_db}}
  - {id: demap, type: symbol_demapper, params: {constellation: qam16}}
  - {id: scatter, type: constellation_sink, params: {path: PATH/scatter.png, max_items: 5}}
  - {id: llr, type: tensor_sink, params: {path: PATH/llr.npz, max_items: 10}}
  - {id: bits, type: tensor_sink, params: {path: PATH/bits.npz, max_items: 10}}
  - {id: sink, type: metric_sink, params: {metrics: [ber]}}
connections:
  - src.bits -> map.bits
  - map.symbols -> ch.x
  - ch.y -> demap.y
  - ch.no -> demap.no
  - ch.y -> scatter.symbols
  - demap.llr -> llr.x
  - src.bits -> bits.x
  - src.bits -> sink.bits
  - demap.llr -> sink.llr
"""


def test_image_sink_writes_one_labelled_grid_of_the_first_items(write_flowgraph, tmp_path):
    out = tmp_path / "grid" / "first.png"
    run_flowgraph(load_flowgraph(write_flowgraph(IMAGES.replace("PATH", str(out)))))
    with Image.open(out) as png:
        assert png.format == "PNG" and png.width > 300 and png.height > 200  # 3 columns x 2 rows


def test_image_sink_files_hold_the_exact_pixels(write_flowgraph, tmp_path):
    path = write_flowgraph(IMAGES.replace("PATH", str(tmp_path / "png")))
    fg = load_flowgraph(path, ["tap.mode=files"])
    run_flowgraph(fg)
    files = sorted((tmp_path / "png").glob("item_*.png"))
    assert [f.name for f in files] == [f"item_{i:05d}.png" for i in range(6)]
    source = fg.blocks["src"].data.images  # uint8 [N, 3, H, W], in the order the run used
    for index, file in enumerate(files):
        assert np.array_equal(np.asarray(Image.open(file)), source[index].permute(1, 2, 0).numpy())
    with pytest.raises(FlowgraphError, match=r"already holds item_\*\.png files \(6\); set overwrite: true"):
        load_flowgraph(path, ["tap.mode=files"])


def test_constellation_and_tensor_sinks_record_the_link(write_flowgraph, tmp_path):
    fg = load_flowgraph(write_flowgraph(LINK.replace("PATH", str(tmp_path))))
    assert fg.blocks["scatter"]._mapped == "qam16"  # reference points found from the mapper upstream
    run_flowgraph(fg)
    with Image.open(tmp_path / "scatter.png") as png:
        assert png.format == "PNG"
    llr, bits = np.load(tmp_path / "llr.npz"), np.load(tmp_path / "bits.npz")
    assert llr["x"].shape == (10, 60) and llr["x"].dtype == np.float32
    assert bits["x"].shape == (10, 60) and bits["x"].dtype == np.uint8
    assert llr["item"].tolist() == list(range(10))
    assert np.array_equal(llr["x"] > 0, bits["x"] == 1)  # 25 dB, 16-QAM: no bit errors in 600 bits


def test_existing_outputs_are_refused_before_the_run(write_flowgraph, tmp_path):
    (tmp_path / "llr.npz").write_bytes(b"keep")
    (tmp_path / "scatter.png").mkdir()
    with pytest.raises(FlowgraphError) as info:
        load_flowgraph(write_flowgraph(LINK.replace("PATH", str(tmp_path))))
    errors = "\n".join(info.value.errors)
    assert f"block 'llr': parameter 'path': path '{tmp_path}/llr.npz' already exists; set overwrite: true" in errors
    assert f"block 'scatter': parameter 'path': path '{tmp_path}/scatter.png' is a folder" in errors
    assert (tmp_path / "llr.npz").read_bytes() == b"keep"


def test_a_failed_run_leaves_no_file(tmp_path):
    sink = ImageSink("tap", path=str(tmp_path / "grid.png"))
    sink.setup(SetupContext(torch.device("cpu"), "host", 0, {}, {}))
    images = read_builtin().images[:4].float() / 255
    sink.process({"image": images}, BatchContext(0, 0, 4, "host", torch.device("cpu"), 0, "tap", 1))
    sink.close(completed=False)
    assert list(tmp_path.iterdir()) == []


