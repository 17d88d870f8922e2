"""Deferred imports, so that a command loads torch, Numba or torchmetrics only when it uses them.

``torch = lazy_import("torch")`` at the top of a module binds a stand-in module object; the real
import happens at the first attribute access (``torch.zeros``) and each attribute is then cached on
the stand-in. Validating a link-level flowgraph or printing ``--help`` thus never pays for importing
torch (about a second of CPU), while the code that runs keeps reading like plain ``import torch``.

Rules for modules that use it: nothing at import time may touch the deferred module (no
``torch.float32`` as a default argument, no ``@torch.no_grad()`` decorator, no type alias that
evaluates ``torch.Tensor``; annotations are fine under ``from __future__ import annotations``).

An optional dependency is named with its pip extra, ``lazy_import("pillow_heif", extra="heif")``: when
it is missing, the first use raises ``MissingExtraError`` (a one-line ``JsccflowError``) saying which
extra to install.
"""

from __future__ import annotations

import importlib
import types

from sdjscc_phy.errors import MissingExtraError


def require(name: str, extra: str | None = None) -> types.ModuleType:
    """Import module ``name`` now; if it (or its top-level package) is missing and belongs to the pip
    ``extra``, raise ``MissingExtraError`` naming the extra."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if extra is None or err.name is None or not name.startswith(err.name):
            raise
        raise MissingExtraError(
            f"this needs the optional package '{err.name}': pip install 'jsccflow[{extra}]'") from None


class _DeferredModule(types.ModuleType):
    """A module object that imports the real module at first attribute access."""

    def __init__(self, name: str, extra: str | None):
        super().__init__(name)
        self.__dict__["_deferred_extra"] = extra

    def __getattr__(self, attr: str):
        # Only called for names not yet cached in __dict__ (``__version__`` and the like included).
        value = getattr(require(self.__name__, self._deferred_extra), attr)
        self.__dict__[attr] = value
        return value

    def __repr__(self) -> str:
        return f"<deferred module {self.__name__!r}>"


def lazy_import(name: str, extra: str | None = None) -> types.ModuleType:
    """A stand-in for module ``name`` that imports it at first attribute access (see the module doc)."""
    return _DeferredModule(name, extra)
