"""Which torch devices exist here: one check shared by validation and running, so ``validate`` refuses
what ``run`` would refuse."""

from __future__ import annotations

import re

from sdjscc_phy.core.yaml_lines import brief

DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d{1,3})?)$")


def device_problem(name: str) -> str | None:
    """Why ``name`` (auto, cpu, cuda, cuda:N) cannot be used on this machine, or None when it can."""
    if not isinstance(name, str) or not DEVICE_RE.match(name):
        return f"must be auto, cpu, cuda or cuda:N; got {brief(name)}"
    if not name.startswith("cuda"):
        return None
    import torch

    if not torch.cuda.is_available():
        return f"'{name}' requested but no CUDA device is available"
    index = int(name.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        return f"'{name}' requested but this machine has {torch.cuda.device_count()} CUDA device(s)"
    return None
