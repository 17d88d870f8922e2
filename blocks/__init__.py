"""Built-in blocks (installed as ``sdjscc_phy.blocks``), registered through the ``jsccflow.blocks`` entry point."""

from sdjscc_phy.blocks.binarizer import Binarizer
from sdjscc_phy.blocks.bit_source import BitSource

BUILTIN_BLOCKS = [BitSource, Binarizer]
