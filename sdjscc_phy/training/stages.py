"""Stage kinds: what one step of a training recipe trains, and the registry that names them.

A recipe is a list of stages; each stage has a ``kind`` looked up in :data:`STAGE_KINDS`. The
:class:`~sdjscc_phy.training.trainer.Trainer` owns everything kinds share (optimiser, schedule, mixed
precision, progress, CSV log, checkpoints, resume, NaN guard); a kind only says how to build its modules
and data, how to make batch ``i`` of epoch ``e``, its loss, its evaluation and its export. Add a kind with::

    @register_stage("jscc_mse")
    class JsccMseStage(Stage):
        DEFAULTS = {"data": {...}, "model": {...}}
        ...
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch

from sdjscc_phy.errors import RecipeError, RegistryError

STAGE_KINDS: dict[str, type[Stage]] = {}

# Keys every stage has; the Trainer reads them. Kind-specific keys come from Stage.DEFAULTS.
COMMON_DEFAULTS: dict[str, Any] = {
    "name": None,
    "kind": None,
    "epochs": 1,
    "batch_size": 128,
    "precision": "fp32",  # or "bf16": torch.autocast on the training device
    "optimizer": {"name": "Adam", "lr": 1e-3},  # replaced as a whole, never merged: kwargs differ by name
    "schedule": {"kind": "constant"},  # likewise
    "checkpoint_every_steps": 0,  # 0: checkpoint at the end of each epoch only
    "export": None,  # path of the shipped inference checkpoint, written when the stage finishes
}
PRECISIONS = ("fp32", "bf16")


def register_stage(kind: str):
    """Class decorator adding a :class:`Stage` subclass to :data:`STAGE_KINDS` under ``kind``."""

    def decorate(cls: type[Stage]) -> type[Stage]:
        if kind in STAGE_KINDS:
            raise RegistryError(f"stage kind '{kind}' is already registered by {STAGE_KINDS[kind].__qualname__}")
        cls.kind = kind
        STAGE_KINDS[kind] = cls
        return cls

    return decorate


class Stage:
    """Base class of stage kinds. ``config`` is the stage's recipe section merged over the defaults.

    Subclasses set ``DEFAULTS`` (their own recipe keys with default values; nested dicts are merged
    key by key and unknown keys are recipe errors), ``PATH_KEYS`` (dotted keys holding file paths,
    resolved relative to the recipe file) and ``MONITOR`` (the metric shown in the progress bar).
    """

    kind: str = ""
    DEFAULTS: dict[str, Any] = {}
    PATH_KEYS: tuple[str, ...] = ()
    MONITOR: str = "val_loss"

    def __init__(self, config: dict, seed: int, device: torch.device | str = "cpu"):
        """``device``: where modules and batches live (the trainer resolves the recipe's ``device``)."""
        self.config = config
        self.name = config["name"]
        self.seed = seed
        self.device = torch.device(device)

    @contextlib.contextmanager
    def autocast(self):
        """Mixed-precision context of this stage (bf16 autocast on its device, or nothing for fp32)."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config["precision"] == "bf16"):
            yield

    def epoch_generator(self, epoch: int, stream: int = 0, device: torch.device | str = "cpu") -> torch.Generator:
        """A torch generator on ``device`` fixed by (seed, stage name, epoch, stream): data order and channel
        noise survive a resume. Data order uses CPU generators, so it is the same on every device."""
        name_code = sum((i + 1) * b for i, b in enumerate(self.name.encode()))
        mixed = ((self.seed * 1_000_003 + name_code) * 10_007 + epoch) * 101 + stream
        return torch.Generator(device=device).manual_seed(mixed % 2**63)

    # --- what a kind implements -----------------------------------------------------------------
    def setup(self) -> None:
        """Read data and build modules (after the trainer seeded every RNG)."""
        raise NotImplementedError

    def modules(self) -> dict[str, torch.nn.Module]:
        """Modules whose state the checkpoint holds."""
        raise NotImplementedError

    def parameter_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        """Trainable parameters by group name; ``optimizer.group_scales`` in the recipe scales a group's
        ``lr``/``weight_decay``. The default is one group, ``default``."""
        params = [p for m in self.modules().values() for p in m.parameters() if p.requires_grad]
        return {"default": params}

    def num_batches(self) -> int:
        raise NotImplementedError

    def batch(self, epoch: int, index: int) -> Any:
        """Batch ``index`` of ``epoch``; a pure function of (seed, epoch, index)."""
        raise NotImplementedError

    def training_loss(self, batch: Any) -> torch.Tensor:
        """Scalar loss of one batch (called inside :meth:`autocast`, modules in train mode)."""
        raise NotImplementedError

    def evaluate(self) -> dict[str, float]:
        """Validation metrics after an epoch (must restore train mode)."""
        return {}

    def export(self, path: Path, metadata: dict) -> None:
        """Write the shipped inference checkpoint; ``metadata`` holds metrics, recipe and code version."""
        raise RecipeError(f"stage kind '{self.kind}' has no export; remove 'export' from stage '{self.name}'")
