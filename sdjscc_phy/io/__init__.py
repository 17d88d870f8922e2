"""Reading and writing recordings: SigMF files of channel symbols."""

__all__ = ["SigMFWriter"]


def __getattr__(name: str):
    # Deferred: the SigMF and JSON-schema packages cost a tenth of a second to import, and
    # ``sdjscc_phy.io.results`` (used by every command) must not pay for them.
    if name == "SigMFWriter":
        from sdjscc_phy.io.sigmf import SigMFWriter
        return SigMFWriter
    raise AttributeError(f"module 'sdjscc_phy.io' has no attribute {name!r}")
