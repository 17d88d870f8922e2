"""Sweep files: methods (a flowgraph plus fixed overrides, or a model trained from a recipe) crossed with a grid.

::

    format_version: 1
    output: ../results/fig4_awgn          # results folder (relative to this file); --output overrides
    models: ../runs/sweep_models          # trained-model cache (default: <output>/models)
    items: false                          # true: keep each point's per-item rows (<output>/items/), for
                                          # paired differences (jsccflow table --paired)
    set:                                  # overrides of every point (VAR, ID.PARAM or options.KEY)
      options.max_items: 5000
      src.root: ../../shared/data/cifar10/train     # path-typed parameters resolve against this file
    methods:
      sdjscc:
        label: SD-JSCC                    # display name in plot legends (default: the method's id)
        flowgraph: ../flowgraphs/sdjscc_awgn.yaml
        set: {enc.checkpoint: sdjscc_awgn, dec.checkpoint: sdjscc_awgn}
      sdjscc_tau:
        flowgraph: ../flowgraphs/sdjscc_awgn.yaml
        train:                            # train (or reuse) a model per grid point, cached by what the stage computes
          recipe: ../recipes/sdjscc_cifar10.yaml
          stage: sdjscc                   # the stage whose export the flowgraph uses
          set: {stages.sdjscc.loss.gsw.tau: $tau}
          checkpoint: [enc.checkpoint, dec.checkpoint]
    grid:                                 # or a list of such mappings (their points are concatenated)
      product: {snr_db: [0, 5, 10], seed: [0, 1, 2]}
      zip: {tau: [1, 10], ...}            # equal lengths, taken row by row; crossed with product
    figures:                              # what `jsccflow figures` (and a finished sweep) makes from the results:
      - plot --x snr_db --y accuracy --out accuracy        # jsccflow plot / table read <output>/results.csv,
      - table --versus deepjscc -o accuracy.md             # plot-grid this sweep file; --out / -o paths are
      - plot-grid --at snr_db=5 --out grid_5db             # relative to the results folder

A grid key is a flowgraph override (``snr_db``, ``src.limit``, ``options.max_items``; ``seed`` is short
for ``options.seed``) or a sweep variable that the method's ``set``/``train.set``/``flowgraph`` use as
``$name`` (a whole value) or ``${name}`` (inside a string). Every problem is a ``file:line:`` line.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sdjscc_phy.core.flowgraph import flowgraph_fingerprint
from sdjscc_phy.core.params import Param, problem_parameter, resolve_params
from sdjscc_phy.core.registry import get_block_class
from sdjscc_phy.core.yaml_lines import ErrorLines, LineDict, LineList, brief, load_yaml_with_lines, source_line
from sdjscc_phy.errors import FlowgraphError, JsccflowError
from sdjscc_phy.io.paths import is_file, name_problem
from sdjscc_phy.training.recipe import resolve_path, written_as_path

FORMAT_VERSION = 1
TOP_LEVEL: tuple[Param, ...] = (
    Param("format_version", "int", FORMAT_VERSION, choices=(FORMAT_VERSION,), doc="sweep file format"),
    Param("description", "str", "", doc="free text, copied into sweep.json"),
    Param("output", "path", None, nullable=True, doc="results folder (default: beside the file, its name)"),
    Param("models", "path", None, nullable=True, doc="trained-model cache (default: <output>/models)"),
    Param("items", "bool", False, doc="keep every point's per-item rows (<output>/items/), for table --paired"),
    Param("set", "mapping", None, nullable=True, doc="overrides of every point (VAR, ID.PARAM, options.KEY)"),
    Param("methods", "mapping", doc="method name -> {flowgraph, set, train}"),
    Param("grid", "list", None, nullable=True, doc="{product, zip} or a list of them"),
    Param("figures", "list[str]", None, nullable=True,
          doc="jsccflow plot / table / plot-grid command lines that make the figures (jsccflow figures)"),
)
#: The commands a ``figures:`` line may run, and their options that name output files (relative to the
#: sweep's results folder).
FIGURE_COMMANDS = ("plot", "table", "plot-grid")
FIGURE_OUT_OPTIONS = ("--out", "-o")
METHOD: tuple[Param, ...] = (
    Param("flowgraph", "path", doc="the flowgraph file (may use ${VAR})"),
    Param("set", "mapping", None, nullable=True, doc="overrides of this method's points"),
    Param("train", "mapping", None, nullable=True, doc="a model trained per point: {recipe, stage, set, checkpoint}"),
    Param("label", "str", None, nullable=True, doc="the name plot legends show (default: the method's name)"),
)
TRAIN: tuple[Param, ...] = (
    Param("recipe", "path", doc="the training recipe"),
    Param("stage", "str", doc="the stage whose export the flowgraph uses"),
    Param("set", "mapping", None, nullable=True, doc="recipe overrides (dotted KEY: VALUE)"),
    Param("checkpoint", "list[str]", doc="flowgraph parameters (ID.PARAM) that get the trained checkpoint"),
)
GRID_KEYS = ("product", "zip")
SEED_KEY = "seed"  # grid shorthand for options.seed
ITEM_SINK_TYPE = "metric_sink"  # the block whose items_csv 'items: true' sets

_VAR_RE = re.compile(r"\$\{(\w+)\}")
_COLUMN_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)?$")
MAX_POINTS = 100_000


class SweepError(FlowgraphError):
    """A sweep file is malformed; ``errors`` holds every problem found, one ``file:line:`` line each."""


@dataclass(frozen=True)
class TrainSpec:
    """A model trained from ``recipe`` with ``overrides``; its ``stage`` export feeds ``checkpoint_params``."""

    recipe: str
    stage: str
    overrides: tuple[str, ...]
    checkpoint_params: tuple[str, ...]


@dataclass(frozen=True)
class Point:
    """One run: a method at one grid point. ``key`` hashes everything that determines its result."""

    method: str
    values: dict  # grid values as written (column -> value)
    flowgraph: str  # absolute path
    overrides: tuple[str, ...]  # KEY=VALUE for load_flowgraph (paths resolved), trained checkpoint excluded
    train: TrainSpec | None
    key: str
    line: int  # line of the method in the sweep file
    item_sinks: tuple[str, ...] = ()  # metric_sink ids of the flowgraph (per-item records with 'items: true')

    def label(self) -> str:
        values = ", ".join(f"{k}={v}" for k, v in self.values.items())
        return f"{self.method} [{values}]" if values else self.method


@dataclass
class Sweep:
    path: str
    output: str
    models: str
    description: str
    grid_columns: list[str]
    column_lines: dict[str, int] = field(default_factory=dict)
    points: list[Point] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)  # method -> display name (plot legends)
    items: bool = False  # keep every point's per-item rows (for jsccflow table --paired)
    figures: list[tuple[list[str], int | None]] = field(default_factory=list)  # (command line split, its line)


def load_sweep(path: str, output: str | None = None, models: str | None = None) -> Sweep:
    """Read and check a sweep file and expand its points; SweepError lists every problem found.

    Flowgraphs and recipes are only read here, not validated with each point's overrides:
    :func:`sdjscc_phy.sweep.runner.validate_points` does that.
    """
    errors = ErrorLines(path)
    data = load_yaml_with_lines(path)
    base = Path(path).resolve().parent
    if not isinstance(data, dict):
        raise SweepError([f"{path}: a sweep must be a mapping with keys {', '.join(p.name for p in TOP_LEVEL)}"])
    top = _declared(TOP_LEVEL, data, "", errors, unknown="unknown top-level key", skip=("grid",))
    if "grid" in data and not isinstance(data["grid"], (dict, list)):
        errors.add("grid: must be a mapping with 'product' and/or 'zip' (or a list of them)", source_line(data, "grid"))
    out_dir = output or resolve_path(top.output, base) or str(base / Path(path).stem)
    models_dir = models or resolve_path(top.models, base) or str(Path(out_dir) / "models")
    common = top.set or LineDict()
    methods = top.methods or LineDict()
    column_lines: dict[str, int] = {}
    grid_points, columns = _expand_grid(data.get("grid"), source_line(data, "grid"), errors, column_lines)
    sweep = Sweep(path, out_dir, models_dir, top.description, columns, column_lines)
    sweep.items = top.items
    sweep.figures = _figure_lines(data.get("figures"), top.figures, errors)
    # A broken grid still lets every method be checked (at no grid values).
    for name, method in methods.items():
        line = source_line(methods, name)
        if name_problem(name):
            errors.add(f"method name {name_problem(name)}", line)
            continue
        _add_method_points(sweep, name, method, line, common, grid_points or [{}], base, errors)
    if errors.lines:
        raise SweepError(errors.lines)
    return sweep


def _declared(declared: tuple[Param, ...], given: dict, where: str, errors: ErrorLines, *, unknown: str = "unknown key",
              skip: tuple[str, ...] = ()) -> SimpleNamespace:
    """``given`` checked against ``declared`` (every problem into ``errors`` with its line); the values,
    with a declared default (or None) for each one that was absent or wrong."""
    names = [p.name for p in declared]
    for key in given:
        if key not in names:
            errors.add(f"{where}{unknown} {brief(key)}; allowed: {', '.join(names)}", source_line(given, key))
    values, problems = resolve_params(declared, {k: v for k, v in given.items() if k in names and k not in skip})
    for problem in problems:
        name = problem_parameter(problem)
        errors.add(f"{where}{problem.replace('parameter ', 'key ', 1)}", source_line(given, name))
    for param in declared:
        if not hasattr(values, param.name):
            setattr(values, param.name, None if param.required else param.default)
    return values


def _figure_lines(given: Any, figures: list[str] | None, errors: ErrorLines) -> list[tuple[list[str], int | None]]:
    """Each ``figures:`` line split like a shell command, with its file line; the command's own options are
    checked where the commands live (``jsccflow figures``)."""
    lines = []
    for index, text in enumerate(figures or []):
        line = given.item_lines[index] if isinstance(given, LineList) else None
        try:
            words = shlex.split(text)
        except ValueError as err:
            errors.add(f"figures: {brief(text)}: {err}", line)
            continue
        if not words or words[0] not in FIGURE_COMMANDS:
            errors.add(f"figures: {brief(text)}: must start with one of {', '.join(FIGURE_COMMANDS)}", line)
            continue
        outside = [path for path in _figure_outputs(words) if Path(path).is_absolute() or ".." in Path(path).parts]
        if outside:
            errors.add(f"figures: {brief(text)}: output '{outside[0]}' must stay inside the results folder "
                       "(a relative path without '..')", line)
            continue
        lines.append((words, line))
    return lines


def _figure_outputs(words: list[str]) -> list[str]:
    found: list[str] = []
    map_figure_outputs(words, lambda path: found.append(path) or path)
    return found


def map_figure_outputs(words: list[str], change) -> list[str]:
    """``words`` of a figure line with each output path (the value of ``--out``/``-o``, also written
    ``--out=PATH``) replaced by ``change(path)``."""
    mapped, after_out = [], False
    for word in words:
        option, eq, value = word.partition("=")
        if after_out:
            word = change(word)
        elif eq and option in FIGURE_OUT_OPTIONS:
            word = f"{option}={change(value)}"
        after_out = word in FIGURE_OUT_OPTIONS
        mapped.append(word)
    return mapped


# -- the grid ----------------------------------------------------------------------------------------
def _expand_grid(grid: Any, line: int | None, errors: ErrorLines,
                 column_lines: dict[str, int]) -> tuple[list[dict], list[str]]:
    """Grid points as ``{column: value}`` dicts, in file order; no grid is one empty point."""
    if grid is None:
        return [{}], []
    parts = grid if isinstance(grid, list) else [grid]
    points: list[dict] = []
    columns: list[str] = []
    for index, part in enumerate(parts):
        part_line = grid.item_lines[index] if isinstance(grid, LineList) else line
        if not isinstance(part, dict):
            errors.add("grid: expected a mapping with 'product' and/or 'zip' (or a list of them)", part_line)
            continue
        for key in part:
            if key not in GRID_KEYS:
                errors.add(f"grid: unknown key {brief(key)}; allowed: product (every combination), zip (row by row)",
                           source_line(part, key))
        axes = {}
        for kind in GRID_KEYS:
            values = part.get(kind)
            if values is None:
                continue
            if not isinstance(values, dict) or not values:
                errors.add(f"grid.{kind}: must be a mapping of name -> list of values", source_line(part, kind))
                continue
            for name, seq in values.items():
                if not isinstance(name, str) or not _COLUMN_RE.match(name):
                    errors.add(f"grid.{kind}: variable name {brief(name)} must be a name (letters, digits, _) or "
                               "ID.PARAM / options.KEY", source_line(values, name))
                elif not isinstance(seq, list) or not seq:
                    errors.add(f"grid.{kind}.{name}: must be a non-empty list of values", source_line(values, name))
                elif name in axes:
                    errors.add(f"grid: '{name}' appears in both product and zip", source_line(values, name))
                else:
                    axes[name] = (kind, seq, source_line(values, name))
        zipped = [(n, s) for n, (k, s, _) in axes.items() if k == "zip"]
        lengths = {len(s) for _, s in zipped}
        if len(lengths) > 1:
            detail = ", ".join(f"{n} has {len(s)}" for n, s in zipped)
            errors.add(f"grid.zip: lists must have equal lengths ({detail})", source_line(part, "zip"))
            continue
        products = [(n, s) for n, (k, s, _) in axes.items() if k == "product"]
        count = math.prod(len(s) for _, s in products) * max(lengths or {1})
        if len(points) + count > MAX_POINTS:
            errors.add(f"grid: more than {MAX_POINTS:,} points ({count:,} in this part)", part_line)
            continue
        zip_rows = [dict(zip([n for n, _ in zipped], row)) for row in zip(*[s for _, s in zipped])] or [{}]
        for combo in itertools.product(*[s for _, s in products]):
            for row in zip_rows:
                points.append({**dict(zip([n for n, _ in products], combo)), **row})
        for name, (_, _, name_line) in axes.items():
            if name not in columns:
                columns.append(name)
                column_lines[name] = name_line
    return points, columns


# -- methods -----------------------------------------------------------------------------------------
def _add_method_points(sweep: Sweep, name: str, method: Any, line: int | None, common: LineDict,
                       grid_points: list[dict], base: Path, errors: ErrorLines) -> None:
    where = f"method '{name}'"
    if not isinstance(method, dict):
        errors.add(f"{where}: must be a mapping with keys {', '.join(p.name for p in METHOD)}", line)
        return
    before = len(errors.lines)
    spec = _declared(METHOD, method, f"{where}: ", errors)
    own = spec.set or LineDict()
    train = spec.train
    if train is not None:
        train_spec = _declared(TRAIN, train, f"{where}: train: ", errors)
        if train_spec.checkpoint is not None and not all("." in c for c in train_spec.checkpoint):
            errors.add(f"{where}: train: 'checkpoint' must name the flowgraph parameters (ID.PARAM) that get the "
                       f"trained checkpoint, e.g. [enc.checkpoint, dec.checkpoint]", source_line(train, "checkpoint"))
    if len(errors.lines) > before:
        return
    if spec.label:
        sweep.labels[name] = spec.label
    for values in grid_points:
        used: set[str] = set()
        fg_text = _substitute_text(spec.flowgraph, values, used, where, source_line(method, "flowgraph"), errors)
        fg_path = resolve_path(fg_text, base)
        if not is_file(fg_path):
            errors.add(f"{where}: flowgraph '{fg_text}' does not exist", source_line(method, "flowgraph"))
            return
        fg_vars, block_types = _flowgraph_outline(fg_path)
        assigned: dict[str, Any] = {}
        for source in (common, own):
            for key, value in source.items():
                assigned[str(key)] = _substitute(value, values, used, where, source_line(source, key), errors)
        for column, value in values.items():
            key = "options.seed" if column == SEED_KEY else column
            if "." in key or key in fg_vars:
                assigned[key] = value
                used.add(column)
        trained = None
        if train is not None:
            train_set = train_spec.set or LineDict()
            overrides = tuple(
                f"{k}={_yaml_value(_substitute(v, values, used, where, source_line(train_set, k), errors))}"
                for k, v in train_set.items())
            trained = TrainSpec(resolve_path(train_spec.recipe, base), train_spec.stage, overrides,
                                tuple(train_spec.checkpoint))
        for column in values:
            if column not in used:
                known = ", ".join(fg_vars) or "none"
                errors.add(f"grid variable '{column}': not a variable of {fg_text} ({known}), not ID.PARAM or "
                           f"options.KEY, and not used as ${column} by {where}", sweep.column_lines.get(column, line))
        overrides = tuple(f"{k}={_yaml_value(_resolve_paths(k, v, block_types, fg_vars, base))}"
                          for k, v in assigned.items())
        key = point_key(name, fg_path, tuple(f"{k}={_yaml_value(v)}" for k, v in assigned.items()), trained, values)
        sinks = tuple(block_id for block_id, kind in block_types.items() if kind == ITEM_SINK_TYPE)
        sweep.points.append(Point(name, dict(values), fg_path, overrides, trained, key, line or 0, sinks))


def _substitute(value: Any, values: dict, used: set, where: str, line: int | None, errors: ErrorLines) -> Any:
    """``$name`` (whole value) and ``${name}`` (inside a string) from the grid point."""
    if isinstance(value, str) and re.fullmatch(r"\$\w+", value):
        name = value[1:]
        if name not in values:
            errors.add(f"{where}: ${name} is not a grid variable (grid: {', '.join(values) or 'none'})", line)
            return value
        used.add(name)
        return values[name]
    if isinstance(value, str):
        return _substitute_text(value, values, used, where, line, errors)
    if isinstance(value, list):
        return [_substitute(v, values, used, where, line, errors) for v in value]
    return value


def _substitute_text(text: str, values: dict, used: set, where: str, line: int | None, errors: ErrorLines) -> str:
    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name not in values:
            errors.add(f"{where}: ${{{name}}} is not a grid variable (grid: {', '.join(values) or 'none'})", line)
            return match.group(0)
        used.add(name)
        return str(values[name])

    return _VAR_RE.sub(replace, text)


def _yaml_value(value: Any) -> str:
    """A value as ``--set`` parses it back (YAML flow style, one line)."""
    return json.dumps(value) if not isinstance(value, str) else (value if _plain(value) else json.dumps(value))


def _plain(text: str) -> bool:
    import yaml

    try:
        return yaml.safe_load(text) == text
    except yaml.YAMLError:
        return False


def _flowgraph_outline(path: str) -> tuple[list[str], dict[str, str]]:
    """The flowgraph's variable names and ``{block id: type}`` (read only; validation comes later)."""
    try:
        data = load_yaml_with_lines(path)
    except FlowgraphError:
        return [], {}
    if not isinstance(data, dict):
        return [], {}
    variables = data.get("variables") or {}
    blocks = data.get("blocks") or []
    types = {b.get("id"): b.get("type") for b in blocks if isinstance(b, dict)}
    return (list(variables) if isinstance(variables, dict) else []), types


def _resolve_paths(key: str, value: Any, block_types: dict, fg_vars: list, base: Path) -> Any:
    """Relative paths resolve against the sweep file's folder: values of ``path``-typed block parameters,
    and strings written as paths (a '/' or a leading '~', as in recipes) given to text parameters or to
    flowgraph variables: a checkpoint file, where a bare name is a shipped checkpoint."""
    if not isinstance(value, str) or not value:
        return value
    block_id, dot, param = key.partition(".")
    if not dot:
        return resolve_path(value, base) if key in fg_vars and written_as_path(value) else value
    if block_id not in block_types:
        return value
    try:
        cls = get_block_class(block_types[block_id])
    except JsccflowError:
        return value
    kind = next((p.type for p in cls.params if p.name == param), None)
    if kind == "path" or (kind == "str" and written_as_path(value)):
        return resolve_path(value, base)
    return value


def point_key(method: str, flowgraph: str, overrides: tuple[str, ...], train: TrainSpec | None,
              values: dict) -> str:
    """16 hex digits of SHA-256 over what determines a point's result: the method, its grid values, and
    the flowgraph as the overrides (as written in the sweep file) leave it (``flowgraph_fingerprint``),
    so a comment or a default the point overrides does not rerun it; for a trained model, the recipe
    stage and its overrides (which model: the runner checks the model's key, see ``is_done``)."""
    try:
        fingerprint = flowgraph_fingerprint(flowgraph, list(overrides))
    except FlowgraphError:  # unreadable: validating the point reports it
        fingerprint = file_digest(flowgraph)
    spec = {"method": method, "flowgraph": fingerprint, "values": values,
            "train": None if train is None else {"recipe": Path(train.recipe).name, "stage": train.stage,
                                                 "overrides": list(train.overrides),
                                                 "checkpoint": list(train.checkpoint_params)}}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_digest(path: str) -> str:
    """SHA-256 of a file's bytes (its name when it cannot be read: validation reports that)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return Path(path).name
