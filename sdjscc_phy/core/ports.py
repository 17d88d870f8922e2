"""Typed ports: what a block consumes and produces, per item of a batch.

A port carries a batch tensor whose first dimension is the batch; the port declares the dtype and the
*item* shape (the shape without the batch dimension). Item shapes mix integers and symbols, e.g.
``(3, "H", "W")`` or ``("N",)``; symbols bind to numbers when the graph is validated or run.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from sdjscc_phy.errors import PortError
from sdjscc_phy.lazy import lazy_import

torch = lazy_import("torch")

#: Port dtypes and the names of the torch dtypes each accepts at run time. ``bits`` are 0/1 values:
#: uint8 on the host path, float32 on the differentiable torch path (so a straight-through binarizer
#: can pass gradients through them). Names, not torch objects: declaring and validating a flowgraph
#: does not import torch.
PORT_DTYPES: dict[str, tuple[str, ...]] = {
    "float32": ("float32",),
    "complex64": ("complex64",),
    "bits": ("uint8", "float32"),
    "int64": ("int64",),
}
#: Input-port dtype that accepts any of the above (taps that record whatever they are connected to).
ANY_DTYPE = "any"
#: Input-port item shape that accepts items of any shape.
ANY_SHAPE: tuple = ("...",)


@cache
def tensor_dtypes(port_dtype: str) -> tuple[torch.dtype, ...]:
    """The torch dtypes a tensor on a port of ``port_dtype`` may have (checked at run time)."""
    return tuple(getattr(torch, name) for name in PORT_DTYPES[port_dtype])

Dim = int | str
Shape = tuple[Dim, ...]


@dataclass(frozen=True)
class Port:
    """One input or output of a block.

    Attributes:
        name: port name used in connections (``block.port``).
        dtype: one of ``float32``, ``complex64``, ``bits``, ``int64``.
        shape: item shape; ints are fixed sizes, strings are symbols bound per graph.
        doc: one-line description, with units.
        optional: an input that may stay unconnected.
        differentiable: for an output, whether its torch-path value depends differentiably on the block's
            inputs (a channel's noise variance does not); int64 outputs never do.
    """

    name: str
    dtype: str
    shape: Shape
    doc: str = ""
    optional: bool = False
    differentiable: bool = True

    def __post_init__(self):
        if self.dtype not in PORT_DTYPES and self.dtype != ANY_DTYPE:
            raise PortError(
                f"port '{self.name}': dtype must be one of ({', '.join(PORT_DTYPES)}); got '{self.dtype}'"
            )


def format_shape(shape: Shape) -> str:
    """``(3, 'H', 'W')`` -> ``[3,H,W]``."""
    return "[" + ",".join(str(d) for d in shape) + "]"


def bind_shape(declared: Shape, actual: Shape, bindings: dict[str, int]) -> str | None:
    """Match an actual item shape against a declared one, extending ``bindings`` with symbols.

    Returns None when they agree, else a description of the mismatch. A symbol in ``actual`` (not yet
    known upstream) matches anything, and so does the declared shape ``ANY_SHAPE``.
    """
    if declared == ANY_SHAPE:
        return None
    if len(declared) != len(actual):
        return f"expects item shape {format_shape(declared)}; got {format_shape(actual)}"
    for want, got in zip(declared, actual):
        if isinstance(got, str):
            continue
        if isinstance(want, int):
            if want != got:
                return f"expects item shape {format_shape(declared)}; got {format_shape(actual)}"
        elif want in bindings and bindings[want] != got:
            return f"symbol {want} is {bindings[want]} from another input but {got} here"
        else:
            bindings[want] = got
    return None


def substitute_shape(shape: Shape, bindings: dict[str, int]) -> Shape:
    """Replace bound symbols in ``shape`` by their values."""
    return tuple(bindings.get(d, d) if isinstance(d, str) else d for d in shape)
