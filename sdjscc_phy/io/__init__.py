"""Reading and writing recordings: SigMF files of channel symbols."""

from sdjscc_phy.io.sigmf import SigMFWriter

__all__ = ["SigMFWriter"]
