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
from sdjscc_phy.errors import JsccflowError

_COMMANDS = {"plot": plot, "table": table, "plot-grid": plot_grid}
_OUT_OPTIONS = ("--out", "-o")


def _argv(spec, words: list[str]) -> list[str]:
    """The full argument list of one figure line: its input first, output paths under the results folder."""
    name, *rest = words
    source = spec.path if name == "plot-grid" else str(Path(spec.output) / "results.csv")
    args = [os.path.abspath(source)]
    after_out = False
    for word in rest:
        if after_out:
            word = os.path.join(spec.output, word)
        elif "=" in word and word.split("=", 1)[0] in _OUT_OPTIONS:
            option, value = word.split("=", 1)
            word = f"{option}={os.path.join(spec.output, value)}"
        after_out = word in _OUT_OPTIONS
        args.append(word)
    return [*args, "--force"]


def check_figures(spec) -> None:
    """Every ``figures:`` line of ``spec`` parses as its command would (before any long work); one
    ``file:line:`` error per bad line."""
    problems = []
    for words, line in spec.figures:
        command = _COMMANDS[words[0]]
        try:
            command.make_context(words[0], _argv(spec, words), resilient_parsing=False).close()
        except click.UsageError as err:
            problems.append(f"{spec.path}:{line or 0}: figures: {' '.join(words)}: {err.format_message()}")
    if problems:
        raise JsccflowError("\n".join(problems))


def make_figures(spec) -> None:
    """Run every ``figures:`` line of ``spec`` on its results (each command echoes the files it writes)."""
    for words, _ in spec.figures:
        command = _COMMANDS[words[0]]
        with command.make_context(words[0], _argv(spec, words)) as ctx:
            command.invoke(ctx)


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
