"""Validation reports every problem at once, one line each, naming file, line, block, port or parameter."""

from __future__ import annotations

import pytest

from sdjscc_phy.core.flowgraph import load_flowgraph
from sdjscc_phy.errors import FlowgraphError

GOOD = """\
options: {id: link, seed: 1, batch_size: 8, max_items: 32}
variables: {gain: 2.0}
blocks:
  - {id: src, type: bit_source, params: {num_bits: 64}}
"""


def errors_of(path: str, overrides=()) -> list[str]:
    with pytest.raises(FlowgraphError) as info:
        load_flowgraph(path, overrides)
    return info.value.errors


def test_yaml_syntax_error_names_file_and_line(write_flowgraph):
    path = write_flowgraph("options: {id: x\nblocks: [\n")
    (error,) = errors_of(path)
    assert error.startswith(f"{path}:") and "YAML syntax error" in error


def test_duplicate_yaml_key_is_reported_with_both_lines(write_flowgraph):
    path = write_flowgraph("options: {seed: 1}\noptions: {seed: 2}\nblocks: []\n")
    (error,) = errors_of(path)
    assert f"{path}:2: duplicate key 'options' (first at line 1)" == error


def test_every_error_is_reported_at_once(write_flowgraph, plugin):
    path = write_flowgraph("""\
        options: {seed: -1, batch_sise: 4}
        blocks:
          - {id: src, type: bit_sorce}
          - {id: src, type: bit_source}
          - {id: g, type: test_gain, params: {gain: -1.0, gian: 2}}
          - {id: c, type: test_counter, colour: red}
        connections:
          - g.y -> c.nope
          - src.bits to g.x
        extra: 1
        """)
    errors = errors_of(path)
    text = "\n".join(errors)
    expected = [
        f"{path}:10: unknown top-level key 'extra'",
        f"{path}:1: options: parameter 'batch_sise': unknown parameter; did you mean 'batch_size'?",
        f"{path}:1: options: parameter 'seed': must be in [0, inf]; got -1",
        f"{path}:3: block 'src': unknown block type 'bit_sorce'; did you mean 'bit_source'?",
        f"{path}:4: block 'src': duplicate id (first defined at line 3)",
        f"{path}:5: block 'g': parameter 'gian': unknown parameter; did you mean 'gain'?",
        f"{path}:5: block 'g': parameter 'gain': must be in [0.0, inf]; got -1.0",
        f"{path}:6: blocks[3]: unknown key 'colour'",
        "block 'c' has no input port 'nope' (inputs: x)",
        "connections[1]: expected 'block.port -> block.port'; got 'src.bits to g.x'",
    ]
    for fragment in expected:
        assert fragment in text, f"missing: {fragment}\n--- got:\n{text}"
    assert all(line.startswith(path) for line in errors)


def test_mistyped_parameter_names_type(write_flowgraph, plugin):
    path = write_flowgraph("""\
        options: {max_items: 4}
        blocks:
          - {id: src, type: bit_source, params: {num_bits: "many"}}
        """)
    (error,) = errors_of(path)
    assert error == f"{path}:3: block 'src': parameter 'num_bits': must be a int; got str 'many'"


def test_unconnected_required_input_and_dtype_mismatch(write_flowgraph, plugin):
    path = write_flowgraph("""\
        options: {max_items: 4}
        blocks:
          - {id: src, type: bit_source}
          - {id: g, type: test_gain}
          - {id: c, type: test_counter}
        connections:
          - src.bits -> c.x
        """)
    text = "\n".join(errors_of(path))
    assert "block 'g': required input port 'x' is not connected" in text
    path = write_flowgraph("""\
        options: {max_items: 4}
        blocks:
          - {id: src, type: bit_source}
          - {id: c, type: test_counter}
        connections:
          - src.bits -> c.x
        """, name="dtype.yaml")
    (error,) = errors_of(path)
    assert "connection 'src.bits -> c.x': dtype bits does not match input dtype complex64" in error


def test_cycle_is_reported(write_flowgraph, plugin):
    path = write_flowgraph("""\
        options: {max_items: 4}
        blocks:
          - {id: a, type: test_gain}
          - {id: b, type: test_gain}
        connections:
          - a.y -> b.x
          - b.y -> a.x
        """)
    errors = errors_of(path)
    assert any("cycle through blocks: a, b" in e for e in errors)


def test_input_fed_twice_and_unknown_block(write_flowgraph, plugin):
    path = write_flowgraph("""\
        options: {max_items: 4}
        blocks:
          - {id: a, type: test_gain}
          - {id: b, type: test_gain}
          - {id: c, type: test_counter}
        connections:
          - a.y -> c.x
          - b.y -> c.x
          - zz.y -> a.x
        """)
    text = "\n".join(errors_of(path))
    assert "input port 'c.x' is already fed by a.y" in text
    assert "no block with id 'zz'" in text


def test_unbounded_sources_need_max_items(write_flowgraph):
    path = write_flowgraph("blocks:\n  - {id: src, type: bit_source}\n")
    (error,) = errors_of(path)
    assert "parameter 'max_items': required when every source is unbounded" in error


def test_overrides_variables_params_and_options(write_flowgraph, plugin):
    path = write_flowgraph(GOOD)
    fg = load_flowgraph(path, ["src.num_bits=128", "options.seed=7", "gain=3"])
    assert fg.blocks["src"].p.num_bits == 128
    assert fg.options.seed == 7 and fg.variables["gain"] == 3
    errors = errors_of(path, ["nope=1", "zz.a=1", "src.num_bits=0"])
    text = "\n".join(errors)
    assert "--set nope: unknown variable" in text and "--set zz.a: no block with id 'zz'" in text
    assert "parameter 'num_bits': must be in [1, inf]; got 0" in text


def test_variable_substitution_and_unknown_variable(write_flowgraph, plugin):
    path = write_flowgraph("""\
        options: {max_items: 4}
        variables: {g: 2.5}
        blocks:
          - {id: a, type: test_gain, params: {gain: $g}}
          - {id: b, type: test_gain, params: {gain: $nope}}
        """)
    errors = errors_of(path)
    assert any(e.endswith("block 'b': unknown variable '$nope'; define it under 'variables'") for e in errors)
    assert not any("block 'a'" in e and "gain" in e for e in errors)


def test_missing_file_is_one_line(tmp_path):
    (error,) = errors_of(str(tmp_path / "absent.yaml"))
    assert error.endswith("cannot read file: No such file or directory")
