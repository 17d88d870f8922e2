"""Sweeps: a grid of flowgraph runs (methods x variables), resumable, parallel, with trained-model caching."""

from sdjscc_phy.sweep.runner import describe_points, prepare, run_sweep
from sdjscc_phy.sweep.spec import Point, Sweep, SweepError, load_sweep
from sdjscc_phy.sweep.stats import aggregate, mean_se, verdict
from sdjscc_phy.sweep.store import read_rows

__all__ = ["Point", "Sweep", "SweepError", "aggregate", "describe_points", "load_sweep", "mean_se", "prepare",
           "read_rows", "run_sweep", "verdict"]
