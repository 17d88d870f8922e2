"""The SD-JSCC quantizer (paper eq. 14) on the torch path."""

from __future__ import annotations

import torch


def binarize_straight_through(e: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """``q = 1 if e > threshold else 0`` (eq. 14); the backward pass is the identity (straight-through)."""
    hard = (e > threshold).to(e.dtype)
    return e + (hard - e).detach()
