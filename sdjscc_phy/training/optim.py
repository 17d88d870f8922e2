"""Optimisers by name (every ``torch.optim`` class) and learning-rate schedules by kind.

A schedule is a factor ``f(step, total_steps)`` that multiplies each parameter group's initial learning
rate; the trainer applies it before every step, so a resumed run needs only the step count.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import torch

from sdjscc_phy.errors import RecipeError

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    name: cls
    for name, cls in vars(torch.optim).items()
    if inspect.isclass(cls) and issubclass(cls, torch.optim.Optimizer) and cls is not torch.optim.Optimizer
}


def _constant(step: int, total: int) -> float:
    return 1.0


def _linear_warmup_decay(
    step: int, total: int, warmup_fraction: float = 0.1, start_factor: float = 0.0, end_factor: float = 0.0
) -> float:
    """Linear ramp ``start_factor -> 1`` over the warm-up, then linear ``1 -> end_factor`` (one-cycle)."""
    warmup = int(total * warmup_fraction)
    if step < warmup:
        return start_factor + (1.0 - start_factor) * step / warmup
    return 1.0 + (end_factor - 1.0) * (step - warmup) / max(1, total - warmup)


def _cosine(step: int, total: int, warmup_fraction: float = 0.0, end_factor: float = 0.0) -> float:
    """Linear warm-up from 0, then cosine decay ``1 -> end_factor``."""
    warmup = int(total * warmup_fraction)
    if step < warmup:
        return step / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return end_factor + (1.0 - end_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


SCHEDULES: dict[str, Callable[..., float]] = {
    "constant": _constant,
    "linear_warmup_decay": _linear_warmup_decay,
    "cosine": _cosine,
}


def schedule_factor(config: dict, where: str) -> Callable[[int, int], float]:
    """``f(step, total_steps)`` from a recipe ``schedule`` section ``{kind: ..., <parameters>}``."""
    params = {k: v for k, v in config.items() if k != "kind"}
    kind = config.get("kind")
    if kind not in SCHEDULES:
        raise RecipeError(f"{where}: schedule.kind must be one of {tuple(SCHEDULES)}; got '{kind}'")
    fn = SCHEDULES[kind]
    allowed = list(inspect.signature(fn).parameters)[2:]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        allowed_text = ", ".join(allowed) or "none"
        raise RecipeError(f"{where}: schedule '{kind}' has no parameter '{unknown[0]}' (allowed: {allowed_text})")
    return lambda step, total: fn(step, total, **params)


def clip_grad_norm(config: dict, where: str) -> float | None:
    """The optimizer section's ``clip_grad_norm``: the gradients' global L2 norm is clipped to it before
    every step (``torch.nn.utils.clip_grad_norm_``); ``None`` (the default) clips nothing."""
    value = config.get("clip_grad_norm")
    if value is None:
        return None
    try:  # PyYAML reads '1e-3' (no dot) as a string
        number = float(value) if not isinstance(value, bool) else -1.0
    except (TypeError, ValueError):
        number = -1.0
    if not number > 0:
        raise RecipeError(f"{where}: optimizer.clip_grad_norm must be a positive number; got {value!r}")
    return number


def build_optimizer(config: dict, groups: dict[str, list[torch.nn.Parameter]], where: str) -> torch.optim.Optimizer:
    """A ``torch.optim`` optimiser from ``{name: SGD, lr: ..., <kwargs>, group_scales: {group: {key: factor}}}``.

    ``clip_grad_norm`` (read by the trainer, see :func:`clip_grad_norm`) is not an optimiser argument.
    ``group_scales`` multiplies the given hyper-parameters (e.g. ``lr``, ``weight_decay``) of one named
    parameter group; groups come from the stage's ``parameter_groups()``.
    """
    config = dict(config)
    name = config.pop("name", None)
    scales = config.pop("group_scales", None) or {}
    config.pop("clip_grad_norm", None)
    if name not in OPTIMIZERS:
        raise RecipeError(f"{where}: optimizer.name must be a torch.optim optimiser (e.g. SGD, AdamW); got '{name}'")
    unknown = sorted(set(scales) - set(groups))
    if unknown:
        raise RecipeError(f"{where}: optimizer.group_scales names group '{unknown[0]}'; groups are {tuple(groups)}")
    param_groups = []
    for group_name, params in groups.items():
        if not params:
            continue
        group = {"params": params, "group_name": group_name}
        for key, factor in (scales.get(group_name) or {}).items():
            if key not in config:
                raise RecipeError(f"{where}: optimizer.group_scales.{group_name}.{key} scales a key "
                                  "the optimizer section does not set")
            group[key] = config[key] * factor
        param_groups.append(group)
    try:
        optimizer = OPTIMIZERS[name](param_groups, **config)
    except (TypeError, ValueError) as exc:
        raise RecipeError(f"{where}: optimizer {name}: {exc}") from None
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
    return optimizer
