"""Where shipped checkpoints live, and how a name or a path selects one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from sdjscc_phy.errors import CheckpointError
from sdjscc_phy.io.paths import is_file

CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints"


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """A shipped checkpoint by name (``sdjscc_awgn`` -> ``sdjscc_phy/checkpoints/sdjscc_awgn.pt``) or a path."""
    shipped = CHECKPOINT_DIR / f"{name_or_path}.pt"
    return shipped if is_file(shipped) else Path(name_or_path).expanduser()


def shipped_names() -> str:
    """Comma-separated names of the shipped checkpoints (for error messages)."""
    return ", ".join(sorted(p.stem for p in CHECKPOINT_DIR.glob("*.pt"))) or "none"


def check_fields(payload: dict, fields: dict[str, type | tuple[type, ...]], where: str) -> None:
    """CheckpointError unless every key of ``fields`` is in ``payload`` with a value of its type; a
    ``state_dict`` field must map parameter names to tensors. A checkpoint with the right format tag but
    wrong fields is corrupt or forged: it gets one line, not a traceback deep in model code."""
    for key, kind in fields.items():
        if key not in payload:
            raise CheckpointError(f"{where} has no '{key}' field")
        if not isinstance(payload[key], kind):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise CheckpointError(f"{where}: field '{key}' must be a {names}; got {type(payload[key]).__name__}")
    state = payload.get("state_dict")
    if "state_dict" in fields and not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f"{where}: field 'state_dict' must map parameter names to tensors")


def load_export(name_or_path: str | Path, export_format: str, kind: str, build: Callable[[dict], nn.Module],
                map_location: str | torch.device = "cpu",
                fields: dict[str, type | tuple[type, ...]] | None = None) -> tuple[nn.Module, dict]:
    """Load an exported inference checkpoint (``weights_only``): the module ``build(payload)`` makes,
    with fp32 weights in eval mode on ``map_location``, and the payload without its state dict. ``kind``
    names the model in errors; ``fields`` are the payload fields ``build`` and the caller read, with their
    types (``state_dict`` and a dict ``config`` are always checked); every failure is a one-line
    CheckpointError."""
    path = resolve_checkpoint(name_or_path)
    if not is_file(path):
        raise CheckpointError(f"{kind} checkpoint '{name_or_path}' is neither a file nor a shipped name "
                              f"({shipped_names()})")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for truncated/foreign files
        raise CheckpointError(f"{kind} checkpoint '{path}' is unreadable: {type(exc).__name__}") from None
    if not isinstance(payload, dict) or payload.get("format") != export_format:
        raise CheckpointError(f"'{path}' is not a jsccflow {kind} checkpoint")
    check_fields(payload, {"config": dict, "state_dict": dict, **(fields or {})}, f"{kind} checkpoint '{path}'")
    try:
        module = build(payload)
        module.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()})
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{kind} checkpoint '{path}' does not match its model: {first_line}") from None
    return module.to(map_location).eval(), {k: v for k, v in payload.items() if k != "state_dict"}
