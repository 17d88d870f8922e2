"""Symbol file sink: received complex symbols recorded as a SigMF dataset (cf32_le)."""

from __future__ import annotations

from sdjscc_phy.core.block import Batch, BatchContext, Block
from sdjscc_phy.core.params import Param
from sdjscc_phy.core.ports import Port
from sdjscc_phy.errors import JsccflowError
from sdjscc_phy.io.paths import check_output_file
from sdjscc_phy.lazy import lazy_import

sigmf = lazy_import("sdjscc_phy.io.sigmf")


class SymbolFileSink(Block):
    """Writes complex symbols, item after item, to `path`.sigmf-data/-meta (written only if the run completes)."""

    type_name = "symbol_file_sink"
    inputs = (Port("symbols", "complex64", ("S",), "complex baseband symbols"),)
    params = (
        Param("path", "path", doc="recording base name (.sigmf-data / .sigmf-meta are appended)"),
        Param("sample_rate", "float", 1.0, low=0.0, unit="Hz", doc="core:sample_rate (1.0 = one sample per symbol)"),
        Param("description", "str", "", doc="core:description"),
        Param("overwrite", "bool", False, doc="replace an existing recording"),
        Param("annotate_items", "bool", False, doc="one SigMF annotation per item, labelled with its index"),
    )

    def check_params(self) -> list[str]:
        names = sigmf.get_sigmf_filenames(self.p.path)
        for key in ("data_fn", "meta_fn"):
            try:
                check_output_file(names[key], "path", force=self.p.overwrite,
                                  force_hint="set overwrite: true")
            except JsccflowError as err:
                return [f"parameter 'path': {err}"]
        return []

    def setup(self, ctx) -> None:
        self._writer = sigmf.SigMFWriter(self.p.path, sample_rate=self.p.sample_rate,
                                   description=self.p.description or None, overwrite=self.p.overwrite)

    def process_host(self, inputs: Batch, ctx: BatchContext) -> Batch:
        symbols = inputs["symbols"].detach().cpu()
        labels = [f"item {ctx.start + i}" for i in range(ctx.batch_size)] if self.p.annotate_items else None
        self._writer.write(symbols, label=labels)
        return {}

    def close(self, completed: bool) -> None:
        writer = getattr(self, "_writer", None)
        if writer is None:
            return
        if completed:
            writer.close()
        else:
            writer.abort()
