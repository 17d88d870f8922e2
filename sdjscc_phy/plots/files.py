"""Writing a figure as PNG and SVG, byte-identical when redrawn from the same results."""

from __future__ import annotations

from pathlib import Path


def save_png_svg(fig, out: str, **savefig_kwargs) -> list[str]:
    """Write ``fig`` to ``out``.png and ``out``.svg; the SVG without a date and with element ids from a
    fixed salt (matplotlib's are random per process), so a redrawn figure only differs where it changed."""
    import matplotlib

    Path(out).parent.mkdir(parents=True, exist_ok=True)
    paths = [f"{out}.png", f"{out}.svg"]
    fig.savefig(paths[0], **savefig_kwargs)
    with matplotlib.rc_context({"svg.hashsalt": "jsccflow"}):
        fig.savefig(paths[1], metadata={"Date": None}, **savefig_kwargs)
    return paths
