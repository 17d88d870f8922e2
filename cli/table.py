"""``jsccflow table RESULTS.csv``: a metric's mean ± standard error by method × grid value, as markdown or CSV."""

from __future__ import annotations

from pathlib import Path

import click

from sdjscc_phy.core.yaml_lines import parse_assignment


@click.command()
@click.argument("results", type=click.Path(dir_okay=False))
@click.option("--y", "y", default="accuracy", show_default=True, help="Metric column in the cells.")
@click.option("--rows", "row_by", default="method", show_default=True, help="Column whose values are the rows.")
@click.option("--cols", "col_by", default="snr_db", show_default=True, help="Column whose values are the columns.")
@click.option("--where", multiple=True, metavar="COLUMN=VALUE", help="Only rows with this value (repeatable).")
@click.option("--over", multiple=True, default=("seed",), show_default=True,
              help="Columns averaged over (mean, standard error) (repeatable).")
@click.option("--versus", metavar="ROW", help="Also tabulate every row minus this one, '(n.s.)' where |d| < 2 SE.")
@click.option("--digits", type=click.IntRange(0, 6), default=2, show_default=True, help="Decimals shown.")
@click.option("--out", "-o", type=click.Path(dir_okay=False),
              help="Also write the table: FILE.md (markdown) or FILE.csv (long form, differences as extra rows).")
def table(results: str, y: str, row_by: str, col_by: str, where: tuple[str, ...], over: tuple[str, ...],
          versus: str | None, digits: int, out: str | None) -> None:
    """Print Y (accuracy in percent) by --rows × --cols from a sweep's RESULTS.csv, mean ± 1 standard error."""
    from sdjscc_phy.io.results import write_bytes_atomic
    from sdjscc_phy.sweep import read_rows
    from sdjscc_phy.sweep.tables import pivot, to_csv, to_markdown

    selected = dict(parse_assignment(item, "--where") for item in where)
    main = pivot(read_rows(results), y, row_by, col_by, selected, over)
    diff = main.minus(versus) if versus else None
    text = to_markdown(main, digits=digits) + (("\n" + to_markdown(diff, True, digits)) if diff else "")
    click.echo(text, nl=False)
    if out:
        if Path(out).suffix == ".csv":
            text = to_csv(main) + (to_csv(diff).split("\n", 1)[1] if diff else "")
        write_bytes_atomic(out, text.encode())
        click.echo(out)
