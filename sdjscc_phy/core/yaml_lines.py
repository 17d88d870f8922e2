"""YAML loading for every file jsccflow reads (flowgraphs, recipes, sweep files) and every ``--set`` value.

Values remember their line numbers, so every error can name the line it is about. The reader is safe
against hostile files: it caps the file size, the nesting depth and the size of the tree that aliases
expand to ("billion laughs"), rejects text that is not UTF-8 or holds control characters, integers
with more than :data:`MAX_INT_DIGITS` digits and tags other than the plain data types (str, int, float,
bool, null, mappings, lists). Floats are read as YAML 1.2 does (``1e-3`` is a float, not a string) and
dates stay strings. Errors name the file and line and never echo a long value.
"""

from __future__ import annotations

import os
import re
import reprlib
import stat

import yaml

from sdjscc_phy.errors import ParameterError, YamlFileError

#: Largest YAML file read, in bytes (the shipped files are a few kB).
MAX_FILE_BYTES = 1 << 20
#: Deepest nesting of mappings and lists (the shipped files nest 4 deep).
MAX_DEPTH = 32
#: Most values (scalars, mappings, lists) the document may expand to once aliases are followed.
MAX_EXPANDED_NODES = 100_000
#: Longest integer literal, in digits (int64 needs 19).
MAX_INT_DIGITS = 40

# C0 control characters other than tab, newline and carriage return, DEL, and the C1 block.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# YAML 1.2 core-schema floats: an exponent without a dot (1e-3) is a float too.
_FLOAT_RE = re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                          |[-+]?(?:[0-9][0-9_]*)[eE][-+]?[0-9]+
                          |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                          |[-+]?\.(?:inf|Inf|INF)
                          |\.(?:nan|NaN|NAN))$""", re.X)

_brief = reprlib.Repr()
_brief.maxstring = 60
_brief.maxother = 60
_brief.maxlevel = 3


def brief(value) -> str:
    """``repr(value)`` cut to a few dozen characters (long strings, big or aliased trees), for error messages."""
    return _brief.repr(value)


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
        try:
            return container.line_of(key)
        except TypeError:  # an unhashable key (a mapping given where a name was expected)
            return container.line
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
            loader.duplicate_keys.append(f"{line}: duplicate key {brief(key)} (first at line {out.key_lines[key]})")
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = line
    return out


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> LineList:
    out = LineList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


def _construct_int(loader: _LineLoader, node: yaml.ScalarNode) -> int:
    digits = sum(c.isalnum() for c in node.value)
    if digits > MAX_INT_DIGITS:
        raise yaml.constructor.ConstructorError(
            None, None, f"integer with {digits} digits is too large (at most {MAX_INT_DIGITS})", node.start_mark)
    return loader.construct_yaml_int(node)


def _unsupported(loader: _LineLoader, node: yaml.Node):
    raise yaml.constructor.ConstructorError(
        None, None, f"the YAML tag {brief(node.tag)} is not supported here (use plain strings, numbers, booleans, "
                    "null, mappings and lists)", node.start_mark)


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)
_LineLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
for _tag in ("binary", "timestamp", "set", "omap", "pairs"):
    _LineLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _unsupported)
_LineLoader.add_constructor(None, _unsupported)
# Own resolver table (add_implicit_resolver would append to lists shared with yaml.SafeLoader): dates stay
# strings, YAML 1.2 floats are floats.
_LineLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _first in "-+0123456789.":
    _LineLoader.yaml_implicit_resolvers.setdefault(_first, []).insert(0, ("tag:yaml.org,2002:float", _FLOAT_RE))


def _check_structure(text: str) -> str | None:
    """Walk the parse events (a flat stream: no recursion) and return the first limit broken, as
    ``'LINE: message'``, or None. Syntax errors are left to the loader, which reports them with a line."""
    anchors: dict[str, int] = {}
    stack: list[list] = []  # [expanded node count, anchor] per open collection
    total = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            line = event.start_mark.line + 1
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                if len(stack) >= MAX_DEPTH:
                    return f"{line}: nesting deeper than {MAX_DEPTH} levels"
                stack.append([1, event.anchor])
                continue
            if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                count, anchor = stack.pop()
            elif isinstance(event, yaml.ScalarEvent):
                count, anchor = 1, event.anchor
            elif isinstance(event, yaml.AliasEvent):
                count, anchor = anchors.get(event.anchor, 1), None
            else:
                continue
            if anchor is not None:
                anchors[anchor] = count
            if stack:
                stack[-1][0] += count
            else:
                total += count
            if total + sum(c for c, _ in stack) > MAX_EXPANDED_NODES:
                return f"{line}: aliases expand to more than {MAX_EXPANDED_NODES:,} values"
    except yaml.YAMLError:
        return None
    return None


def load_yaml_text(text: str, where: str = "<string>"):
    """Parse YAML ``text`` under the same limits as a file; errors name ``where`` (the file it came from,
    ``--set KEY`` or ``<string>``) and the line."""
    bad = _CONTROL_RE.search(text)
    if bad:
        line = text.count("\n", 0, bad.start()) + 1
        raise YamlFileError([f"{where}:{line}: control character {bad.group()!r} is not allowed in YAML text"])
    problem = _check_structure(text)
    if problem:
        raise YamlFileError([f"{where}:{problem}"])
    loader = _LineLoader(text)
    loader.duplicate_keys = []
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f"{where}:{mark.line + 1}:{mark.column + 1}" if mark else where
        problem = (getattr(err, "problem", None) or str(err)).strip().splitlines()[0][:200]
        syntax = isinstance(err, (yaml.scanner.ScannerError, yaml.parser.ParserError, yaml.composer.ComposerError))
        raise YamlFileError([f"{at}: {'YAML syntax error' if syntax else 'YAML error'}: {problem}"]) from None
    finally:
        loader.dispose()
    if loader.duplicate_keys:
        raise YamlFileError([f"{where}:{d}" for d in loader.duplicate_keys])
    return data


def load_yaml_with_lines(path: str):
    """Parse the YAML file ``path``; YamlFileError naming file and line for any problem (see module doc)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a folder, a device (/dev/zero), a pipe (/dev/stdin)
            raise YamlFileError([f"{path}: not a regular file"])
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise YamlFileError([f"{path}: cannot read file: {err.strerror or type(err).__name__}"]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise YamlFileError([f"{path}: file is larger than {MAX_FILE_BYTES // 1024} KiB; is it the right file?"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise YamlFileError([f"{path}:{line}: not UTF-8 text (byte 0x{raw[err.start]:02x}); "
                              "is it a YAML file?"]) from None
    return load_yaml_text(text.removeprefix("\ufeff"), path)


def plain(value):
    """``value`` with every :class:`LineDict`/:class:`LineList` turned into a plain dict/list (for values
    that are pickled into checkpoints or compared with ``==`` to plain data)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def parse_assignment(text: str, flag: str = "--set") -> tuple[str, object]:
    """Split ``KEY=VALUE`` and parse VALUE as YAML (``5`` -> 5, ``[a, b]`` -> list, ``x`` -> 'x').

    A VALUE that is not valid YAML stays the plain string; one that breaks the reader's limits (depth,
    aliases, control characters, huge integers) is a ParameterError.
    """
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ParameterError(f"{flag} {brief(text)}: expected KEY=VALUE")
    if not raw.strip():
        return key.strip(), ""
    try:
        value = load_yaml_text(raw, f"{flag} {key.strip()}")
    except YamlFileError as err:
        if "YAML syntax error" in err.errors[0]:
            return key.strip(), raw
        raise ParameterError(err.errors[0]) from None
    return key.strip(), value
