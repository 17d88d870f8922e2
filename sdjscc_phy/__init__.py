"""jsccflow: a streaming PHY simulator for semantic communications (SD-JSCC and baselines)."""

__version__ = "0.1.0"
