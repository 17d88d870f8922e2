"""YAML loading that remembers line numbers, so every error can name the line it is about."""

from __future__ import annotations

import yaml

from sdjscc_phy.errors import FlowgraphError


class LineDict(dict):
    """A mapping from YAML with ``line`` (its own) and ``key_lines`` (per key), 1-based."""

    line: int = 0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.key_lines: dict = {}

    def line_of(self, key) -> int:
        return self.key_lines.get(key, self.line)


class LineList(list):
    """A sequence from YAML with ``line`` and ``item_lines``, 1-based."""

    line: int = 0

    def __init__(self, *args):
        super().__init__(*args)
        self.item_lines: list[int] = []


def source_line(container, key=None) -> int | None:
    """Line of ``key`` in a :class:`LineDict` (or the container's own line), ``None`` when unknown."""
    if isinstance(container, LineDict) and key is not None:
        return container.line_of(key)
    return getattr(container, "line", None)


class ErrorLines:
    """Collects ``file:line: message`` lines for one YAML file (each distinct line once)."""

    def __init__(self, path: str):
        self.path = path
        self.lines: list[str] = []

    def add(self, message: str, line: int | None = None) -> None:
        where = f"{self.path}:{line}" if line else self.path
        text = f"{where}: {message}"
        if text not in self.lines:
            self.lines.append(text)


class _LineLoader(yaml.SafeLoader):
    duplicate_keys: list[str]


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    out = LineDict()
    out.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(None, None, "mapping key is not a scalar", key_node.start_mark)
        if key in out:
            loader.duplicate_keys.append(f"{line}: duplicate key '{key}' (first at line {out.key_lines[key]})")
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = line
    return out


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> LineList:
    out = LineList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_yaml_with_lines(path: str):
    """Parse ``path``; FlowgraphError naming file and line on a syntax error or duplicate key."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as err:
        raise FlowgraphError([f"{path}: cannot read file: {err.strerror}"]) from None
    return load_yaml_text(text, path)


def load_yaml_text(text: str, path: str = "<string>"):
    """Parse YAML ``text``; errors name ``path`` (the file it came from, or ``<string>``) and the line."""
    loader = _LineLoader(text)
    loader.duplicate_keys = []
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        problem = getattr(err, "problem", None) or str(err)
        raise FlowgraphError([f"{where}: YAML syntax error: {problem}"]) from None
    finally:
        loader.dispose()
    if loader.duplicate_keys:
        raise FlowgraphError([f"{path}:{d}" for d in loader.duplicate_keys])
    return data


def parse_assignment(text: str, flag: str = "--set") -> tuple[str, object]:
    """Split ``KEY=VALUE`` and parse VALUE as YAML (``5`` -> 5, ``[a, b]`` -> list, ``x`` -> 'x')."""
    from sdjscc_phy.errors import ParameterError

    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ParameterError(f"{flag} {text!r}: expected KEY=VALUE")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value
