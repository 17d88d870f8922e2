"""``jsccflow run``, ``validate``, ``graph``, ``blocks`` and ``metrics``."""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.table import Table

from sdjscc_phy.core.flowgraph import caveats, load_flowgraph
from sdjscc_phy.core.ports import format_shape
from sdjscc_phy.core.registry import registry
from sdjscc_phy.core.scheduler import run_flowgraph
from sdjscc_phy.cli.options import force_option
from sdjscc_phy.io.paths import check_output_file
from sdjscc_phy.core.yaml_lines import load_yaml_with_lines
from sdjscc_phy.io.results import write_json_atomic
from sdjscc_phy.reference import (
    blocks_markdown, describe_blocks, describe_metrics, metrics_markdown, param_allowed, param_default,
)
from sdjscc_phy.units import display_name, display_scale

_SET_HELP = "Override a variable (VAR=VALUE), a block parameter (ID.PARAM=VALUE) or an option (options.KEY=VALUE)."


@click.command()
@click.argument("flowgraph", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=_SET_HELP)
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write {flowgraph, options, metrics} as JSON.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on when stderr is a terminal).")
@force_option
def run(flowgraph: str, overrides: tuple[str, ...], output: str | None, progress: bool | None, force: bool) -> None:
    """Run FLOWGRAPH and print its metrics."""
    if output:
        check_output_file(output, "--output", force=force)
    fg = load_flowgraph(flowgraph, overrides)
    for line in caveats(fg):
        click.echo(f"warning: {line}", err=True)
    show_progress = sys.stderr.isatty() if progress is None else progress
    result = run_flowgraph(fg, progress=show_progress)
    console = Console()
    stopped = " (stopping rule met)" if result.stopped_early else ""
    console.print(f"{fg.options.id or flowgraph}: {result.items} items{stopped} in {result.seconds:.1f} s",
                  highlight=False)
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in result.metrics.items():
        table.add_row(display_name(name), f"{value * display_scale(name):.6g}")
    console.print(table)
    if output:
        write_json_atomic(output, {
            "flowgraph": flowgraph,
            "options": {**vars(fg.options), "variables": fg.variables, "overrides": list(overrides)},
            "items": result.items,
            "seconds": round(result.seconds, 3),
            "metrics": result.metrics,
        })


@click.command()
@click.argument("flowgraph", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=_SET_HELP)
def validate(flowgraph: str, overrides: tuple[str, ...]) -> None:
    """Check FLOWGRAPH (syntax, blocks, parameters, connections, dtypes, shapes) without running it; a training
    recipe (a file with 'stages') is checked with every flowgraph it trains, as training graphs."""
    if is_recipe(flowgraph):
        from sdjscc_phy.training.recipe import load_recipe

        recipe = load_recipe(flowgraph, overrides, check_flowgraphs=True)
        click.echo(f"{flowgraph}: OK (recipe, {len(recipe['stages'])} stages: "
                   f"{', '.join(s['name'] for s in recipe['stages'])})")
        return
    fg = load_flowgraph(flowgraph, overrides)
    click.echo(f"{flowgraph}: OK ({len(fg.blocks)} blocks, {len(fg.connections)} connections)")
    for (block_id, port), shape in fg.output_shapes.items():
        click.echo(f"  {block_id}.{port}: {type(fg.blocks[block_id]).output_port(port).dtype} {format_shape(shape)}")


@click.command()
@click.argument("flowgraph", type=click.Path(dir_okay=False))
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), metavar="FILE.svg|FILE.png",
              help="Where to draw it; the suffix picks SVG or PNG.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=_SET_HELP)
@force_option
def graph(flowgraph: str, output: str, overrides: tuple[str, ...], force: bool) -> None:
    """Draw FLOWGRAPH as SVG or PNG.

    Blocks with their ports (dtype, validated item shape) and the connections, laid out left to right.
    """
    from sdjscc_phy.plots.flowgraph import draw_flowgraph, drawing_format  # matplotlib: only this command needs it

    drawing_format(output)  # refuse a wrong suffix or an existing file before loading (which may load models)
    check_output_file(output, "--output", force=force)
    fg = load_flowgraph(flowgraph, overrides)
    draw_flowgraph(fg, output)
    click.echo(f"{flowgraph}: {len(fg.blocks)} blocks, {len(fg.connections)} connections -> {output}")


def is_recipe(path: str) -> bool:
    """Whether a YAML file is a training recipe (top-level 'stages') rather than a flowgraph."""
    data = load_yaml_with_lines(path)
    return isinstance(data, dict) and "stages" in data and "blocks" not in data


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--markdown", is_flag=True, help="The Markdown block reference (docs/blocks.md).")
def blocks(as_json: bool, markdown: bool) -> None:
    """List every registered block with its ports and parameters."""
    described = describe_blocks(registry().values())
    if as_json:
        click.echo(json.dumps(described, indent=2))
        return
    if markdown:
        click.echo(blocks_markdown(described), nl=False)
        return
    console = Console(soft_wrap=True)
    for block in described:
        console.print(f"[bold]{block['type']}[/bold] ({', '.join(block['paths'])}; on a GPU: {block['on_gpu']}): "
                      f"{block['doc']}")
        for direction in ("inputs", "outputs"):
            for port in block[direction]:
                console.print(f"  {direction[:-1]:6} {port['name']}: {port['dtype']} {port['shape']}  {port['doc']}",
                              highlight=False)
        for param in block["params"]:
            default = "required" if param["required"] else f"default {param_default(param)}"
            allowed = param_allowed(param)
            extra = (f" choices {allowed}" if "choices" in param else f" range {allowed}") if allowed else ""
            unit = f" [{param['unit']}]" if "unit" in param else ""
            console.print(f"  param  {param['name']}: {param['type']}{unit}, {default}{extra}  {param['doc']}",
                          highlight=False, markup=False)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--markdown", is_flag=True, help="The Markdown metric reference (docs/metrics.md).")
def metrics(as_json: bool, markdown: bool) -> None:
    """List the metrics a metric_sink computes.

    Each metric's result names, unit, the sink inputs it needs and its settings.
    """
    described = describe_metrics()
    if as_json:
        click.echo(json.dumps(described, indent=2))
    elif markdown:
        click.echo(metrics_markdown(described), nl=False)
    else:
        for m in described:
            settings = f"; settings: {', '.join(m['settings'])}" if m["settings"] else ""
            unit = f" [{m['unit']}]" if m["unit"] else ""
            click.echo(f"{m['name']}{unit}: {m['description'].splitlines()[0]}")
            click.echo(f"  results: {', '.join(m['keys'])}; inputs: {', '.join(m['inputs'])}{settings}")
