"""Training: recipes, the stage-kind registry, the trainer and its checkpoints.

Importing this package registers the built-in stage kinds (``classifier``, ``jscc``, ``multitask``).
"""

from sdjscc_phy.training import classifier_stage, jscc_stage, multitask_stage  # noqa: F401  (register their stage kinds)
from sdjscc_phy.training.checkpoint import load_checkpoint
from sdjscc_phy.training.recipe import load_recipe
from sdjscc_phy.training.stages import STAGE_KINDS, Stage, register_stage
from sdjscc_phy.training.trainer import Trainer, train

__all__ = ["STAGE_KINDS", "Stage", "Trainer", "load_checkpoint", "load_recipe", "register_stage", "train"]
