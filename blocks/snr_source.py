"""SNR source: one Es/N0 per item, for channels' ``snr_db`` port and the multi-task gate (SNR-range training)."""

from __future__ import annotations

from sdjscc_phy.core.block import Batch, BatchContext, Block
from sdjscc_phy.core.params import Param
from sdjscc_phy.core.ports import Port, Shape
from sdjscc_phy.lazy import lazy_import

torch = lazy_import("torch")


class SnrSource(Block):
    """Draws one SNR (Es/N0 per complex symbol, dB) per item: uniform in [low_db, high_db], or from ``values``."""

    type_name = "snr_source"
    outputs = (Port("snr_db", "float32", (), "Es/N0 per complex symbol, dB"),)
    params = (
        Param("low_db", "float", 0.0, low=-50.0, high=100.0, unit="dB", doc="lower end of the uniform range"),
        Param("high_db", "float", 20.0, low=-50.0, high=100.0, unit="dB", doc="upper end of the uniform range"),
        Param("values", "list[float]", None, low=-50.0, high=100.0, nullable=True, unit="dB",
              doc="draw uniformly from these SNRs instead of the range"),
    )

    def check_params(self) -> list[str]:
        problems = []
        if self.p.low_db > self.p.high_db:
            problems.append(f"parameter 'high_db': must be >= low_db ({self.p.low_db}); got {self.p.high_db}")
        if self.p.values is not None and not self.p.values:
            problems.append("parameter 'values': give at least one SNR, or null for the range")
        return problems

    def infer_shapes(self, input_shapes: dict[str, Shape]) -> dict[str, Shape]:
        return {"snr_db": ()}

    def process_host(self, inputs: Batch, ctx: BatchContext) -> Batch:
        # drawn from this block's (seed, epoch, batch) stream: a resumed training run draws the same SNRs
        rng = ctx.batch_rng
        if self.p.values is not None:
            snr = ctx.own_rows(lambda n: rng.choice(self.p.values, size=n))
        else:
            snr = ctx.own_rows(lambda n: rng.uniform(self.p.low_db, self.p.high_db, size=n))
        return {"snr_db": torch.from_numpy(snr).float().to(ctx.device)}
