"""Training: recipes, the trainer that optimises a flowgraph's blocks, its checkpoints, and the loss math."""

from sdjscc_phy.training.checkpoint import load_checkpoint
from sdjscc_phy.training.recipe import load_recipe
from sdjscc_phy.training.trainer import Trainer, train

__all__ = ["Trainer", "load_checkpoint", "load_recipe", "train"]
