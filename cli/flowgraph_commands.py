"""``jsccflow run``, ``jsccflow validate`` and ``jsccflow blocks``."""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.table import Table

from sdjscc_phy.core.flowgraph import load_flowgraph
from sdjscc_phy.core.ports import format_shape
from sdjscc_phy.core.registry import registry
from sdjscc_phy.core.scheduler import run_flowgraph
from sdjscc_phy.io.results import write_json_atomic

_SET_HELP = "Override a variable (VAR=VALUE), a block parameter (ID.PARAM=VALUE) or an option (options.KEY=VALUE)."


@click.command()
@click.argument("flowgraph", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=_SET_HELP)
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write {flowgraph, options, metrics} as JSON.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on when stderr is a terminal).")
def run(flowgraph: str, overrides: tuple[str, ...], output: str | None, progress: bool | None) -> None:
    """Run FLOWGRAPH and print its metrics."""
    fg = load_flowgraph(flowgraph, overrides)
    show_progress = sys.stderr.isatty() if progress is None else progress
    result = run_flowgraph(fg, progress=show_progress)
    console = Console()
    console.print(f"{fg.options.id or flowgraph}: {result.items} items in {result.seconds:.1f} s", highlight=False)
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in result.metrics.items():
        table.add_row(name, f"{value:.6g}")
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
    """Check FLOWGRAPH (syntax, blocks, parameters, connections, dtypes, shapes) without running it."""
    fg = load_flowgraph(flowgraph, overrides)
    click.echo(f"{flowgraph}: OK ({len(fg.blocks)} blocks, {len(fg.connections)} connections)")
    for (block_id, port), shape in fg.output_shapes.items():
        click.echo(f"  {block_id}.{port}: {type(fg.blocks[block_id]).output_port(port).dtype} {format_shape(shape)}")


def describe_blocks() -> list[dict]:
    """Every registered block: type, doc, paths, ports and parameters (what ``blocks --json`` prints)."""
    out = []
    for name, cls in sorted(registry().items()):
        out.append({
            "type": name,
            "doc": cls.doc(),
            "paths": list(cls.available_paths()),
            "inputs": [{"name": p.name, "dtype": p.dtype, "shape": format_shape(p.shape), "optional": p.optional,
                        "doc": p.doc} for p in cls.inputs],
            "outputs": [{"name": p.name, "dtype": p.dtype, "shape": format_shape(p.shape), "doc": p.doc}
                        for p in cls.outputs],
            "params": [p.describe() for p in cls.params],
        })
    return out


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def blocks(as_json: bool) -> None:
    """List every registered block with its ports and parameters."""
    described = describe_blocks()
    if as_json:
        click.echo(json.dumps(described, indent=2))
        return
    console = Console(soft_wrap=True)
    for block in described:
        console.print(f"[bold]{block['type']}[/bold] ({', '.join(block['paths'])}): {block['doc']}")
        for direction in ("inputs", "outputs"):
            for port in block[direction]:
                console.print(f"  {direction[:-1]:6} {port['name']}: {port['dtype']} {port['shape']}  {port['doc']}",
                              highlight=False)
        for param in block["params"]:
            default = "required" if param["required"] else f"default {param['default']!r}"
            extra = f" choices {param['choices']}" if "choices" in param else ""
            if "range" in param:
                low = "-inf" if param["range"][0] is None else param["range"][0]
                high = "inf" if param["range"][1] is None else param["range"][1]
                extra += f" range [{low}, {high}]"
            unit = f" [{param['unit']}]" if "unit" in param else ""
            console.print(f"  param  {param['name']}: {param['type']}{unit}, {default}{extra}  {param['doc']}",
                          highlight=False, markup=False)
