"""The Python API: sdjscc_phy.run / load_flowgraph on a path, YAML text or a mapping; optional extras."""

from __future__ import annotations

import copy
import sys

import pytest

import sdjscc_phy
from sdjscc_phy.cli.main import main
from sdjscc_phy.errors import FlowgraphError, MissingExtraError

from conftest import REPO

BER_FLOWGRAPH = REPO / "flowgraphs" / "qam16_awgn_ber.yaml"

QPSK = {
    "options": {"id": "qpsk", "batch_size": 128, "max_items": 512},
    "variables": {"snr_db": 6.0},
    "blocks": [
        {"id": "src", "type": "bit_source", "params": {"num_bits": 256}},
        {"id": "map", "type": "symbol_mapper", "params": {"constellation": "qpsk"}},
        {"id": "ch", "type": "awgn_channel", "params": {"snr_db": "$snr_db"}},
        {"id": "demap", "type": "symbol_demapper", "params": {"constellation": "qpsk"}},
        {"id": "sink", "type": "metric_sink", "params": {"metrics": ["ber"]}},
    ],
    "connections": ["src.bits -> map.bits", "map.symbols -> ch.x", "ch.y -> demap.y", "ch.no -> demap.no",
                    "demap.llr -> sink.llr", "src.bits -> sink.bits"],
}


def test_path_yaml_text_and_mapping_give_the_same_run():
    text = BER_FLOWGRAPH.read_text()
    runs = [sdjscc_phy.run(source, {"snr_db": 8.0}, max_items=512)
            for source in (str(BER_FLOWGRAPH), BER_FLOWGRAPH, text)]
    assert runs[0].metrics == runs[1].metrics == runs[2].metrics
    assert runs[0].items == 512 and runs[0].variables == {"snr_db": 8.0} and runs[0].seconds > 0


def test_mapping_overrides_equal_command_line_overrides_and_leave_the_mapping_alone():
    original = copy.deepcopy(QPSK)
    from_mapping = sdjscc_phy.run(QPSK, {"snr_db": 4, "src.num_bits": 512}, seed=3)
    from_strings = sdjscc_phy.run(QPSK, ["snr_db=4", "src.num_bits=512", "options.seed=3"])
    assert from_mapping.metrics == from_strings.metrics
    assert QPSK == original


def test_result_frame_has_one_row_of_variables_and_metrics():
    frame = sdjscc_phy.run(QPSK).to_frame()
    assert list(frame.columns) == ["snr_db", "ber", "ber_se", "items", "seconds"]
    assert frame.loc[0, "snr_db"] == 6.0 and frame.loc[0, "items"] == 512


def test_to_frame_without_pandas_names_the_extra(monkeypatch):
    result = sdjscc_phy.run(QPSK)
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if pandas were not installed
    with pytest.raises(MissingExtraError, match=r"jsccflow\[frames\]"):
        result.to_frame()


@pytest.mark.parametrize(("source", "where"), [
    ({**QPSK, "blocks": [{"id": "src", "type": "bit_sourc"}, *QPSK["blocks"][1:]]}, "<dict>: "),
    ("options: {seed: 0}\nblocks:\n  - {id: src, type: bit_sourc}\n", "<string>:3: "),
])
def test_errors_name_string_or_dict_sources(source, where):
    with pytest.raises(FlowgraphError) as err:
        sdjscc_phy.load_flowgraph(source)
    assert any(line.startswith(where) and "did you mean 'bit_source'" in line for line in err.value.errors)


def test_errors_of_files_keep_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(BER_FLOWGRAPH.read_text().replace("type: bit_source", "type: bit_sourc"))
    with pytest.raises(FlowgraphError) as err:
        sdjscc_phy.load_flowgraph(path)
    assert err.value.errors[0].startswith(f"{path}:7: block 'src'")


def test_unknown_option_keyword_is_reported():
    with pytest.raises(FlowgraphError, match="parameter 'max_itemz': unknown parameter; did you mean 'max_items'"):
        sdjscc_phy.run(QPSK, max_itemz=3)


def test_a_codec_whose_extra_is_missing_fails_validation(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pillow_heif", None)
    assert main(["validate", str(REPO / "flowgraphs" / "sscc_bpg_ldpc_awgn.yaml")]) == 2
    err = capsys.readouterr().err
    assert "parameter 'codec': this needs the optional package 'pillow_heif': pip install 'jsccflow[heif]'" in err
