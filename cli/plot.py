"""``jsccflow plot RESULTS.csv`` (metric vs variable) and ``jsccflow plot-grid SWEEP.yaml`` (images)."""

from __future__ import annotations

from pathlib import Path

import click

from sdjscc_phy.cli.options import force_option
from sdjscc_phy.core.yaml_lines import parse_assignment
from sdjscc_phy.errors import JsccflowError
from sdjscc_phy.io.paths import check_output_file


def check_figure_files(prefix: str, force: bool) -> None:
    """The figure files PREFIX.png and PREFIX.svg can be written (before any work)."""
    for suffix in (".png", ".svg"):
        check_output_file(prefix + suffix, "--out", force=force)


@click.command()
@click.argument("results", type=click.Path(dir_okay=False))
@click.option("--x", "x", required=True, help="Column on the x axis (snr_db, bpp, tau, snr_train...).")
@click.option("--y", "y", default="accuracy", show_default=True, help="Metric column on the y axis.")
@click.option("--by", multiple=True, default=("method",), show_default=True, help="One line per value (repeatable).")
@click.option("--where", multiple=True, metavar="COLUMN=VALUE", help="Only rows with this value (repeatable).")
@click.option("--over", multiple=True, default=("seed",), show_default=True,
              help="Columns averaged over (mean, standard error) (repeatable).")
@click.option("--logx/--linx", default=None, help="Log x axis (default: when x spans >= 100x).")
@click.option("--logy/--liny", default=None, help="Log y axis (default: for ber, bler, ldpc_bler).")
@click.option("--label", "labels", multiple=True, metavar="METHOD=NAME",
              help="Legend name of a method (repeatable; default: the sweep file's 'label', else the id).")
@click.option("--title", help="Figure title.")
@click.option("--out", "-o", help="Output prefix: writes PREFIX.png and PREFIX.svg (default: RESULTS_Y_vs_X).")
@force_option
def plot(results: str, x: str, y: str, by: tuple[str, ...], where: tuple[str, ...], over: tuple[str, ...],
         logx: bool | None, logy: bool | None, labels: tuple[str, ...], title: str | None, out: str | None,
         force: bool) -> None:
    """Line plot of Y against X from a sweep's RESULTS.csv, one line per --by, ±1 standard error bars."""
    from sdjscc_phy.plots import plot_lines
    from sdjscc_phy.sweep import read_rows
    from sdjscc_phy.sweep.store import read_labels

    selected = dict(parse_assignment(item, "--where") for item in where)
    names = {**read_labels(results), **{k: str(v) for k, v in (parse_assignment(i, "--label") for i in labels)}}
    prefix = out or str(Path(results).with_suffix("")) + f"_{y}_vs_{x}"
    check_figure_files(prefix, force)
    for path in plot_lines(read_rows(results), x, y, by, prefix, title, logx, selected, over, logy, names):
        click.echo(path)


@click.command("plot-grid")
@click.argument("sweep_file", type=click.Path(dir_okay=False))
@click.option("--at", "at", multiple=True, metavar="VAR=VALUE",
              help="Grid point to show (repeatable; other grid variables take their first value).")
@click.option("--method", "methods", multiple=True, help="Methods to show, in this order (default: all).")
@click.option("--images", type=click.IntRange(1, 32), default=8, show_default=True, help="Images (columns).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Extra flowgraph override for every method.")
@click.option("--out", "-o", required=True, help="Output prefix: writes PREFIX.png and PREFIX.svg.")
@force_option
def plot_grid(sweep_file: str, at: tuple[str, ...], methods: tuple[str, ...], images: int,
              overrides: tuple[str, ...], out: str, force: bool) -> None:
    """Originals vs each method's reconstruction at one point of SWEEP_FILE, predicted label under each
    (runs the flowgraphs on the first IMAGES items; trained methods need their model trained)."""
    from sdjscc_phy.plots.image_grid import capture, plot_image_grid
    from sdjscc_phy.sweep import load_sweep
    from sdjscc_phy.sweep.runner import plan_models, point_overrides

    spec = load_sweep(sweep_file)
    wanted = dict(parse_assignment(item, "--at") for item in at)
    unknown = [k for k in wanted if k not in spec.grid_columns]
    if unknown:
        raise JsccflowError(f"--at {unknown[0]}: not a grid variable of {sweep_file} "
                            f"({', '.join(spec.grid_columns) or 'none'})")
    names = list(methods) or list(dict.fromkeys(p.method for p in spec.points))
    plans = plan_models(spec)
    check_figure_files(out, force)
    captures = {}
    for name in names:
        candidates = [p for p in spec.points if p.method == name
                      and all(str(p.values.get(k)) == str(v) for k, v in wanted.items())]
        if not candidates:
            raise JsccflowError(f"{sweep_file}: no point of method '{name}' at {wanted or 'any grid point'}")
        point = candidates[0]
        if point.train is not None and not Path(plans[point.train].checkpoint).is_file():
            raise JsccflowError(f"method '{name}': model {plans[point.train].checkpoint} is not trained yet; "
                                f"run jsccflow sweep {sweep_file} first")
        captures[name] = capture(point.flowgraph, [*point_overrides(point, plans), *overrides], images)
    shown = ", ".join(f"{k}={v}" for k, v in (candidates[0].values.items()))
    for path in plot_image_grid(captures, out, title=shown or None):
        click.echo(path)
