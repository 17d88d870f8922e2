"""``jsccflow figures SWEEP.yaml...``: make the figures and tables a sweep file declares under ``figures:``.

A ``figures:`` line is a ``jsccflow plot``, ``table`` or ``plot-grid`` command line without its input:
``plot`` and ``table`` read the sweep's ``results.csv``, ``plot-grid`` the sweep file itself; ``--out`` /
``-o`` paths are relative to the sweep's results folder, and existing files are replaced (``--force``).
Declaring them beside the grid they read keeps one place per figure: the docs, the sweep and this
command cannot disagree on how a figure was made.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from sdjscc_phy.cli.plot import plot, plot_grid
from sdjscc_phy.cli.table import table
from sdjscc_phy.errors import JsccflowError, NothingToPairError


def _command(name: str) -> click.Command:
    # Imported here, not at the top: the sweep package loads torch, which `jsccflow --help` must not.
    from sdjscc_phy.sweep.spec import FIGURE_COMMANDS

    return dict(zip(FIGURE_COMMANDS, (plot, table, plot_grid), strict=True))[name]


def _argv(spec, words: list[str]) -> list[str]:
    """The full argument list of one figure line: its input first, output paths under the results folder."""
    from sdjscc_phy.sweep.spec import map_figure_outputs

    source = spec.path if words[0] == "plot-grid" else str(Path(spec.output) / "results.csv")
    rest = map_figure_outputs(words[1:], lambda value: os.path.join(spec.output, value))
    return [os.path.abspath(source), *rest, "--force"]


def check_figures(spec) -> None:
    """Every ``figures:`` line of ``spec`` parses as its command would (before any long work); one
    ``file:line:`` error per bad line."""
    problems = []
    for words, line in spec.figures:
        command = _command(words[0])
        try:
            command.make_context(words[0], _argv(spec, words), resilient_parsing=False).close()
        except click.UsageError as err:
            problems.append(f"{spec.path}:{line or 0}: figures: {' '.join(words)}: {err.format_message()}")
    if problems:
        raise JsccflowError("\n".join(problems))


def make_figures(spec) -> None:
    """Run every ``figures:`` line of ``spec`` on its results (each command echoes the files it writes).
    A paired table whose per-item rows are missing here is skipped with a note: its committed file stays."""
    for words, line in spec.figures:
        command = _command(words[0])
        try:
            with command.make_context(words[0], _argv(spec, words)) as ctx:
                command.invoke(ctx)
        except NothingToPairError as err:
            click.echo(f"{spec.path}:{line or 0}: figures: {' '.join(words)}: skipped, {err}", err=True)
        except JsccflowError as err:  # e.g. a column the results lack: say which line asked for it
            raise JsccflowError(f"{spec.path}:{line or 0}: figures: {' '.join(words)}: {err}") from None


@click.command()
@click.argument("sweep_files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def figures(sweep_files: tuple[str, ...]) -> None:
    """Make the figures and tables each SWEEP_FILE declares (its 'figures:' lines) from its results.

    \b
    jsccflow figures sweeps/fig4_awgn.yaml       one sweep's figures
    jsccflow figures sweeps/*.yaml               every figure of docs/results.md

    A sweep without results is skipped with a note; it is an error only when no SWEEP_FILE has results.
    """
    from sdjscc_phy.sweep import load_sweep

    specs = [load_sweep(path) for path in sweep_files]
    for spec in specs:  # every file and line checked before anything is drawn
        check_figures(spec)
    unrun = [spec for spec in specs if spec.figures and not (Path(spec.output) / "results.csv").is_file()]
    if unrun and len(unrun) == len([spec for spec in specs if spec.figures]):
        raise JsccflowError("\n".join(f"{spec.path}: no results yet; run jsccflow sweep {spec.path} first"
                                       for spec in unrun))
    for spec in specs:
        if spec in unrun:  # a glob over sweeps/ names sweeps nobody has run here: said, not fatal
            click.echo(f"{spec.path}: no results yet; skipped (run jsccflow sweep {spec.path})", err=True)
        elif spec.figures:
            make_figures(spec)
