"""The metric base class and the running mean/variance that streaming metrics accumulate.

A metric is a thin stateful wrapper (torchmetrics style): ``update(...)`` takes one batch, ``compute()``
returns ``dict[str, float]``, ``reset()`` forgets everything. State is bounded: counts, sums and
moments, never stored predictions.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any, ClassVar

from sdjscc_phy.errors import DataError
from sdjscc_phy.lazy import lazy_import

torch = lazy_import("torch")


class RunningMoments:
    """Count, mean and sum of squared deviations of a stream of values (float64, Chan et al. merge).

    Merging batch moments instead of summing squares keeps the variance accurate when the mean is large
    compared with the spread (PSNR around 30 dB with a spread of 0.1 dB).
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.mean = 0.0
        self._m2 = 0.0

    def add(self, values: torch.Tensor) -> None:
        """Add every element of ``values``."""
        values = values.detach().to("cpu", torch.float64).flatten()
        n_b = values.numel()
        if n_b == 0:
            return
        mean_b = values.mean().item()
        m2_b = (values - mean_b).square().sum().item()
        n = self.count + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self._m2 += m2_b + delta * delta * self.count * n_b / n
        self.count = n

    @property
    def standard_error(self) -> float:
        """Standard error of the mean, ``std(ddof=1) / sqrt(count)``; NaN with fewer than 2 values."""
        if self.count < 2:
            return math.nan
        return math.sqrt(self._m2 / (self.count - 1) / self.count)


class Metric:
    """Base class of every metric a metric sink can instantiate by name.

    Subclasses are registered with ``@register_metric("name")``, which sets ``name``. They declare:

    - ``higher_is_better``: True, False, or None where neither (a rate such as bpp);
    - ``unit``: the unit of the value (``dB``, ``bits per pixel``), shown by ``jsccflow metrics``;
    - ``inputs``: the named inputs ``update`` needs, matching metric-sink port names; ``"a|b"`` means
      either ``a`` or ``b``;
    - ``reports_standard_error``: whether ``compute()`` also returns ``<name>_se``, the standard error
      of the mean over items (``std(ddof=1) / sqrt(n)``), for metrics that are a mean over items.

    Each subclass has a typed ``update(...)`` for direct use; a sink calls ``update_from(batch)``.
    """

    name: ClassVar[str] = ""
    higher_is_better: ClassVar[bool | None] = None
    unit: ClassVar[str] = ""
    inputs: ClassVar[tuple[str, ...]] = ()
    reports_standard_error: ClassVar[bool] = False

    def update(self, **inputs: Any) -> None:
        raise NotImplementedError

    def compute(self) -> dict[str, float]:
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError

    @classmethod
    def output_keys(cls) -> tuple[str, ...]:
        """The keys ``compute()`` returns."""
        return (cls.name, f"{cls.name}_se") if cls.reports_standard_error else (cls.name,)

    @classmethod
    def missing_inputs(cls, available: Collection[str]) -> list[str]:
        """The input specs (``"a|b"`` form) that none of the ``available`` names satisfies."""
        return [spec for spec in cls.inputs if not any(alt in available for alt in spec.split("|"))]

    def input_problems(self, available: Collection[str]) -> list[str]:
        """What keeps this metric, as configured, from running on the ``available`` inputs: one message
        per problem naming the input port to connect (or the setting to give). Checked at validation."""
        return ["connect input port " + " or ".join(f"'{alt}'" for alt in spec.split("|"))
                for spec in self.missing_inputs(available)]

    def update_from(self, batch: Mapping[str, Any]) -> None:
        """Update from a mapping of named inputs (a sink's ports); names this metric does not use are ignored.

        For an ``"a|b"`` input the first name present in ``batch`` is used.
        """
        missing = self.missing_inputs(batch.keys())
        if missing:
            wanted = " and ".join(" or ".join(f"'{a}'" for a in spec.split("|")) for spec in missing)
            raise DataError(f"metric '{self.name}' needs input {wanted}; got {sorted(batch)}")
        chosen = {}
        for spec in self.inputs:
            alt = next(a for a in spec.split("|") if a in batch)
            chosen[alt] = batch[alt]
        self.update(**chosen)

    def _require_data(self, count: int) -> None:
        if count == 0:
            raise DataError(f"metric '{self.name}' has no data; call update() before compute()")


class MeanOverItems(Metric):
    """A metric that is the mean over items of a per-item value, reported with its standard error."""

    reports_standard_error = True

    def __init__(self) -> None:
        self._moments = RunningMoments()

    def reset(self) -> None:
        self._moments.reset()

    def compute(self) -> dict[str, float]:
        self._require_data(self._moments.count)
        return {self.name: self._moments.mean, f"{self.name}_se": self._moments.standard_error}
