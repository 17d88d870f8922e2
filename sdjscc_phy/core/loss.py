"""Loss sinks: blocks whose output is a term of the training objective.

A loss block declares its input ports and parameters like any block and implements :meth:`LossBlock.loss`
(a scalar tensor for the batch: per-item losses averaged, or a batch-level loss such as NT-Xent or
MCR²). The trainer minimises the sum of ``weight`` x loss over the flowgraph's loss blocks; a run or a
validation pass reports each loss block's mean over the batches as metric ``loss_<block id>``.
Register a plugin loss through the ``jsccflow.blocks`` entry point like any block.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from sdjscc_phy.core.block import Batch, BatchContext, Block
from sdjscc_phy.core.params import Param

if TYPE_CHECKING:
    import torch

WEIGHT = Param("weight", "float", 1.0, low=0.0, doc="factor of this loss in the training objective")


class LossBlock(Block):
    """Base class of loss sinks. Subclasses put :data:`WEIGHT` first in ``params`` and implement ``loss``."""

    outputs: ClassVar[tuple] = ()
    # The loss is a mean of per-item terms, so the share-weighted sum of the losses of a batch's shares
    # (data-parallel training) is the batch's loss. False for batch-level losses (NT-Xent, MCR²).
    per_item: ClassVar[bool] = True

    def loss(self, inputs: Batch, ctx: BatchContext) -> torch.Tensor:
        """The (unweighted) loss of one batch, a scalar tensor."""
        raise NotImplementedError

    def setup(self, ctx) -> None:
        self._sum, self._count = 0.0, 0
        self.value: torch.Tensor | None = None

    def process_torch(self, inputs: Batch, ctx: BatchContext) -> Batch:
        self.value = self.loss(inputs, ctx).float()
        self._sum += float(self.value.detach()) * ctx.batch_size
        self._count += ctx.batch_size
        return {}

    def objective(self) -> torch.Tensor:
        """``weight`` x the last batch's loss (what the trainer sums)."""
        return self.p.weight * self.value

    def reset(self) -> None:
        """Forget the accumulated mean (the trainer validates with the same block objects every epoch)."""
        self._sum, self._count = 0.0, 0

    def results(self) -> dict[str, float]:
        return {f"loss_{self.id}": self._sum / self._count} if self._count else {}
