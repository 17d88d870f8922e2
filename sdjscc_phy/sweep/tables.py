"""Pivot tables of a sweep's results: a metric's mean ± standard error, one row per method (or another
column), one column per grid value, and optionally each method's difference to a reference method.

Rows that differ only in ``over`` (seeds) are aggregated first (:func:`sdjscc_phy.sweep.stats.aggregate`).
A difference ``a - b`` gets the standard error sqrt(se_a² + se_b²): conservative for methods evaluated on
the same images (it ignores their positive correlation). It is marked "n.s." (no significant difference)
when smaller than twice that error (:func:`sdjscc_phy.sweep.stats.verdict`).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

from sdjscc_phy.errors import JsccflowError
from sdjscc_phy.sweep.stats import aggregate, select, verdict

PERCENT = ("accuracy",)  # metrics shown in percent (points for differences)


@dataclass(frozen=True)
class Cell:
    mean: float
    se: float


@dataclass
class Table:
    """``cells[(row, column)]``; ``rows``/``columns`` in first-seen order; ``scale`` 100 for percentages."""

    y: str
    row_by: str
    col_by: str
    rows: list
    columns: list
    cells: dict
    scale: float

    def minus(self, reference) -> "Table":
        """Each other row minus row ``reference``, per column where both exist."""
        if reference not in self.rows:
            raise JsccflowError(f"table: --versus {reference!r} is not a {self.row_by} "
                                f"(have: {', '.join(map(str, self.rows))})")
        cells = {}
        for row in self.rows:
            for col in self.columns:
                a, b = self.cells.get((row, col)), self.cells.get((reference, col))
                if row != reference and a and b:
                    cells[(f"{row} − {reference}", col)] = Cell(a.mean - b.mean, math.hypot(a.se, b.se))
        rows = list(dict.fromkeys(r for r, _ in cells))
        return Table(self.y, self.row_by, self.col_by, rows, self.columns, cells, self.scale)


def pivot(rows: list[dict], y: str, row_by: str = "method", col_by: str = "snr_db", where: dict | None = None,
          over: tuple[str, ...] = ("seed",)) -> Table:
    """The table of ``y`` (mean ± standard error over ``over`` and images) by ``row_by`` × ``col_by``."""
    if not rows:
        raise JsccflowError("table: the results table has no rows")
    for column in (y, row_by, col_by, *(where or {})):
        if column not in rows[0]:
            raise JsccflowError(f"table: no column '{column}' (columns: {', '.join(rows[0])})")
    rows = select(rows, where)
    if not rows:
        raise JsccflowError(f"table: no row matches {where}")
    over = [c for c in over if c in rows[0] and c not in (row_by, col_by)]
    if over:
        rows = aggregate(rows, over=over)
    cells: dict[tuple, Cell] = {}
    for row in rows:
        value = row.get(y)
        if not isinstance(value, (int, float)):
            continue
        key = (row[row_by], row[col_by])
        if key in cells:
            raise JsccflowError(f"table: several rows at {row_by}={key[0]}, {col_by}={key[1]}; pick rows with "
                                f"--where COLUMN=VALUE or average more columns with --over")
        se = row.get(f"{y}_se")
        cells[key] = Cell(float(value), float(se) if isinstance(se, (int, float)) else math.nan)
    if not cells:
        raise JsccflowError(f"table: no row has a number in '{y}'")
    columns = list(dict.fromkeys(c for _, c in cells))
    if all(isinstance(c, (int, float)) for c in columns):
        columns.sort()
    return Table(y, row_by, col_by, list(dict.fromkeys(r for r, _ in cells)), columns, cells,
                 100.0 if y in PERCENT else 1.0)


def to_markdown(table: Table, differences: bool = False, digits: int = 2) -> str:
    """GitHub markdown: ``mean ± se`` per cell; with ``differences``, "(n.s.)" where |d| < 2 se."""
    head = f"| {table.row_by} \\ {table.col_by} | " + " | ".join(map(str, table.columns)) + " |"
    lines = [head, "|" + "---|" * (len(table.columns) + 1)]
    for row in table.rows:
        texts = []
        for col in table.columns:
            cell = table.cells.get((row, col))
            texts.append(_format(cell, table.scale, differences, digits) if cell else "–")
        lines.append(f"| {row} | " + " | ".join(texts) + " |")
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    """Long form: row, column, mean, se (in the metric's own unit, not percent)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([table.row_by, table.col_by, table.y, f"{table.y}_se"])
    for (row, col), cell in table.cells.items():
        writer.writerow([row, col, cell.mean, cell.se])
    return out.getvalue()


def _format(cell: Cell, scale: float, differences: bool, digits: int) -> str:
    sign = "+" if differences and cell.mean > 0 else ""
    text = f"{sign}{scale * cell.mean:.{digits}f}"
    if not math.isnan(cell.se):
        text += f" ± {scale * cell.se:.{digits}f}"
        if differences and verdict(cell.mean, cell.se) != "significant":
            text += " (n.s.)"
    return text
