"""Where shipped checkpoints live, and how a name or a path selects one."""

from __future__ import annotations

from pathlib import Path

CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints"


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """A shipped checkpoint by name (``sdjscc_awgn`` -> ``sdjscc_phy/checkpoints/sdjscc_awgn.pt``) or a path."""
    shipped = CHECKPOINT_DIR / f"{name_or_path}.pt"
    return shipped if shipped.is_file() else Path(name_or_path).expanduser()


def shipped_names() -> str:
    """Comma-separated names of the shipped checkpoints (for error messages)."""
    return ", ".join(sorted(p.stem for p in CHECKPOINT_DIR.glob("*.pt"))) or "none"
