"""``jsccflow table RESULTS.csv``: means ± standard errors by method × grid value (one metric) or by method ×
metric (several ``--y``), as markdown or CSV."""

from __future__ import annotations

from pathlib import Path

import click

from sdjscc_phy.cli.options import force_option
from sdjscc_phy.core.yaml_lines import parse_assignment
from sdjscc_phy.errors import JsccflowError
from sdjscc_phy.io.paths import check_output_file


@click.command()
@click.argument("results", type=click.Path(dir_okay=False))
@click.option("--y", "ys", multiple=True, default=("accuracy",), show_default=True,
              help="Metric column in the cells; repeat it to make the metrics the columns (Table I style).")
@click.option("--rows", "row_by", default="method", show_default=True, help="Column whose values are the rows.")
@click.option("--cols", "col_by", help="Column whose values are the columns (default: snr_db, with one --y).")
@click.option("--where", multiple=True, metavar="COLUMN=VALUE", help="Only rows with this value (repeatable).")
@click.option("--over", multiple=True, default=("seed",), show_default=True,
              help="Columns averaged over (mean, standard error) (repeatable).")
@click.option("--versus", "versus_rows", multiple=True, metavar="ROW",
              help="Also tabulate every row minus this one, '(n.s.)' where |d| < 2 SE (one reference a table).")
@click.option("--paired", is_flag=True,
              help="With --versus: paired differences, per image where the sweep kept per-item rows "
                   "(items: true), else per noise seed (--over).")
@click.option("--digits", type=click.IntRange(0, 6), default=2, show_default=True, help="Decimals shown.")
@click.option("--out", "-o", type=click.Path(dir_okay=False),
              help="Also write the table: FILE.md (markdown) or FILE.csv (long form, differences as extra rows).")
@force_option
def table(results: str, ys: tuple[str, ...], row_by: str, col_by: str, where: tuple[str, ...], over: tuple[str, ...],
          versus_rows: tuple[str, ...], paired: bool, digits: int, out: str | None, force: bool) -> None:
    """Print Y (accuracy in percent) by --rows × --cols from a sweep's RESULTS.csv, mean ± 1 standard error.

    \b
    jsccflow table results.csv --versus deepjscc            accuracy by method × snr_db, and differences
    jsccflow table results.csv --y accuracy --y psnr_db     Table I: every method, two metrics
    jsccflow table results.csv --versus deepjscc --paired   differences paired over images / noise seeds
    jsccflow table results.csv --y accuracy --y unseen_accuracy   task and unseen classifier side by side
    """
    from sdjscc_phy.io.results import write_bytes_atomic
    from sdjscc_phy.sweep import read_rows
    from sdjscc_phy.sweep.store import ITEMS_DIR
    from sdjscc_phy.sweep.tables import paired_tables, tabulate, to_csv, to_markdown

    if len(versus_rows) > 1:  # click would keep the last one silently
        raise JsccflowError(f"table: --versus takes one reference row, got {len(versus_rows)} "
                            f"({', '.join(versus_rows)}); make one table per reference")
    versus = versus_rows[0] if versus_rows else None
    if out:
        check_output_file(out, "--out", force=force)
    selected = dict(parse_assignment(item, "--where") for item in where)
    if col_by is None and len(ys) == 1:
        col_by = "snr_db"
    reference = parse_assignment(f"versus={versus}", "--versus")[1] if versus else None  # '1' -> 1
    if paired and reference is None:
        raise JsccflowError("table: --paired needs --versus ROW (the reference of the differences)")
    if paired:
        items_dir = str(Path(results).parent / ITEMS_DIR)
        main, diff = paired_tables(read_rows(results), ys, row_by, col_by, selected, over, reference, items_dir)
    else:
        main = tabulate(read_rows(results), ys, row_by, col_by, selected, over)
        diff = main.minus(reference) if versus else None
    text = to_markdown(main, digits=digits) + (("\n" + to_markdown(diff, True, digits)) if diff else "")
    click.echo(text, nl=False)
    if out:
        if Path(out).suffix == ".csv":
            text = to_csv(main) + (to_csv(diff, header=False) if diff else "")
        write_bytes_atomic(out, text.encode())
        click.echo(out)
