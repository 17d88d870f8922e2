"""A drawing of a validated flowgraph: blocks with their ports, and the connections between them.

Layered layout, left to right: a block's column is the length of the longest path from a source to it,
so every connection runs rightwards. Within a column blocks are ordered by the mean height of the
ports that feed them (one barycentre pass), which removes most crossings in the chains flowgraphs
are. Connections are drawn orthogonally: between neighbouring columns they turn in the gap between
the columns; longer ones drop to a lane of their own below every block, so no line crosses a block.
Each port is labelled with its dtype and the item shape validation resolved. Drawn with matplotlib
only (no Graphviz), to SVG (text kept as text) or PNG.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the non-interactive backend)
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402
from matplotlib.path import Path as MplPath  # noqa: E402

from sdjscc_phy.core.flowgraph import Flowgraph  # noqa: E402
from sdjscc_phy.core.ports import format_shape  # noqa: E402
from sdjscc_phy.errors import JsccflowError  # noqa: E402
from sdjscc_phy.io.results import write_bytes_atomic  # noqa: E402

FORMATS = ("svg", "png")
# Layout in inches (1 data unit = 1 inch, so text sizes in points stay readable at any graph size).
BOX_WIDTH, COLUMN_GAP, ROW_GAP = 2.6, 1.0, 0.35
HEADER, PORT_PITCH, PAD = 0.5, 0.28, 0.12
LANE_PITCH, TRACKS = 0.14, 6  # lanes below the blocks; vertical tracks per column gap


@dataclass
class _Box:
    block_id: str
    inputs: list[str]
    outputs: list[str]
    column: int = 0
    x: float = 0.0
    y: float = 0.0  # top edge

    @property
    def height(self) -> float:
        return HEADER + PORT_PITCH * max(len(self.inputs), len(self.outputs), 1) + PAD

    def port_y(self, index: int) -> float:
        return self.y - HEADER - PORT_PITCH * (index + 0.5)


def layout(fg: Flowgraph) -> dict[str, _Box]:
    """Column and position of every block (topological order is ``fg.blocks``' order)."""
    depth: dict[str, int] = {}
    for block_id in fg.blocks:
        feeders = [src for src, _ in fg.upstream(block_id).values()]
        depth[block_id] = 1 + max((depth[f] for f in feeders), default=-1)
    # Unconnected optional inputs are left out: a metric sink declares ten and a flowgraph uses two.
    boxes = {block_id: _Box(block_id,
                            [p.name for p in type(block).inputs if not p.optional or p.name in fg.upstream(block_id)],
                            [p.name for p in type(block).outputs])
             for block_id, block in fg.blocks.items()}
    columns: dict[int, list[str]] = {}
    for block_id in fg.blocks:
        columns.setdefault(depth[block_id], []).append(block_id)
    for column, members in sorted(columns.items()):
        members.sort(key=lambda block_id: _feeding_depth(fg, boxes, block_id))
        top = 0.0
        for block_id in members:
            box = boxes[block_id]
            box.column, box.x, box.y = column, column * (BOX_WIDTH + COLUMN_GAP), top
            top -= box.height + ROW_GAP
    return boxes


def _feeding_depth(fg: Flowgraph, boxes: dict[str, _Box], block_id: str) -> float:
    """Mean depth below the top of the output ports feeding ``block_id`` (0 for a source)."""
    depths = [-boxes[src].port_y(boxes[src].outputs.index(port)) for src, port in fg.upstream(block_id).values()]
    return sum(depths) / len(depths) if depths else 0.0


def drawing_format(out: str) -> str:
    """``svg`` or ``png`` from the suffix of ``out``; JsccflowError for any other."""
    kind = Path(out).suffix.lower().lstrip(".")
    if kind not in FORMATS:
        raise JsccflowError(f"{out}: a drawing is .svg or .png (chosen by the suffix); got '{Path(out).suffix}'")
    return kind


def draw_flowgraph(fg: Flowgraph, out: str) -> None:
    """Draw ``fg`` to ``out`` (``.svg`` or ``.png``, chosen by the suffix); written atomically."""
    kind = drawing_format(out)
    boxes = layout(fg)
    right = max(b.x for b in boxes.values()) + BOX_WIDTH
    lowest_box = min(b.y - b.height for b in boxes.values())
    routes, lanes = [], 0
    for index, conn in enumerate(fg.connections):
        src, dst = boxes[conn.src], boxes[conn.dst]
        start = (src.x + BOX_WIDTH, src.port_y(src.outputs.index(conn.src_port)))
        end = (dst.x, dst.port_y(dst.inputs.index(conn.dst_port)))
        jog = COLUMN_GAP * (0.2 + 0.6 * (index % TRACKS) / TRACKS)  # this connection's track in the gap
        if dst.column - src.column == 1:
            # Neighbouring columns: straight across, or one jog in the gap (no zero-length segments,
            # which would break the arrow head's direction).
            vertices = [start, end] if start[1] == end[1] else [start, (start[0] + jog, start[1]),
                                                                 (start[0] + jog, end[1]), end]
        else:
            lanes += 1
            lane = lowest_box - ROW_GAP / 2 - LANE_PITCH * lanes
            vertices = [start, (start[0] + jog, start[1]), (start[0] + jog, lane), (end[0] - jog, lane),
                        (end[0] - jog, end[1]), end]
        routes.append((conn, vertices))
    bottom = lowest_box - ROW_GAP / 2 - LANE_PITCH * lanes
    margin = 0.3
    with plt.rc_context({"svg.fonttype": "none", "font.size": 8}):
        fig = plt.figure(figsize=(right + 2 * margin, -bottom + 2 * margin))
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_xlim(-margin, right + margin)
        ax.set_ylim(bottom - margin, margin)
        ax.axis("off")
        for block_id, box in boxes.items():
            _draw_box(ax, fg, box, type(fg.blocks[block_id]).type_name)
        for conn, vertices in routes:
            ax.add_patch(FancyArrowPatch(path=MplPath(vertices), arrowstyle="-|>", mutation_scale=9, lw=0.9,
                                         color="#444444", gid=f"connection {conn}", zorder=3))
        buffer = io.BytesIO()
        fig.savefig(buffer, format=kind, dpi=150)
        plt.close(fig)
    write_bytes_atomic(out, buffer.getvalue())


def _draw_box(ax, fg: Flowgraph, box: _Box, type_name: str) -> None:
    ax.add_patch(FancyBboxPatch((box.x, box.y - box.height), BOX_WIDTH, box.height, boxstyle="round,pad=0,rounding_size=0.08",
                                facecolor="#eef3fb", edgecolor="#3c5a8a", lw=1.0, gid=f"block {box.block_id}", zorder=2))
    ax.text(box.x + BOX_WIDTH / 2, box.y - 0.17, box.block_id, ha="center", va="center", weight="bold", zorder=4)
    ax.text(box.x + BOX_WIDTH / 2, box.y - 0.36, type_name, ha="center", va="center", style="italic",
            color="#555555", zorder=4)
    cls = type(fg.blocks[box.block_id])
    for index, name in enumerate(box.inputs):
        shape = format_shape(fg.input_shapes[box.block_id][name])
        ax.text(box.x + 0.06, box.port_y(index), f"{name}: {cls.input_port(name).dtype} {shape}", ha="left",
                va="center", fontsize=6.5, zorder=4)
    for index, name in enumerate(box.outputs):
        port = cls.output_port(name)
        ax.text(box.x + BOX_WIDTH - 0.06, box.port_y(index),
                f"{name}: {port.dtype} {format_shape(fg.output_shapes[(box.block_id, name)])}",
                ha="right", va="center", fontsize=6.5, zorder=4)
