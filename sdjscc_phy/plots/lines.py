"""Line plots of a metric against a variable, one line per method, with standard-error bars."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the non-interactive backend)

from sdjscc_phy.errors import JsccflowError  # noqa: E402
from sdjscc_phy.plots.files import save_png_svg  # noqa: E402
from sdjscc_phy.sweep.stats import aggregate, select  # noqa: E402
from sdjscc_phy.units import base_metric, display_scale  # noqa: E402

# Axis labels with units (docs/conventions.md); a column not listed is shown by its name.
LABELS = {
    "snr_db": "SNR$_{test}$, E$_s$/N$_0$ per complex symbol (dB)",
    "snr_train": "SNR$_{train}$, E$_s$/N$_0$ (dB)",
    "bpp": "rate (bits per pixel)",
    "measured_bpp": "rate (bits per pixel)",
    "tau": "GSW temperature τ",
    "accuracy": "top-1 accuracy (%)",
    "unseen_accuracy": "top-1 accuracy, unseen classifier (%)",
    "f1_macro": "macro F1",
    "psnr_db": "PSNR (dB, mean of per-image PSNR)",
    "psnr_db_of_mean_mse": "PSNR of the mean MSE (dB)",
    "ssim": "SSIM (Gaussian window 11, σ = 1.5)",
    "ber": "bit error rate",
    "bler": "block error rate",
    "ldpc_bler": "LDPC block error rate",
    "ebno_db": "E$_b$/N$_0$ per information bit (dB)",
    "ch.ebno_db": "E$_b$/N$_0$ per information bit (dB)",
}
LOG_Y = ("ber", "bler", "ldpc_bler")  # error rates: a log y axis by default
LINE_MARKERS = ("o", "s", "^", "D", "v")  # one per pass through the colour cycle


def axis_label(column: str) -> str:
    return LABELS.get(column, column)


def plot_lines(rows: list[dict], x: str, y: str, by: list[str] | tuple[str, ...] = ("method",), out: str = "plot",
               title: str | None = None, log_x: bool | None = None, where: dict | None = None,
               over: list[str] | tuple[str, ...] = ("seed",), log_y: bool | None = None,
               labels: dict[str, str] | None = None) -> list[str]:
    """Plot ``y`` against ``x``, one line per distinct ``by``, from the rows matching ``where``
    (column -> value). Rows that differ only in ``over`` (seeds) are aggregated
    (:func:`sdjscc_phy.sweep.stats.aggregate`); error bars are ``y``'s standard error (``y_se``).
    ``log_x`` / ``log_y`` None: a log x axis when x spans >= 100x, a log y axis for error rates
    (``LOG_Y``). ``labels`` maps values of the ``by`` columns (method ids) to the legend's names.
    Writes ``out.png`` and ``out.svg``, the legend beside the axes; returns their paths."""
    if not rows:
        raise JsccflowError("plot: the results table has no rows")
    for column in (x, y, *by, *(where or {})):
        if column not in rows[0]:
            raise JsccflowError(f"plot: no column '{column}' (columns: {', '.join(rows[0])})")
    rows = select(rows, where)
    if not rows:
        raise JsccflowError(f"plot: no row matches {where}")
    over = [c for c in over if c in rows[0] and c not in (x, *by)]
    if over:
        rows = aggregate(rows, over=over)
    scale = display_scale(y)
    lines: dict[tuple, list[dict]] = {}
    for row in rows:
        if isinstance(row.get(x), (int, float)) and isinstance(row.get(y), (int, float)):
            lines.setdefault(tuple(row[c] for c in by), []).append(row)
    if not lines:
        raise JsccflowError(f"plot: no row has numbers in both '{x}' and '{y}'")
    for label, group in lines.items():
        xs = [r[x] for r in group]
        if len(set(xs)) < len(xs):
            raise JsccflowError(f"plot: line {', '.join(map(str, label))} has several rows at one {x}; split the "
                                f"lines with another --by column or pick rows with --where COLUMN=VALUE")
    xs_all = [r[x] for group in lines.values() for r in group]
    if log_x is None:
        log_x = min(xs_all) > 0 and max(xs_all) / min(xs_all) >= 100
    if log_y is None:
        log_y = base_metric(y) in LOG_Y or any(base_metric(y).endswith("_" + m) for m in LOG_Y)
    dropped = 0
    if log_y:  # a measured 0 (no errors in the run) has no place on a log axis: leave it out, and say so
        for label, group in lines.items():
            kept = [r for r in group if r[y] > 0]
            dropped += len(group) - len(kept)
            lines[label] = kept
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    # More lines than colours: each pass through the colour cycle gets its own marker, so no two lines look alike.
    colours = len(plt.rcParams["axes.prop_cycle"].by_key().get("color", [None]))
    for index, (label, group) in enumerate(lines.items()):
        group.sort(key=lambda r: r[x])
        se = [scale * r[f"{y}_se"] if isinstance(r.get(f"{y}_se"), (int, float)) else math.nan for r in group]
        ax.errorbar([r[x] for r in group], [scale * r[y] for r in group],
                    yerr=None if all(math.isnan(s) for s in se) else se,
                    marker=LINE_MARKERS[index // colours % len(LINE_MARKERS)], markersize=4, capsize=3,
                    label=", ".join(str((labels or {}).get(str(v), v)) for v in label))
    if log_x:
        ax.set_xscale("log")
    if log_y:
        # Error bars reaching 0 run off the bottom instead of stretching the axis to 1e-300.
        ax.set_yscale("log", nonpositive="clip")
        positive = [scale * r[y] for group in lines.values() for r in group]
        if positive:
            ax.set_ylim(bottom=min(positive) / 10)
    ax.set_xlabel(axis_label(x))
    ax.set_ylabel(axis_label(y))
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    # Beside the axes, never over the curves; the figure grows to hold it (bbox_inches="tight").
    ax.legend(title=", ".join(by), fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    note = "error bars: ±1 standard error"
    if dropped:
        note += f"; {dropped} point{'s' if dropped > 1 else ''} at 0 not drawn"
    ax.annotate(note, xy=(1.0, -0.14), xycoords="axes fraction", ha="right", va="top",
                fontsize="x-small", alpha=0.7)
    fig.tight_layout()
    paths = save_png_svg(fig, out, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return paths
