"""``jsccflow train RECIPE [--set KEY=VALUE ...] [--resume] [--nproc N]``: train the stages of a recipe."""

from __future__ import annotations

import os
import sys

import click
from rich.console import Console
from rich.table import Table

from sdjscc_phy.cli.options import force_option


@click.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe value by dotted key, e.g. stages.classifier.epochs=1 (value parsed as YAML).")
@click.option("--resume", is_flag=True, help="Continue every stage from its last checkpoint in output_dir.")
@click.option("--stage", "stages", multiple=True, metavar="NAME",
              help="Train only this stage (repeatable); stages it loads from must have been exported.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar (default: on when stderr is a terminal); one line per epoch is printed either way.")
@click.option("--nproc", type=int, default=None, metavar="N",
              help="Train data-parallel in N processes on this machine (one per GPU on CUDA); not under torchrun.")
@click.option("--backend", default=None, metavar="NAME",
              help="torch.distributed backend: gloo or nccl (default: nccl on CUDA, gloo on the CPU).")
@force_option
def train(recipe: str, overrides: tuple[str, ...], resume: bool, stages: tuple[str, ...], progress: bool | None,
          nproc: int | None, backend: str | None, force: bool) -> None:
    """Train the stages of RECIPE (a YAML file); checkpoints and CSV logs go to its output_dir.
    Under torchrun (or with --nproc), every process trains a share of each batch (docs/training.md)."""
    # Imported here, not at the top: training loads torch, which `jsccflow --help` must not.
    from sdjscc_phy.training import train as run_training

    show_progress = sys.stderr.isatty() if progress is None else progress
    results = run_training(recipe, list(overrides), resume=resume, progress=show_progress, only=stages, report=True,
                           force=force, nproc=nproc, backend=backend)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 prints the table
        return
    table = Table(title=f"{recipe}: final validation metrics")
    table.add_column("stage")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for stage, metrics in results.items():
        for name, value in metrics.items():
            table.add_row(stage, name, f"{value:.6g}")
    Console().print(table)
