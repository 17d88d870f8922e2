"""Flowgraph files: loading, ``--set`` overrides, and whole-graph validation.

A flowgraph (GRC-inspired) names block instances and the connections between their ports::

    format_version: 1            # optional
    options: {id: demo, seed: 0, batch_size: 64, max_items: 1000, device: auto, path: auto}
    variables: {snr_db: 5.0}
    blocks:
      - {id: src, type: bit_source, params: {num_bits: 1024}}
      - {id: ch,  type: awgn_channel, params: {snr_db: $snr_db}}
    connections:
      - src.bits -> map.bits

Validation reports *every* problem at once, one line each, prefixed with ``file:line:``. A flowgraph
may also be given as YAML text (errors say ``<string>:line:``) or as a Python mapping (``<dict>:``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Union

from sdjscc_phy.core.block import Block
from sdjscc_phy.core.devices import device_problem
from sdjscc_phy.core.params import Param, problem_parameter, resolve_params
from sdjscc_phy.core.ports import ANY_DTYPE, Shape
from sdjscc_phy.core.registry import get_block_class
from sdjscc_phy.core.yaml_lines import (
    ErrorLines, LineDict, LineList, brief, load_yaml_text, load_yaml_with_lines, parse_assignment, source_line,
)
from sdjscc_phy.errors import FlowgraphError, JsccflowError, ParameterError

FORMAT_VERSION = 1
TOP_LEVEL_KEYS = ("format_version", "options", "variables", "blocks", "connections")
BLOCK_KEYS = ("id", "type", "params")

OPTIONS: tuple[Param, ...] = (
    Param("id", "str", "", doc="flowgraph name"),
    Param("description", "str", "", doc="free text"),
    Param("seed", "int", 0, low=0, doc="determines every random stream (data order, noise, fading, bits)"),
    Param("batch_size", "int", 64, low=1, unit="items", doc="items per batch"),
    Param("max_items", "int", None, low=1, nullable=True, unit="items", doc="stop after this many items"),
    Param("device", "str", "auto", doc="auto | cpu | cuda | cuda:N (auto = GPU when present)"),
    Param("path", "str", "auto", choices=("auto", "host", "torch"),
          doc="block paths: host (fast numpy/Numba kernels), torch (differentiable; batches stay on the device), "
              "auto = torch on a GPU, host on the CPU"),
)

_ID_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CONN_RE = re.compile(r"^\s*(\w+)\.(\w+)\s*->\s*(\w+)\.(\w+)\s*$")


@dataclass(frozen=True)
class Connection:
    """``src.src_port -> dst.dst_port``."""

    src: str
    src_port: str
    dst: str
    dst_port: str

    def __str__(self) -> str:
        return f"{self.src}.{self.src_port} -> {self.dst}.{self.dst_port}"


@dataclass
class Flowgraph:
    """A validated flowgraph: blocks in topological order with resolved port shapes."""

    path: str
    options: SimpleNamespace
    variables: dict[str, Any]
    blocks: dict[str, Block]
    connections: list[Connection]
    output_shapes: dict[tuple[str, str], Shape] = field(default_factory=dict)
    input_shapes: dict[str, dict[str, Shape]] = field(default_factory=dict)
    output_tags: dict[tuple[str, str], dict] = field(default_factory=dict)
    block_lines: dict[str, int] = field(default_factory=dict)  # line of each block in the file

    def upstream(self, block_id: str) -> dict[str, tuple[str, str]]:
        """``{input port: (source block, source port)}`` for one block."""
        return {c.dst_port: (c.src, c.src_port) for c in self.connections if c.dst == block_id}

    @property
    def sources(self) -> list[Block]:
        return [b for b in self.blocks.values() if not type(b).inputs]


def count_items(fg: Flowgraph) -> int:
    """Items the run will process: the smallest source, capped by ``options.max_items``."""
    counts = [n for n in (s.num_items() for s in fg.sources) if n is not None]
    if fg.options.max_items is not None:
        counts.append(fg.options.max_items)
    return min(counts)


def caveats(fg: Flowgraph) -> list[str]:
    """The sources' caveats about the run's items (:meth:`Block.caveats`), one line each."""
    items = count_items(fg)
    return [line for source in fg.sources for line in source.caveats(items)]


def batch_sizes(total: int, batch_size: int) -> tuple[int, ...]:
    """The distinct sizes of the batches that cut ``total`` items into ``batch_size`` (the last may be short)."""
    return tuple(sorted({min(batch_size, total), total % batch_size} - {0}))


#: A flowgraph as ``load_flowgraph`` takes it: a file path, YAML text, or an already parsed mapping.
FlowgraphSource = Union[str, "os.PathLike[str]", Mapping[str, Any]]
#: Overrides: ``KEY=VALUE`` strings as on the command line (VALUE parsed as YAML), or a mapping
#: ``{KEY: value}``; KEY is ``VAR``, ``ID.PARAM`` or ``options.KEY``.
Overrides = Union[Iterable[str], Mapping[str, Any], None]


def read_flowgraph_source(flowgraph: FlowgraphSource) -> tuple[str, Any]:
    """(name errors use, parsed data) of a path, YAML text or mapping.

    A string is YAML text when it spans several lines or is a one-line ``{...}`` mapping, else a path.
    A mapping is deep-copied, so overriding never changes the caller's object.
    """
    if isinstance(flowgraph, Mapping):
        return "<dict>", copy.deepcopy(dict(flowgraph))
    if isinstance(flowgraph, os.PathLike):
        path = os.fspath(flowgraph)
        return path, load_yaml_with_lines(path)
    if isinstance(flowgraph, str):
        if "\n" in flowgraph.strip() or flowgraph.lstrip().startswith("{"):
            return "<string>", load_yaml_text(flowgraph)
        return flowgraph, load_yaml_with_lines(flowgraph)
    raise FlowgraphError([f"a flowgraph must be a file path, YAML text or a mapping; got {type(flowgraph).__name__}"])


def load_flowgraph(flowgraph: FlowgraphSource, overrides: Overrides = None, **option_values: Any) -> Flowgraph:
    """Load, override and validate a flowgraph; FlowgraphError lists every problem found.

    ``flowgraph`` is a file path, YAML text or a mapping (see ``read_flowgraph_source``);
    ``overrides`` as on the command line's ``--set``; keywords set options (``seed=1``, ``max_items=100``).
    """
    path, data = read_flowgraph_source(flowgraph)
    errors = ErrorLines(path)
    if not isinstance(data, dict):
        raise FlowgraphError([f"{path}: a flowgraph must be a mapping with keys {', '.join(TOP_LEVEL_KEYS)}"])
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            errors.add(f"unknown top-level key '{key}'; allowed: {', '.join(TOP_LEVEL_KEYS)}", source_line(data, key))
    version = data.get("format_version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        errors.add(f"format_version {brief(version)} is not supported (this jsccflow reads {FORMAT_VERSION})",
                   source_line(data, "format_version"))

    raw_options = _mapping(data, "options", errors)
    variables = _mapping(data, "variables", errors)
    raw_blocks = _sequence(data, "blocks", errors)
    raw_connections = _sequence(data, "connections", errors)
    assignments = _assignments(overrides, errors) + [(f"options.{k}", v) for k, v in option_values.items()]
    _apply_overrides(assignments, raw_options, variables, raw_blocks, errors)

    options, problems = resolve_params(OPTIONS, dict(raw_options))
    for problem in problems:
        errors.add(f"options: {problem}", source_line(raw_options, problem_parameter(problem)))
    device = getattr(options, "device", None)  # absent when its type was wrong (reported above)
    if isinstance(device, str) and device_problem(device):
        errors.add(f"options: parameter 'device': {device_problem(device)}", source_line(raw_options, "device"))

    blocks, block_lines = _build_blocks(raw_blocks, variables, errors)
    connections = _parse_connections(raw_connections, blocks, set(block_lines), errors)
    fg = Flowgraph(path, options, dict(variables), blocks, connections, block_lines=block_lines)
    if not errors.lines:
        _check_ports_connected(fg, block_lines, errors)
    if not errors.lines:
        order = _topological_order(fg, errors)
        if order is not None:
            fg.blocks = {block_id: blocks[block_id] for block_id in order}
            _infer_shapes(fg, block_lines, errors)
            _check_sources(fg, block_lines, errors)
    if not errors.lines:
        _check_batches(fg, block_lines, errors)
    if errors.lines:
        raise FlowgraphError(errors.lines)
    return fg


def flowgraph_fingerprint(flowgraph: FlowgraphSource, overrides: Overrides = None) -> str:
    """SHA-256 of what a flowgraph computes with ``overrides``: its parsed options, variables, blocks and
    connections once overridden, so comments, layout and a default the overrides replace do not count
    (a sweep point's and a cached model's identity). Values stay as written (paths unresolved, so the
    fingerprint is the same in every checkout); nothing is validated: ``load_flowgraph`` reports problems."""
    _, data = read_flowgraph_source(flowgraph)
    data = data if isinstance(data, dict) else {"data": data}
    errors = ErrorLines("<fingerprint>")
    parts = {key: copy.deepcopy(data.get(key)) or {} for key in ("options", "variables")}
    blocks = copy.deepcopy(data.get("blocks")) or []
    if isinstance(parts["options"], dict) and isinstance(parts["variables"], dict) and isinstance(blocks, list):
        _apply_overrides(_assignments(overrides, errors), parts["options"], parts["variables"], blocks, errors)
    parts |= {"blocks": blocks, "connections": data.get("connections"), "rest": {
        k: v for k, v in data.items() if k not in ("options", "variables", "blocks", "connections")}}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


# -- pieces of the file ----------------------------------------------------------------------------
def _mapping(data: dict, key: str, errors: ErrorLines) -> LineDict:
    value = data.get(key)
    if value is None:
        return LineDict()
    if not isinstance(value, dict):
        errors.add(f"'{key}' must be a mapping", source_line(data, key))
        return LineDict()
    return value


def _sequence(data: dict, key: str, errors: ErrorLines) -> LineList:
    value = data.get(key)
    if value is None:
        if key == "blocks":
            errors.add("'blocks' is missing: a flowgraph needs at least one block")
        return LineList()
    if not isinstance(value, list):
        errors.add(f"'{key}' must be a list", source_line(data, key))
        return LineList()
    return value


def _assignments(overrides: Overrides, errors: ErrorLines) -> list[tuple[str, Any]]:
    """``(KEY, value)`` pairs of ``KEY=VALUE`` strings (VALUE parsed as YAML) or of a mapping."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return [(str(key), value) for key, value in overrides.items()]
    if isinstance(overrides, str):
        overrides = [overrides]
    pairs = []
    for text in overrides:
        try:
            pairs.append(parse_assignment(text))
        except ParameterError as err:
            errors.add(str(err))
    return pairs


def _apply_overrides(assignments: list[tuple[str, Any]], options: LineDict, variables: LineDict, blocks: LineList,
                     errors: ErrorLines) -> None:
    """Set ``VAR``, ``ID.PARAM`` or ``options.KEY`` to each assigned value (command line or Python API)."""
    by_id = {b["id"]: b for b in blocks if isinstance(b, dict) and isinstance(b.get("id"), str)}
    for key, value in assignments:
        head, dot, tail = key.partition(".")
        if not dot:
            if key not in variables:
                known = ", ".join(variables) or "none"
                errors.add(f"--set {key}: unknown variable; known variables: {known} (use ID.PARAM for block parameters)")
            else:
                variables[key] = value
        elif head == "options":
            options[tail] = value
        elif head in by_id:
            block = by_id[head]
            if not isinstance(block.get("params"), dict):
                block["params"] = LineDict()
            block["params"][tail] = value
        else:
            errors.add(f"--set {key}: no block with id '{head}'")


def _substitute(value: Any, variables: dict, unknown: list[str]) -> Any:
    """Replace ``$name`` strings by variable values (recursively in lists)."""
    if isinstance(value, str) and value.startswith("$"):
        name = value[1:]
        if name in variables:
            return variables[name]
        unknown.append(name)
        return value
    if isinstance(value, list):
        return [_substitute(v, variables, unknown) for v in value]
    return value


def _build_blocks(raw_blocks: LineList, variables: dict, errors: ErrorLines) -> tuple[dict[str, Block], dict[str, int]]:
    blocks: dict[str, Block] = {}
    lines: dict[str, int] = {}
    seen: dict[str, int] = {}
    for index, spec in enumerate(raw_blocks):
        line = raw_blocks.item_lines[index] if isinstance(raw_blocks, LineList) else None
        if not isinstance(spec, dict):
            errors.add(f"blocks[{index}]: must be a mapping with keys id, type, params", line)
            continue
        for key in spec:
            if key not in BLOCK_KEYS:
                errors.add(f"blocks[{index}]: unknown key '{key}'; allowed: {', '.join(BLOCK_KEYS)}", source_line(spec, key))
        block_id, type_name = spec.get("id"), spec.get("type")
        if not isinstance(block_id, str) or not _ID_RE.match(block_id):
            errors.add(f"blocks[{index}]: 'id' must be an identifier (letters, digits, _); got {brief(block_id)}", line)
            continue
        if block_id in seen:
            errors.add(f"block '{block_id}': duplicate id (first defined at line {seen[block_id]})", line)
            continue
        seen[block_id] = line
        lines[block_id] = line
        if not isinstance(type_name, str):
            errors.add(f"block '{block_id}': 'type' is missing", line)
            continue
        try:
            cls = get_block_class(type_name)
        except JsccflowError as err:
            errors.add(f"block '{block_id}': {err}", source_line(spec, "type"))
            continue
        raw_params = spec.get("params") or LineDict()
        if not isinstance(raw_params, dict):
            errors.add(f"block '{block_id}': 'params' must be a mapping", source_line(spec, "params"))
            continue
        unknown_vars: list[str] = []
        params = {k: _substitute(v, variables, unknown_vars) for k, v in raw_params.items()}
        for name in unknown_vars:
            errors.add(f"block '{block_id}': unknown variable '${name}'; define it under 'variables'", line)
        _, problems = resolve_params(cls.params, params)
        for problem in problems:
            errors.add(f"block '{block_id}': {problem}", source_line(raw_params, problem_parameter(problem)) or line)
        if problems or unknown_vars:
            continue
        try:
            blocks[block_id] = cls(block_id, **params)
        except ParameterError as err:
            errors.add(str(err), line)
    return blocks, lines


def _parse_connections(raw: LineList, blocks: dict[str, Block], declared: set[str], errors: ErrorLines) -> list[Connection]:
    """Parse ``a.x -> b.y`` lines; a block that was declared but failed is not reported again."""
    connections: list[Connection] = []
    fed: dict[tuple[str, str], str] = {}
    for index, text in enumerate(raw):
        line = raw.item_lines[index] if isinstance(raw, LineList) else None
        match = _CONN_RE.match(text) if isinstance(text, str) else None
        if not match:
            errors.add(f"connections[{index}]: expected 'block.port -> block.port'; got {brief(text)}", line)
            continue
        conn = Connection(*match.groups())
        ok = True
        for block_id, port, direction in ((conn.src, conn.src_port, "output"), (conn.dst, conn.dst_port, "input")):
            block = blocks.get(block_id)
            if block is None:
                ok = False
                if block_id not in declared:
                    errors.add(f"connection '{conn}': no block with id '{block_id}'", line)
                continue
            ports = type(block).outputs if direction == "output" else type(block).inputs
            if not any(p.name == port for p in ports):
                names = ", ".join(p.name for p in ports) or "none"
                errors.add(f"connection '{conn}': block '{block_id}' has no {direction} port '{port}' ({direction}s: {names})", line)
                ok = False
        if not ok:
            continue
        if (conn.dst, conn.dst_port) in fed:
            errors.add(f"connection '{conn}': input port '{conn.dst}.{conn.dst_port}' is already fed by {fed[(conn.dst, conn.dst_port)]}", line)
            continue
        fed[(conn.dst, conn.dst_port)] = f"{conn.src}.{conn.src_port}"
        connections.append(conn)
    return connections


def _check_ports_connected(fg: Flowgraph, lines: dict[str, int], errors: ErrorLines) -> None:
    fed = {(c.dst, c.dst_port) for c in fg.connections}
    for block_id, block in fg.blocks.items():
        for port in type(block).inputs:
            if not port.optional and (block_id, port.name) not in fed:
                errors.add(f"block '{block_id}': required input port '{port.name}' is not connected", lines.get(block_id))


def _topological_order(fg: Flowgraph, errors: ErrorLines) -> list[str] | None:
    indegree = {block_id: 0 for block_id in fg.blocks}
    children: dict[str, list[str]] = {block_id: [] for block_id in fg.blocks}
    for conn in fg.connections:
        indegree[conn.dst] += 1
        children[conn.src].append(conn.dst)
    queue = deque(b for b in fg.blocks if indegree[b] == 0)
    order: list[str] = []
    while queue:
        block_id = queue.popleft()
        order.append(block_id)
        for child in children[block_id]:
            indegree[child] -= 1
            if indegree[child] == 0:
                queue.append(child)
    if len(order) < len(fg.blocks):
        in_cycle = [b for b in fg.blocks if indegree[b] > 0]
        errors.add(f"connections form a cycle through blocks: {', '.join(in_cycle)}")
        return None
    return order


def _infer_shapes(fg: Flowgraph, lines: dict[str, int], errors: ErrorLines) -> None:
    for block_id, block in fg.blocks.items():
        cls = type(block)
        in_shapes: dict[str, Shape] = {}
        in_tags: dict[str, dict] = {}
        ok = True
        for port_name, (src, src_port) in fg.upstream(block_id).items():
            if (src, src_port) not in fg.output_shapes:
                ok = False  # upstream already failed and reported
                continue
            dst = cls.input_port(port_name)
            src_dtype = type(fg.blocks[src]).output_port(src_port).dtype
            if src_dtype != dst.dtype and dst.dtype != ANY_DTYPE:
                errors.add(f"connection '{src}.{src_port} -> {block_id}.{port_name}': dtype {src_dtype} "
                           f"does not match input dtype {dst.dtype}", lines.get(block_id))
                ok = False
            in_shapes[port_name] = fg.output_shapes[(src, src_port)]
            in_tags[port_name] = fg.output_tags.get((src, src_port), {})
        if not ok:
            continue
        try:
            out_tags = block.propagate_tags(in_tags, in_shapes)
            out_shapes = block.infer_shapes(in_shapes)
        except JsccflowError as err:
            errors.add(f"block '{block_id}': {err}", lines.get(block_id))
            continue
        fg.input_shapes[block_id] = in_shapes
        for port in cls.outputs:
            fg.output_shapes[(block_id, port.name)] = tuple(out_shapes[port.name])
            fg.output_tags[(block_id, port.name)] = out_tags.get(port.name, {})


def _check_batches(fg: Flowgraph, lines: dict[str, int], errors: ErrorLines) -> None:
    """Blocks that need whole groups of items per batch refuse the run's batch sizes now, not mid-run."""
    sizes = batch_sizes(count_items(fg), fg.options.batch_size)
    for block_id, block in fg.blocks.items():
        try:
            block.check_batch_sizes(sizes, fg.input_shapes.get(block_id, {}))
        except JsccflowError as err:
            errors.add(f"block '{block_id}': {err}", lines.get(block_id))


def _check_sources(fg: Flowgraph, lines: dict[str, int], errors: ErrorLines) -> None:
    sources = fg.sources
    if not sources:
        errors.add("flowgraph has no source block (a block without inputs)")
        return
    counts = []
    for source in sources:
        if source.id not in fg.input_shapes:
            return  # its shape inference failed and was reported
        try:
            counts.append(source.num_items())
        except JsccflowError as err:
            errors.add(f"block '{source.id}': {err}", lines.get(source.id))
            return
    if fg.options.max_items is None and all(c is None for c in counts):
        errors.add("options: parameter 'max_items': required when every source is unbounded")
