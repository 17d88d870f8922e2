"""Tables of a sweep's results: means ± standard errors, one row per method (or another column), and as
columns either the values of a grid column (one metric) or several metrics (Table I style); optionally
each row's difference to a reference row.

Rows that differ only in ``over`` (seeds) are aggregated first (:func:`sdjscc_phy.sweep.stats.aggregate`).
A difference ``a - b`` gets the standard error sqrt(se_a² + se_b²): conservative for methods evaluated on
the same images (it ignores their positive correlation). It is marked "n.s." (no significant difference)
when smaller than twice that error (:func:`sdjscc_phy.sweep.stats.verdict`).
"""

from __future__ import annotations

import csv
import glob
import io
import math
import os
from dataclasses import dataclass

from sdjscc_phy.errors import JsccflowError, NothingToPairError
from sdjscc_phy.sweep.stats import aggregate, mean_se, select, verdict
from sdjscc_phy.units import display_name, display_scale

METRIC_COLUMNS = "metric"  # the col_by of a table whose columns are metrics


@dataclass(frozen=True)
class Cell:
    mean: float
    se: float


@dataclass
class Table:
    """``cells[(row, column)]`` holds (row, column)'s metric; ``metrics[column]`` names it."""

    row_by: str
    col_by: str
    rows: list
    columns: list
    cells: dict
    metrics: dict

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
        return Table(self.row_by, self.col_by, rows, self.columns, cells, self.metrics)


def tabulate(rows: list[dict], ys: list[str] | tuple[str, ...], row_by: str = "method", col_by: str | None = "snr_db",
             where: dict | None = None, over: tuple[str, ...] = ("seed",)) -> Table:
    """One metric ``ys[0]`` by ``row_by`` × ``col_by``; or, with several ``ys`` (``col_by`` None), every
    metric by ``row_by``. Cells: mean ± standard error over ``over`` and images; metrics whose runs carry
    no standard error (``f1_macro``) get none (NaN), not the seed spread alone."""
    if not rows:
        raise JsccflowError("table: the results table has no rows")
    if len(ys) > 1 and col_by is not None:
        raise JsccflowError("table: several --y metrics are the columns; do not also give --cols")
    col_by = col_by if len(ys) == 1 and col_by is not None else None
    for column in (*ys, row_by, *((col_by,) if col_by else ()), *(where or {})):
        if column not in rows[0]:
            raise JsccflowError(f"table: no column '{column}' (columns: {', '.join(rows[0])})")
    rows = select(rows, where)
    if not rows:
        raise JsccflowError(f"table: no row matches {where}")
    measured = {y for y in ys if any(isinstance(r.get(f"{y}_se"), (int, float)) for r in rows)}
    over = [c for c in over if c in rows[0] and c not in (row_by, col_by)]
    if over:
        rows = aggregate(rows, over=over)
    cells: dict[tuple, Cell] = {}
    for row in rows:
        for y in ys:
            value = row.get(y)
            if not isinstance(value, (int, float)):
                continue
            key = (row[row_by], row[col_by] if col_by else y)
            if key in cells:
                raise JsccflowError(f"table: several rows at {row_by}={key[0]}" + (f", {col_by}={key[1]}" if col_by else "")
                                    + "; pick rows with --where COLUMN=VALUE or average more columns with --over")
            se = row.get(f"{y}_se") if y in measured else None  # no image-level SE: no error shown
            cells[key] = Cell(float(value), float(se) if isinstance(se, (int, float)) else math.nan)
    if not cells:
        raise JsccflowError(f"table: no row has a number in {', '.join(repr(y) for y in ys)}")
    columns = list(dict.fromkeys(c for _, c in cells))
    if col_by and all(isinstance(c, (int, float)) for c in columns):
        columns.sort()
    metrics = {c: (ys[0] if col_by else c) for c in columns}
    return Table(row_by, col_by or METRIC_COLUMNS, list(dict.fromkeys(r for r, _ in cells)), columns, cells, metrics)


def to_markdown(table: Table, differences: bool = False, digits: int = 2) -> str:
    """GitHub markdown: ``mean ± se`` per cell (accuracy in %); with ``differences``, "(n.s.)" where |d| < 2 se."""
    names = [display_name(c) if table.col_by == METRIC_COLUMNS else str(c) for c in table.columns]
    lines = [f"| {table.row_by} \\ {table.col_by} | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
    for row in table.rows:
        texts = []
        for col in table.columns:
            cell = table.cells.get((row, col))
            scale = display_scale(table.metrics[col])
            texts.append(_format(cell, scale, differences, digits) if cell else "–")
        lines.append(f"| {row} | " + " | ".join(texts) + " |")
    return "\n".join(lines) + "\n"


def to_csv(table: Table, header: bool = True) -> str:
    """Long form: row, column, metric, mean, se (in the metric's own unit, not percent)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow([table.row_by, table.col_by, "metric", "mean", "se"])
    for (row, col), cell in table.cells.items():
        writer.writerow([row, col, table.metrics[col], cell.mean, cell.se])
    return out.getvalue()


def _format(cell: Cell, scale: float, differences: bool, digits: int) -> str:
    sign = "+" if differences and cell.mean > 0 else ""
    text = f"{sign}{scale * cell.mean:.{digits}f}"
    if not math.isnan(cell.se):
        text += f" ± {scale * cell.se:.{digits}f}"
        if differences and verdict(cell.mean, cell.se) != "significant":
            text += " (n.s.)"
    return text


#: Per-item column (metric_sink items_csv) that holds each metric's per-item value.
ITEM_COLUMNS = {"accuracy": "correct", "psnr_db": "psnr_db", "ssim": "ssim", "ber": "ber"}


def paired_tables(rows: list[dict], ys: list[str] | tuple[str, ...], row_by: str, col_by: str | None,
                  where: dict | None, over: tuple[str, ...], reference, items_dir: str) -> tuple[Table, Table]:
    """The table and each row's difference to row ``reference``, paired: both sides of a difference
    are measured on the same units, and its standard error is that of the mean per-unit difference.

    Units are the items (images) where every run of a cell has per-item rows in ``items_dir`` (a sweep
    with ``items: true``): each item's value is averaged over the runs' seeds (``over``), then
    differenced, so the image sampling that two methods share cancels. Otherwise the units are the
    seeds present in both cells (a noise seed's run of one method against the same seed's run of the
    other). The main table's cells get the per-item standard error where there are items, else the
    usual one (:func:`tabulate`).
    """
    main = tabulate(rows, ys, row_by, col_by, where, over)
    col_by = None if main.col_by == METRIC_COLUMNS else main.col_by
    over = [c for c in over if c in rows[0] and c not in (row_by, col_by)]
    units: dict[tuple, dict] = {}
    for (row, col), _ in main.cells.items():
        y = main.metrics[col]
        runs = [r for r in select(rows, where) if r[row_by] == row and (col_by is None or r[col_by] == col)]
        per_item = _per_item(runs, y, items_dir)
        units[(row, col)] = per_item if per_item is not None else {
            ("seed",) + tuple(r.get(c) for c in over): r[y] for r in runs if isinstance(r.get(y), (int, float))}
        if per_item is not None:
            mean, se = _mean_se(list(per_item.values()))
            main.cells[(row, col)] = Cell(mean, se)
    if reference not in main.rows:
        raise JsccflowError(f"table: --versus {reference!r} is not a {row_by} (have: {', '.join(map(str, main.rows))})")
    cells = {}
    for row in main.rows:
        for col in main.columns:
            a, b = units.get((row, col)), units.get((reference, col))
            shared = sorted(set(a) & set(b), key=str) if row != reference and a and b else []
            if len(shared) == 1 and shared[0][0] == "seed":
                raise NothingToPairError(
                    f"table --paired: {row} − {reference} at {col}: one noise seed and no per-item rows in "
                    f"{items_dir} (they are not committed; jsccflow sweep --item-rows writes them)")
            if shared:
                cells[(f"{row} − {reference}", col)] = Cell(*_mean_se([a[u] - b[u] for u in shared]))
    diff_rows = list(dict.fromkeys(r for r, _ in cells))
    return main, Table(main.row_by, main.col_by, diff_rows, main.columns, cells, main.metrics)


def _item_column(y: str) -> str | None:
    """The per-item column of metric ``y``; a prefixed metric (``unseen_accuracy``, from a sink with
    ``prefix: unseen_``) reads the equally prefixed column (``unseen_correct``)."""
    for metric, column in ITEM_COLUMNS.items():
        if y == metric or y.endswith("_" + metric):
            return y[: len(y) - len(metric)] + column
    return None


def _per_item(runs: list[dict], y: str, items_dir: str) -> dict | None:
    """``{("item", index): value averaged over the runs}`` from the runs' per-item CSVs; None unless
    every run has one with the metric's per-item column."""
    column = _item_column(y)
    tables = []
    for run in runs:
        found = None
        for path in sorted(glob.glob(os.path.join(glob.escape(items_dir), f"{run.get('key')}_*.csv"))):
            with open(path, newline="") as fh:
                reader = csv.DictReader(fh)
                if column in (reader.fieldnames or ()):
                    found = {("item", int(r["item"])): float(r[column]) for r in reader}
                    break
        if found is None or column is None:
            return None
        tables.append(found)
    if not tables:
        return None
    shared = set.intersection(*(set(t) for t in tables))
    return {unit: sum(t[unit] for t in tables) / len(tables) for unit in shared}


def _mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean; the error is NaN (not shown) for a single unit."""
    mean, se = mean_se(values)
    return mean, se if len(values) > 1 else math.nan
