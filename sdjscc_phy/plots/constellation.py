"""Constellation diagram: received complex symbols scattered over the reference constellation."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sdjscc_phy.plots.image_grid import figure_png  # noqa: E402


def constellation_png(symbols: np.ndarray, reference: np.ndarray | None, title: str = "") -> bytes:
    """PNG bytes: ``symbols`` (complex, any shape) as a scatter in the I/Q plane, ``reference`` points
    (unit average energy) as red crosses on top; equal axis scales, so distortions keep their shape."""
    symbols = np.asarray(symbols).ravel()
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    # Many points: small, translucent markers show the density; few: ordinary dots.
    alpha = float(np.clip(2000 / max(len(symbols), 1), 0.05, 0.8))
    ax.scatter(symbols.real, symbols.imag, s=3, alpha=alpha, linewidths=0, color="tab:blue",
               label=f"received ({len(symbols)} symbols)", rasterized=True)
    if reference is not None:
        ax.scatter(reference.real, reference.imag, s=25, marker="x", color="tab:red", label="reference")
    ax.set_aspect("equal")
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.axvline(0, color="grey", linewidth=0.5)
    ax.set_xlabel("in-phase")
    ax.set_ylabel("quadrature")
    if title:
        ax.set_title(title, fontsize="medium")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize="small", markerscale=2)
    fig.tight_layout()
    return figure_png(fig)
