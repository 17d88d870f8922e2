"""The Python API: run a flowgraph given as a file, YAML text or a mapping, and get its metrics.

    import sdjscc_phy
    result = sdjscc_phy.run("flowgraphs/qam16_awgn_ber.yaml", {"snr_db": 8.0}, max_items=2048)
    result.metrics["ber"], result.to_frame()

Errors are the command line's: ``FlowgraphError`` (``.errors`` lists every problem, each with its
``file:line``, ``<string>:line`` or ``<dict>``) and the other ``JsccflowError`` subclasses.
"""

from __future__ import annotations

from typing import Any

from sdjscc_phy.core.flowgraph import FlowgraphSource, Overrides, load_flowgraph
from sdjscc_phy.core.scheduler import RunResult, run_flowgraph


def run(flowgraph: FlowgraphSource, overrides: Overrides = None, *, progress: bool = False,
        **options: Any) -> RunResult:
    """Validate and run ``flowgraph``; returns its metrics, item count, wall time and variables.

    Args:
        flowgraph: a file path, YAML text (several lines, or one ``{...}`` line) or a mapping.
        overrides: ``{"snr_db": 5, "ch.snr_db": 5, "options.seed": 1}`` or the command line's
            ``["snr_db=5", ...]`` strings.
        progress: show a progress bar on stderr.
        **options: flowgraph options to set, e.g. ``max_items=1000, seed=1, device="cpu"``.
    """
    return run_flowgraph(load_flowgraph(flowgraph, overrides, **options), progress=progress)


__all__ = ["RunResult", "load_flowgraph", "run"]
