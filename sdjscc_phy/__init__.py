"""jsccflow: a streaming PHY simulator for semantic communications (SD-JSCC and baselines).

``sdjscc_phy.run(flowgraph, overrides, **options)`` runs a flowgraph (a path, YAML text or a mapping)
and ``sdjscc_phy.load_flowgraph`` validates one; see docs/python-api.md.
"""

__version__ = "0.1.0"

from sdjscc_phy.api import RunResult, load_flowgraph, run  # noqa: E402  (after __version__, which submodules read)

__all__ = ["RunResult", "__version__", "load_flowgraph", "run"]
