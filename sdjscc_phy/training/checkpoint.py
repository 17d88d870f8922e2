"""Training checkpoints: atomic writes, safe loads (``weights_only=True``), RNG state capture."""

from __future__ import annotations

import functools
import os
import random
import subprocess
from pathlib import Path

import numpy as np
import torch

import sdjscc_phy
from sdjscc_phy.errors import CheckpointError
from sdjscc_phy.models.checkpoints import check_fields

TRAIN_FORMAT = "jsccflow-train-checkpoint"
TRAIN_VERSION = 1


def atomic_torch_save(obj, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace``: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: str | Path) -> dict:
    """Load a training checkpoint with ``weights_only=True``; any problem is a one-line CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zips, foreign pickles and disallowed globals raise many types
        raise CheckpointError(f"checkpoint '{path}' is corrupt or not a torch file ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != TRAIN_FORMAT:
        raise CheckpointError(f"'{path}' is not a jsccflow training checkpoint")
    if ckpt.get("version") != TRAIN_VERSION:
        raise CheckpointError(f"checkpoint '{path}' has format version {ckpt.get('version')}; expected {TRAIN_VERSION}")
    where = f"checkpoint '{path}'"
    check_fields(ckpt, {"stage": str, "modules": dict, "optimizer": dict, "rng": dict, "state": dict,
                        "recipe": dict}, where)
    check_fields(ckpt["state"], {"epoch": int, "step_in_epoch": int, "global_step": int, "finished": bool,
                                 "history": list, "metrics": dict}, f"{where}: state")
    if not all(isinstance(m, dict) for m in ckpt["modules"].values()):
        raise CheckpointError(f"{where}: field 'modules' must map module names to state dicts")
    return ckpt


def rng_state() -> dict:
    """The global torch, numpy and python RNG states, in types ``weights_only`` loading accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": version, "state": list(py_state), "gauss": gauss},
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@functools.cache  # one git call per process, not one per checkpoint
def code_version() -> dict:
    """``sdjscc_phy.__version__`` and the git commit of the source tree (``None`` outside a checkout)."""
    commit = None
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(sdjscc_phy.__file__).parent,
                             capture_output=True, text=True, timeout=5)
        if out.returncode == 0:
            commit = out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return {"jsccflow": sdjscc_phy.__version__, "git_commit": commit}
