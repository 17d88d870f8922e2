"""A sweep's results folder: one JSON per finished point, and the tidy CSV rebuilt from them.

``<output>/points/<key>.json`` holds everything about one run (method, grid values, flowgraph, full
overrides and options, seed, code version, trained checkpoint, metrics); it is written atomically when
the point finishes, so it is the record of what is done. ``<output>/results.csv`` (one row per point:
method, grid variables, seed, metrics) is rewritten atomically from those records after each point, in
the sweep's point order. A killed sweep therefore loses at most the points that were running, and a
restarted one skips every point whose record exists and whose input files (the flowgraph, the checkpoints
it loaded: ``inputs``, paths relative to the output folder, with their SHA-256) are unchanged.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from sdjscc_phy.errors import JsccflowError
from sdjscc_phy.io.results import write_bytes_atomic, write_json_atomic
from sdjscc_phy.sweep.spec import file_digest

RESULTS_CSV = "results.csv"
POINTS_DIR = "points"
SWEEP_JSON = "sweep.json"
ITEMS_DIR = "items"  # per-item rows of each point (a sweep with 'items: true'): <key>_<sink>.csv


class ResultStore:
    """Finished points of one sweep, keyed by point key."""

    def __init__(self, output: str, columns: list[str]):
        self.output = Path(output)
        self.columns = list(columns)
        self.records: dict[str, dict] = {}
        self._digests: dict[str, str] = {}  # every point of a sweep reads the same few checkpoints: hash each once
        points = self.output / POINTS_DIR
        for path in sorted(points.glob("*.json")) if points.is_dir() else ():
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # never written completely (atomic writes make this a foreign file): rerun it
            if isinstance(record, dict) and record.get("key") == path.stem:
                self.records[path.stem] = record

    @property
    def csv_path(self) -> Path:
        return self.output / RESULTS_CSV

    def done(self, key: str) -> bool:
        """A record exists for ``key`` and every input file it names still has the same digest."""
        inputs = self.records.get(key, {}).get("inputs")
        return inputs is not None and all(self._digest(path) == digest for path, digest in inputs.items())

    def _digest(self, path: str) -> str:
        if path not in self._digests:
            self._digests[path] = file_digest(str(self.output / path))
        return self._digests[path]

    def add(self, record: dict, order: list[str]) -> None:
        """Keep one finished point and rewrite the CSV (rows of the keys in ``order``, in that order)."""
        record["inputs"] = {os.path.relpath(path, self.output): digest for path, digest in record["inputs"].items()}
        self.records[record["key"]] = record
        write_json_atomic(str(self.output / POINTS_DIR / f"{record['key']}.json"), record)
        self.write_csv(order)

    def write_csv(self, order: list[str]) -> None:
        """Only the sweep's current points: records of keys it no longer has (a changed recipe, grid or
        override) stay in ``points/`` but would mix old results into the table."""
        records = [self.records[key] for key in order if key in self.records]
        write_bytes_atomic(str(self.csv_path), rows_to_csv([record_row(r, self.columns) for r in records]))


def record_row(record: dict, columns: list[str]) -> dict:
    """The tidy row of one record: method, grid variables, seed, items, metrics, key (in this order: the
    columns before ``items`` identify a run, the ones after it measure it)."""
    row = {"method": record["method"]}
    for column in columns:
        row[column] = record["values"].get(column, "")
    row.setdefault("seed", record["seed"])
    row["items"] = record["items"]
    for name, value in record["metrics"].items():
        # A metric named like a grid variable (the measured bpp in a sweep over bpp) keeps both.
        row[f"measured_{name}" if name in columns or name == "seed" else name] = value
    row["key"] = record["key"]
    return row


def rows_to_csv(rows: list[dict]) -> bytes:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)
    return buf.getvalue().encode()


def _cell(value):
    if isinstance(value, float):
        return repr(value)
    if value is None:
        return ""
    return value


def read_rows(path: str) -> list[dict]:
    """Rows of a results CSV, numbers parsed (ints stay ints, empty cells become None)."""
    try:
        with open(path, newline="") as fh:
            return [{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(fh)]
    except OSError as err:
        raise JsccflowError(f"{path}: cannot read: {err.strerror}") from None


def read_labels(results_csv: str) -> dict[str, str]:
    """Display names of the methods (the sweep file's ``label``s) from the ``sweep.json`` that
    ``jsccflow sweep`` writes beside its results CSV; empty when there is none."""
    try:
        return dict(json.loads((Path(results_csv).parent / SWEEP_JSON).read_text()).get("labels") or {})
    except (OSError, ValueError):
        return {}


def _parse(text: str):
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
