"""Aggregating sweep rows over seeds (noise or training seeds) for plots and tables.

For a metric ``m`` with rows r_1..r_n (same method and grid point, different seeds):

- ``m`` = mean over the n rows;
- ``m_se_seeds`` = sample standard deviation over rows / sqrt(n) (spread due to the seeds; 0 for n = 1);
- ``m_se`` = sqrt(mean(r_i.m_se)^2 + m_se_seeds^2) where rows carry ``m_se`` (the standard error over
  images of each run). The rows share the same images, so the image-sampling error does not shrink with
  more seeds: its mean is kept and the seed spread added (conservative). Without ``m_se`` in the rows,
  ``m_se`` is ``m_se_seeds``.

Differences smaller than twice their standard error are "no significant difference" (:func:`verdict`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from sdjscc_phy.errors import JsccflowError

SEED_COLUMNS = ("seed",)


def aggregate(rows: list[dict], over: Iterable[str] = SEED_COLUMNS, metrics: Iterable[str] | None = None) -> list[dict]:
    """One row per group of ``rows`` equal in every identifying column except ``over``; see module doc.

    In a sweep's CSV the identifying columns come before ``items`` and the metrics after it; other
    tables name their ``metrics`` (every other column except ``over`` then identifies a group).
    """
    over = set(over)
    if not rows:
        return []
    columns = list(dict.fromkeys(k for row in rows for k in row))
    if metrics is None:
        if "items" not in columns:
            raise JsccflowError("aggregate: name the metric columns (the table has no 'items' column)")
        metric_names = [c for c in columns[columns.index("items") + 1:] if c != "key" and not c.endswith("_se")]
    else:
        metric_names = list(metrics)
    measured = set(metric_names) | {f"{m}_se" for m in metric_names} | {"key", "items"}
    group_by = [c for c in columns if c not in over and c not in measured
                and (metrics is not None or "items" not in columns or columns.index(c) < columns.index("items"))]
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(_hashable(row.get(c)) for c in group_by), []).append(row)
    out = []
    for key, members in groups.items():
        agg = dict(zip(group_by, key))
        agg["n"] = len(members)
        for name in metric_names:
            values = [r[name] for r in members if isinstance(r.get(name), (int, float))]
            if not values:
                continue
            mean, se_seeds = mean_se(values)
            agg[name] = mean
            agg[f"{name}_se_seeds"] = se_seeds
            image_se = [r[f"{name}_se"] for r in members if isinstance(r.get(f"{name}_se"), (int, float))]
            if image_se:
                agg[f"{name}_se"] = math.sqrt((sum(image_se) / len(image_se)) ** 2 + se_seeds**2)
            else:
                agg[f"{name}_se"] = se_seeds
        out.append(agg)
    return out


def select(rows: list[dict], where: dict | None) -> list[dict]:
    """The rows whose columns equal ``where``'s values (numbers compared with a tolerance)."""
    return [r for r in rows if all(_same(r.get(k), v) for k, v in (where or {}).items())]


def _same(value, wanted) -> bool:
    if isinstance(value, (int, float)) and isinstance(wanted, (int, float)):
        return math.isclose(value, wanted)
    return str(value) == str(wanted)


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (sample std / sqrt(n); 0 for one value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def verdict(difference: float, se: float) -> str:
    """'significant' when |difference| >= 2 standard errors, else 'no significant difference'."""
    return "significant" if abs(difference) >= 2 * se else "no significant difference"


def _hashable(value):
    return tuple(value) if isinstance(value, list) else value
