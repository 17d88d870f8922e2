"""``jsccflow sweep SWEEP.yaml``: run a grid of flowgraph points, resumably, locally or on Dask."""

from __future__ import annotations

import sys

import click


@click.command()
@click.argument("sweep_file", type=click.Path(dir_okay=False))
@click.option("--jobs", "-j", type=int, default=1, show_default=True,
              help="Points run at once (worker processes; a Dask LocalCluster's workers with --executor dask).")
@click.option("--executor", default="local", show_default=True,
              help="local: this machine (process pool); dask: Dask distributed (pip extra [dask]).")
@click.option("--scheduler", metavar="ADDRESS", help="Dask scheduler address (tcp://host:8786) of a running cluster.")
@click.option("--output", "-o", type=click.Path(file_okay=False), help="Results folder (default: the sweep's 'output').")
@click.option("--models", type=click.Path(file_okay=False), help="Trained-model cache (default: the sweep's 'models').")
@click.option("--dry-run", is_flag=True, help="Validate every point and list them; run and train nothing.")
@click.option("--item-rows", is_flag=True,
              help="Also rerun finished points whose per-item rows are missing (items: true; they are not "
                   "committed): `table --paired` then pairs per image, not per noise seed.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on when stderr is a terminal).")
def sweep(sweep_file: str, jobs: int, executor: str, scheduler: str | None, output: str | None, models: str | None,
          dry_run: bool, item_rows: bool, progress: bool | None) -> None:
    """Run every point of SWEEP_FILE not finished yet; rows go to OUTPUT/results.csv as points finish."""
    # Imported here, not at the top: the sweep machinery loads torch, which `jsccflow --help` must not.
    from sdjscc_phy.cli.figures import check_figures, make_figures
    from sdjscc_phy.sweep import describe_points, load_sweep, prepare, run_sweep

    spec = load_sweep(sweep_file, output=output, models=models)
    check_figures(spec)
    if dry_run:
        plans, store = prepare(spec)
        listed = describe_points(spec, plans, store)
        for item in listed:
            values = " ".join(f"{k}={v}" for k, v in item["values"].items())
            model = f"  model {item['model']}" if item["model"] else ""
            click.echo(f"{item['key']}  {item['status']:7s}  {item['method']}  {values}{model}")
        pending = sum(item["status"] == "pending" for item in listed)
        click.echo(f"{sweep_file}: OK, {len(listed)} points ({pending} pending) -> {spec.output}")
        return
    show_progress = sys.stderr.isatty() if progress is None else progress
    summary = run_sweep(spec, jobs=jobs, executor=executor, scheduler=scheduler, progress=show_progress, report=True,
                        item_rows=item_rows)
    click.echo(f"{sweep_file}: {summary.ran} points run, {summary.skipped} already done, "
               f"{summary.trained} model stages trained -> {summary.csv_path}")
    make_figures(spec)
