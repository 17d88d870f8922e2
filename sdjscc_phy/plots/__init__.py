"""Figures from sweep results (matplotlib, Agg backend; PNG and SVG)."""

from sdjscc_phy.plots.lines import axis_label, plot_lines

__all__ = ["axis_label", "plot_lines"]
