"""A set of metrics updated from one batch of named inputs: what a metric sink holds."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sdjscc_phy.errors import ParameterError
from sdjscc_phy.metrics.base import Metric


class MetricSet:
    """Several metrics fed from one mapping of named inputs; ``compute()`` merges their dicts."""

    def __init__(self, metrics: Sequence[Metric]) -> None:
        names = [m.name for m in metrics]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ParameterError(f"`metrics` lists {', '.join(duplicates)} more than once")
        self.metrics = tuple(metrics)

    @property
    def inputs(self) -> tuple[str, ...]:
        """Every input spec (``"a|b"`` form) some metric needs, in first-use order."""
        return tuple(dict.fromkeys(spec for m in self.metrics for spec in m.inputs))

    @property
    def higher_is_better(self) -> dict[str, bool | None]:
        """``higher_is_better`` of each metric, by metric name."""
        return {m.name: m.higher_is_better for m in self.metrics}

    def input_problems(self, available: Collection[str]) -> list[str]:
        """Every ``"metric 'name': problem"`` with the ``available`` inputs (for validating a whole graph)."""
        return [f"metric '{m.name}': {problem}" for m in self.metrics for problem in m.input_problems(available)]

    def update(self, batch: Mapping[str, Any]) -> None:
        for metric in self.metrics:
            metric.update_from(batch)

    def compute(self) -> dict[str, float]:
        result: dict[str, float] = {}
        for metric in self.metrics:
            result.update(metric.compute())
        return result

    def reset(self) -> None:
        for metric in self.metrics:
            metric.reset()
