"""jsccflow graph: a drawing of a flowgraph (blocks, ports with resolved shapes, connections), SVG or PNG."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from PIL import Image

from sdjscc_phy.cli.main import main
from sdjscc_phy.core.flowgraph import load_flowgraph
from sdjscc_phy.plots.flowgraph import layout

from conftest import REPO

BER = str(REPO / "flowgraphs" / "qam16_awgn_ber.yaml")
SSCC = str(REPO / "flowgraphs" / "sscc_jpeg_ldpc_awgn.yaml")


def svg_ids_and_texts(path) -> tuple[set[str], list[str]]:
    root = ET.parse(path).getroot()
    ids = {el.get("id") for el in root.iter() if el.get("id")}
    texts = ["".join(el.itertext()) for el in root.iter() if el.tag.endswith("text")]
    return ids, texts


def test_svg_has_every_block_connection_and_resolved_port_shape(tmp_path, capsys):
    out = tmp_path / "fg.svg"
    assert main(["graph", BER, "-o", str(out)]) == 0
    assert "5 blocks, 6 connections" in capsys.readouterr().out
    ids, texts = svg_ids_and_texts(out)
    assert {f"block {b}" for b in ("src", "map", "ch", "demap", "sink")} <= ids
    fg = load_flowgraph(BER)
    assert {f"connection {c}" for c in fg.connections} <= ids
    for label in ("src", "bit_source", "symbols: complex64 [256]", "llr: float32 [1024]", "x: complex64 [256]"):
        assert label in texts
    # Unconnected optional inputs of the metric sink are not drawn.
    assert not any(t.startswith("label_hat:") for t in texts)


def test_overrides_change_the_drawn_shapes(tmp_path):
    out = tmp_path / "fg.svg"
    assert main(["graph", BER, "-o", str(out), "--set", "src.num_bits=512"]) == 0
    _, texts = svg_ids_and_texts(out)
    assert "symbols: complex64 [128]" in texts


def test_png_of_a_larger_flowgraph(tmp_path):
    out = tmp_path / "sscc.png"
    assert main(["graph", SSCC, "-o", str(out)]) == 0
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > image.height > 100


def test_layout_puts_every_connection_left_to_right_without_overlapping_blocks():
    fg = load_flowgraph(SSCC)
    boxes = layout(fg)
    assert all(boxes[c.dst].column > boxes[c.src].column for c in fg.connections)
    by_column: dict[int, list] = {}
    for box in boxes.values():
        by_column.setdefault(box.column, []).append(box)
    for column in by_column.values():
        column.sort(key=lambda b: -b.y)
        assert all(upper.y - upper.height > lower.y for upper, lower in zip(column, column[1:]))


def test_wrong_suffix_or_bad_flowgraph_is_one_error_line_and_writes_nothing(tmp_path, capsys, write_flowgraph):
    out = tmp_path / "fg.pdf"
    assert main(["graph", BER, "-o", str(out)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {out}: a drawing is .svg or .png (chosen by the suffix); got '.pdf'"]
    bad = write_flowgraph("blocks:\n  - {id: src, type: bit_sourc}\n")
    svg = tmp_path / "bad.svg"
    assert main(["graph", bad, "-o", str(svg)]) == 2
    assert "did you mean 'bit_source'" in capsys.readouterr().err
    assert not out.exists() and not svg.exists()


def test_an_existing_drawing_is_replaced_only_with_force(tmp_path, capsys):
    out = tmp_path / "fg.svg"
    out.write_text("keep me")
    assert main(["graph", BER, "-o", str(out)]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err and out.read_text() == "keep me"
    assert main(["graph", BER, "-o", str(out), "--force"]) == 0
    assert out.read_text().startswith("<?xml")
