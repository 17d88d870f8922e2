"""``jsccflow``: run, validate and draw flowgraphs, list blocks and metrics; train models from recipes; sweep, plot and tabulate.

Every user error (a ``JsccflowError``) becomes one line per problem on stderr and exit code 2, with no
traceback; ``main(argv)`` returns the exit code so tests can call it directly.
"""

from __future__ import annotations

import sys

import click

from sdjscc_phy import __version__
from sdjscc_phy.cli.figures import figures
from sdjscc_phy.cli.flowgraph_commands import blocks, graph, metrics, run, validate
from sdjscc_phy.cli.plot import plot, plot_grid
from sdjscc_phy.cli.sweep import sweep
from sdjscc_phy.cli.table import table
from sdjscc_phy.cli.train import train
from sdjscc_phy.errors import FlowgraphError, JsccflowError

EXIT_USER_ERROR = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="jsccflow")
def cli() -> None:
    """Streaming PHY simulator for semantic communications (SD-JSCC and baselines)."""


cli.add_command(run)
cli.add_command(validate)
cli.add_command(graph)
cli.add_command(blocks)
cli.add_command(metrics)
cli.add_command(train)
cli.add_command(sweep)
cli.add_command(plot)
cli.add_command(plot_grid)
cli.add_command(table)
cli.add_command(figures)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``jsccflow`` console script; returns the exit code."""
    try:
        cli.main(args=argv, prog_name="jsccflow", standalone_mode=False)
    except FlowgraphError as err:
        for line in err.errors:
            click.echo(f"error: {line}", err=True)
        return EXIT_USER_ERROR
    except JsccflowError as err:  # a recipe reports every problem, one per line
        for line in str(err).splitlines() or [type(err).__name__]:
            click.echo(f"error: {line}", err=True)
        return EXIT_USER_ERROR
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as err:  # a bad option or argument: one line too, with where to look
        ctx = getattr(err, "ctx", None)
        hint = f" (see {ctx.command_path} --help)" if isinstance(err, click.UsageError) and ctx else ""
        click.echo(f"error: {err.format_message()}{hint}", err=True)
        return EXIT_USER_ERROR
    except click.exceptions.Exit as err:
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
