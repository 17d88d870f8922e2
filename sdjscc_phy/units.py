"""The unit each metric is shown in to people: accuracy in percent, everywhere (``jsccflow run``,
``table``, ``plot``). Files (``--output`` JSON, a sweep's results.csv, items CSVs) keep fractions, so
that a value read back is the value computed.
"""

from __future__ import annotations

#: Metrics shown in percent (their standard errors and differences in percentage points).
PERCENT_METRICS = ("accuracy",)
_SUFFIXES = ("_se_seeds", "_se")


def base_metric(column: str) -> str:
    """The metric a column holds: ``accuracy_se`` -> ``accuracy``."""
    for suffix in _SUFFIXES:
        if column.endswith(suffix):
            return column[: -len(suffix)]
    return column


def display_scale(column: str) -> float:
    """100 for a column shown in percent (a metric, a prefixed metric such as ``rx_accuracy``, or either's
    standard error), else 1."""
    metric = base_metric(column)
    return 100.0 if any(metric == m or metric.endswith("_" + m) for m in PERCENT_METRICS) else 1.0


def display_name(column: str) -> str:
    """The column's name with its display unit: ``accuracy (%)``."""
    return f"{column} (%)" if display_scale(column) == 100.0 else column
