"""Typed parameters: declared once per block, read by the validator, ``jsccflow blocks`` and the docs."""

from __future__ import annotations

import difflib
import re
import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from sdjscc_phy.core.yaml_lines import brief
from sdjscc_phy.errors import ParameterError


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: Default of a parameter that must be given.
REQUIRED: Any = _Required()

_TYPES = ("float", "int", "str", "bool", "list", "list[str]", "list[float]", "path", "mapping")


@dataclass(frozen=True)
class Param:
    """A block parameter.

    Attributes:
        name: key in the flowgraph's ``params`` mapping.
        type: one of float, int, str, bool, list (any YAML list), list[str], list[float], path, mapping.
        default: value when not given; ``REQUIRED`` if it must be given.
        choices: allowed values, if the set is closed.
        low, high: inclusive range for numbers (None = unbounded).
        unit: unit of the value (``dB``, ``bits per pixel``, ...), shown by ``jsccflow blocks``.
        doc: one-line description.
        nullable: ``null`` is allowed (e.g. an optional limit).
        nonfinite: NaN and +-inf are allowed (floats only; rejected otherwise, whatever the range).
    """

    name: str
    type: str
    default: Any = REQUIRED
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    unit: str = ""
    doc: str = ""
    nullable: bool = False
    nonfinite: bool = False

    def __post_init__(self):
        if self.type not in _TYPES:
            raise ParameterError(f"parameter '{self.name}': type must be one of {_TYPES}; got '{self.type}'")

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def describe(self) -> dict:
        """A JSON-friendly description (for ``jsccflow blocks --json``)."""
        out = {"name": self.name, "type": self.type, "required": self.required, "doc": self.doc}
        if not self.required:
            out["default"] = self.default
        if self.choices is not None:
            out["choices"] = list(self.choices)
        if self.low is not None or self.high is not None:
            out["range"] = [self.low, self.high]
        if self.unit:
            out["unit"] = self.unit
        return out

    def coerce(self, value: Any) -> Any:
        """Check ``value`` against type, choices and range; return it in canonical form.

        Raises ParameterError with a message that states what was expected and what was given.
        """
        if value is None:
            if self.nullable or self.default is None:
                return None
            raise ParameterError(f"must be a {self.type}; got null")
        value = self._coerce_type(value)
        if self.choices is not None and value not in self.choices:
            choices = ", ".join(repr(c) for c in self.choices)
            raise ParameterError(f"must be one of ({choices}); got {brief(value)}")
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, float) and not math.isfinite(item) and not self.nonfinite:
                raise ParameterError(f"must be a finite number; got {item!r}")
            if isinstance(item, (int, float)) and not isinstance(item, bool):
                if (self.low is not None and item < self.low) or (self.high is not None and item > self.high):
                    low = "-inf" if self.low is None else repr(self.low)
                    high = "inf" if self.high is None else repr(self.high)
                    raise ParameterError(f"must be in [{low}, {high}]; got {brief(item)}")
        return value

    def _coerce_type(self, value: Any) -> Any:
        kind = self.type
        if kind == "bool":
            if isinstance(value, bool):
                return value
        elif kind == "int":
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        elif kind == "float":
            # YAML writes 5 for 5.0: an int is a valid float, a bool is not.
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if abs(value) > 1e300:  # also keeps float() from overflowing on a huge int
                    raise ParameterError(f"must be a finite number; got {brief(value)}")
                return float(value)
        elif kind == "str":
            if isinstance(value, str):
                return value
        elif kind == "path":
            if isinstance(value, str):
                # Longer names make every later stat() fail with ENAMETOOLONG instead of "not found".
                too_long = len(value.encode()) >= 4096 or any(len(p.encode()) > 255 for p in value.split("/"))
                if too_long or "\x00" in value:
                    raise ParameterError(f"must be a usable path (no NUL, names of at most 255 bytes); "
                                         f"got {brief(value)}")
                return value
        elif kind == "list":
            if isinstance(value, list):
                return list(value)
        elif kind == "list[str]":
            if isinstance(value, str):
                return [value]
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return list(value)
        elif kind == "list[float]":
            if isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
                return [float(v) for v in value]
        elif kind == "mapping":
            if isinstance(value, dict):
                return value
        builtin = next(t for t in type(value).__mro__ if t.__module__ == "builtins")  # not the YAML loader's LineList
        raise ParameterError(f"must be a {kind}; got {builtin.__name__} {brief(value)}")


def problem_parameter(problem: str) -> str | None:
    """The parameter name a :func:`resolve_params` problem (``parameter 'name': ...``) is about, to find its line."""
    match = re.match(r"parameter '([^']+)'", problem)
    return match.group(1) if match else None


def resolve_params(declared: tuple[Param, ...], given: dict[str, Any]) -> tuple[SimpleNamespace, list[str]]:
    """Validate ``given`` against ``declared``; return (namespace of all values, list of errors).

    Every problem is reported (unknown names with a did-you-mean, missing required, wrong type or
    range), each as ``parameter 'name': message``.
    """
    errors: list[str] = []
    by_name = {p.name: p for p in declared}
    for name in given:
        if name not in by_name:
            hint = difflib.get_close_matches(name, list(by_name), n=1) if isinstance(name, str) else []
            known = f"did you mean '{hint[0]}'?" if hint else f"known: {', '.join(by_name) or 'none'}"
            label = name if isinstance(name, str) and len(name) <= 60 else brief(name)
            errors.append(f"parameter '{label}': unknown parameter; {known}")
    values = {}
    for param in declared:
        if param.name in given:
            try:
                values[param.name] = param.coerce(given[param.name])
            except ParameterError as err:
                errors.append(f"parameter '{param.name}': {err}")
        elif param.required:
            errors.append(f"parameter '{param.name}': required parameter is missing")
        else:
            values[param.name] = param.default
    return SimpleNamespace(**values), errors
