"""The jsccflow command: exit codes, one-line errors, JSON output, plugin discovery."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from sdjscc_phy.cli.main import main

FANOUT = """\
options: {id: fanout, batch_size: 50, max_items: 100}
blocks:
  - {id: src, type: image_source, params: {dataset: builtin}}
  - {id: sink, type: metric_sink, params: {metrics: [psnr_db, mse]}}
connections:
  - src.image -> sink.image
  - src.image -> sink.image_hat
"""


def test_run_prints_table_and_writes_json(write_flowgraph, tmp_path, capsys):
    path = write_flowgraph(FANOUT)
    out = tmp_path / "res" / "results.json"
    assert main(["run", path, "--output", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "psnr_db" in printed and "100 items" in printed
    payload = json.loads(out.read_text())
    assert payload["flowgraph"] == path
    assert payload["options"]["id"] == "fanout" and payload["options"]["batch_size"] == 50
    assert payload["metrics"] == {"psnr_db": 100.0, "psnr_db_se": 0.0, "mse": 0.0, "mse_se": 0.0}


@pytest.mark.parametrize(("extra", "warned"), [
    ((), True), (("--set", "src.shuffle=true"), False), (("--set", "src.limit=100"), False),
    (("--set", "options.max_items=1000"), False)])
def test_run_warns_when_it_reads_a_class_sorted_prefix(write_flowgraph, capsys, extra, warned):
    assert main(["run", write_flowgraph(FANOUT), "--no-progress", *extra]) == 0
    err = capsys.readouterr().err
    assert ("warning: block 'src': the run reads the first 100 of 1000 images, which are sorted by class" in err) \
        == warned


def test_bad_flowgraph_exits_2_with_one_line_per_error_and_writes_nothing(write_flowgraph, tmp_path, capsys):
    path = write_flowgraph(FANOUT.replace("psnr_db, mse", "psnr_dbb").replace("builtin", "bultin"))
    out = tmp_path / "results.json"
    assert main(["run", path, "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith(f"error: {path}:") for line in err)
    assert "parameter 'dataset': must be one of ('builtin', 'folder', 'cifar10'); got 'bultin'" in err[0]
    assert "psnr_dbb" in err[1]
    assert "Traceback" not in "\n".join(err) and not out.exists()


def test_metric_needing_unconnected_port_is_a_validation_error(write_flowgraph, capsys):
    path = write_flowgraph(FANOUT.replace("psnr_db, mse", "psnr_db, accuracy"))
    assert main(["validate", path]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.endswith("block 'sink': metric 'accuracy': connect input port 'logits' or 'label_hat'; "
                         "metric 'accuracy': connect input port 'label'")


def test_validate_reports_resolved_shapes(write_flowgraph, capsys):
    assert main(["validate", write_flowgraph(FANOUT)]) == 0
    out = capsys.readouterr().out
    assert "OK (2 blocks, 2 connections)" in out and "src.image: float32 [3,32,32]" in out


def test_bad_set_syntax_and_missing_dataset_root(write_flowgraph, tmp_path, capsys):
    path = write_flowgraph(FANOUT)
    assert main(["run", path, "--set", "novalue"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {path}: --set 'novalue': expected KEY=VALUE"
    missing = tmp_path / "nowhere"
    assert main(["validate", path, "--set", "src.dataset=folder", "--set", f"src.root={missing}"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {path}:") and str(missing) in line


def test_blocks_json_lists_builtin_blocks_with_ports_and_params(capsys):
    assert main(["blocks", "--json"]) == 0
    described = {b["type"]: b for b in json.loads(capsys.readouterr().out)}
    assert {"image_source", "bit_source", "binarizer", "metric_sink", "symbol_file_sink"} <= set(described)
    binarizer = described["binarizer"]
    assert binarizer["paths"] == ["host", "torch"] and binarizer["on_gpu"] == "device"
    assert described["ldpc_decoder"]["on_gpu"] == "host" and described["image_codec_encoder"]["on_gpu"] == "host"
    assert binarizer["inputs"][0] == {"name": "e", "dtype": "float32", "shape": "[N]", "optional": False,
                                      "doc": "encoder output, values in [0, 1]"}
    assert binarizer["params"][0]["default"] == 0.5


def test_plugin_package_is_discovered_by_the_installed_command(plugin, write_flowgraph):
    """A third-party distribution with a jsccflow.blocks entry point works in a real `jsccflow` process."""
    path = write_flowgraph("""\
        options: {batch_size: 10, max_items: 30}
        blocks:
          - {id: src, type: bit_source, params: {num_bits: 8}}
          - {id: sink, type: metric_sink, params: {metrics: [ber]}}
          - {id: g, type: test_gain, params: {gain: 3.0}}
        connections:
          - src.bits -> sink.bits
          - src.bits -> sink.bits_hat
        """)
    env = {**os.environ, "PYTHONPATH": str(plugin)}
    cli = [sys.executable, "-m", "sdjscc_phy.cli.main"]
    listed = subprocess.run([*cli, "blocks"], env=env, capture_output=True, text=True, check=True).stdout
    assert "test_gain (host; on a GPU: host): Multiplies complex symbols by a real gain." in listed
    checked = subprocess.run([*cli, "validate", path], env=env, capture_output=True, text=True)
    assert checked.returncode == 2
    assert "block 'g': required input port 'x' is not connected" in checked.stderr
    runnable = write_flowgraph("""\
        options: {batch_size: 10, max_items: 30}
        blocks:
          - {id: src, type: bit_source, params: {num_bits: 8}}
          - {id: map, type: symbol_mapper, params: {constellation: qpsk}}
          - {id: g, type: test_gain, params: {gain: 3.0}}
          - {id: count, type: test_counter}
        connections:
          - src.bits -> map.bits
          - map.symbols -> g.x
          - g.y -> count.x
        """, name="plugin_run.yaml")
    out = plugin / "out.json"
    ran = subprocess.run([*cli, "run", runnable, "--output", str(out)], env=env, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    metrics = json.loads(out.read_text())["metrics"]
    assert metrics["items"] == 30.0
    assert abs(metrics["energy"] - 9.0 * 30 * 4) < 1e-3  # |3 x|^2 = 9 per unit-energy QPSK symbol, 4 per item


def test_label_hat_without_num_classes_is_a_validation_error_naming_the_fix(write_flowgraph, capsys):
    path = write_flowgraph("""\
options: {max_items: 10}
blocks:
  - {id: src, type: image_source, params: {dataset: builtin}}
  - {id: sink, type: metric_sink, params: {metrics: [accuracy]}}
connections:
  - src.label -> sink.label
  - src.label -> sink.label_hat
""")
    assert main(["validate", path]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.endswith("block 'sink': metric 'accuracy': input port 'label_hat' needs the number of classes: "
                         "connect input port 'logits' instead, or write the metric as "
                         "{accuracy: {num_classes: C}} in 'metrics'")
    assert main(["validate", path, "--set", "sink.metrics=[{accuracy: {num_classes: 10}}]"]) == 0


def test_run_shows_accuracy_in_percent_and_keeps_fractions_in_the_json(write_flowgraph, tmp_path, capsys):
    path = write_flowgraph("""\
options: {max_items: 20}
blocks:
  - {id: src, type: image_source, params: {dataset: builtin, limit: 20}}
  - {id: sink, type: metric_sink, params: {metrics: [{accuracy: {num_classes: 10}}]}}
connections:
  - src.label -> sink.label
  - src.label -> sink.label_hat
""")
    out = tmp_path / "r.json"
    assert main(["run", path, "--output", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"│ accuracy \(%\) +│ +100 │", printed)
    assert json.loads(out.read_text())["metrics"]["accuracy"] == 1.0
