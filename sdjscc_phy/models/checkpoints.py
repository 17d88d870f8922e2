"""Where shipped checkpoints live, and how a name or a path selects one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from sdjscc_phy.errors import CheckpointError

CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints"


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """A shipped checkpoint by name (``sdjscc_awgn`` -> ``sdjscc_phy/checkpoints/sdjscc_awgn.pt``) or a path."""
    shipped = CHECKPOINT_DIR / f"{name_or_path}.pt"
    return shipped if shipped.is_file() else Path(name_or_path).expanduser()


def shipped_names() -> str:
    """Comma-separated names of the shipped checkpoints (for error messages)."""
    return ", ".join(sorted(p.stem for p in CHECKPOINT_DIR.glob("*.pt"))) or "none"


def load_export(name_or_path: str | Path, export_format: str, kind: str, build: Callable[[dict], nn.Module],
                map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Load an exported inference checkpoint (``weights_only``): the module ``build(payload)`` makes,
    with fp32 weights in eval mode on ``map_location``, and the payload without its state dict. ``kind``
    names the model in errors; every failure is a one-line CheckpointError."""
    path = resolve_checkpoint(name_or_path)
    if not path.is_file():
        raise CheckpointError(f"{kind} checkpoint '{name_or_path}' is neither a file nor a shipped name "
                              f"({shipped_names()})")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for truncated/foreign files
        raise CheckpointError(f"{kind} checkpoint '{path}' is unreadable: {type(exc).__name__}") from None
    if not isinstance(payload, dict) or payload.get("format") != export_format:
        raise CheckpointError(f"'{path}' is not a jsccflow {kind} checkpoint")
    try:
        module = build(payload)
        module.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()})
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{kind} checkpoint '{path}' does not match its model: {first_line}") from None
    return module.to(map_location).eval(), {k: v for k, v in payload.items() if k != "state_dict"}
