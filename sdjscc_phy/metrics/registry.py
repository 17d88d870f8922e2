"""Name -> metric class registry, and the factory a metric sink uses on its ``metrics:`` list.

A flowgraph names metrics as plain strings or, where a metric takes settings, as one-key mappings::

    metrics: [accuracy, {f1_macro: {num_classes: 10}}, psnr_db, ssim, ber, bpp]

To add a metric: subclass ``Metric`` (or ``MeanOverItems``) in this package, decorate it with
``@register_metric("my_name")``, and import its module in ``sdjscc_phy/metrics/__init__.py``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sdjscc_phy.errors import ParameterError, RegistryError
from sdjscc_phy.metrics.base import Metric
from sdjscc_phy.metrics.collection import MetricSet

_REGISTRY: dict[str, type[Metric]] = {}


def register_metric(name: str) -> Callable[[type[Metric]], type[Metric]]:
    """Class decorator: register a ``Metric`` subclass under ``name`` (also its ``compute()`` key)."""

    def decorate(cls: type[Metric]) -> type[Metric]:
        if name in _REGISTRY:
            raise RegistryError(
                f"metric '{name}' is registered twice ({_REGISTRY[name].__qualname__} and {cls.__qualname__})"
            )
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def available_metrics() -> tuple[str, ...]:
    """Registered metric names, sorted."""
    return tuple(sorted(_REGISTRY))


def metric_class(name: str) -> type[Metric]:
    """The class registered under ``name``; ParameterError for an unknown name."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ParameterError(f"`metrics` must be one of ({', '.join(available_metrics())}); got {name!r}") from None


def make_metric(name: str, **params: Any) -> Metric:
    """Instantiate the metric registered under ``name``; unknown or missing settings are ParameterErrors."""
    cls = metric_class(name)
    signature = inspect.signature(cls)
    try:
        signature.bind(**params)
    except TypeError:
        accepted = ", ".join(signature.parameters) or "none"
        raise ParameterError(
            f"metric '{name}' takes settings ({accepted}); got ({', '.join(params) or 'none'})"
        ) from None
    return cls(**params)


def make_metrics(specs: Sequence[str | Mapping[str, Mapping[str, Any] | None]]) -> MetricSet:
    """Build a ``MetricSet`` from a ``metrics:`` list of names or one-key ``{name: {settings}}`` mappings."""
    metrics = []
    for spec in specs:
        if isinstance(spec, str):
            metrics.append(make_metric(spec))
        elif isinstance(spec, Mapping) and len(spec) == 1:
            ((name, params),) = spec.items()
            if params is not None and not isinstance(params, Mapping):
                raise ParameterError(f"settings of metric '{name}' must be a mapping; got {params!r}")
            metrics.append(make_metric(name, **(params or {})))
        else:
            raise ParameterError(
                f"each entry of `metrics` must be a name or a one-key mapping {{name: {{...}}}}; got {spec!r}"
            )
    return MetricSet(metrics)
