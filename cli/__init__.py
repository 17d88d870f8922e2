"""The ``jsccflow`` command line (installed as ``sdjscc_phy.cli``)."""
