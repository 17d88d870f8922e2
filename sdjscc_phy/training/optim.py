"""Optimisers by name (every ``torch.optim`` class) and learning-rate schedules by kind.

A schedule is a factor ``f(step, total_steps)`` that multiplies each parameter group's initial learning
rate; the trainer applies it before every step, so a resumed run needs only the step count.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import torch

from sdjscc_phy.core.params import Param, resolve_params
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

_FACTOR_DOC = "learning-rate factor (x the optimiser's lr)"
#: Each schedule kind's parameters, declared like block parameters (types, ranges, NaN/inf refused).
SCHEDULE_PARAMS: dict[str, tuple[Param, ...]] = {
    "constant": (),
    "linear_warmup_decay": (
        Param("warmup_fraction", "float", 0.1, low=0.0, high=1.0, doc="fraction of the steps spent warming up"),
        Param("start_factor", "float", 0.0, low=0.0, doc=f"{_FACTOR_DOC} at step 0"),
        Param("end_factor", "float", 0.0, low=0.0, doc=f"{_FACTOR_DOC} at the last step"),
    ),
    "cosine": (
        Param("warmup_fraction", "float", 0.0, low=0.0, high=1.0, doc="fraction of the steps spent warming up"),
        Param("end_factor", "float", 0.0, low=0.0, doc=f"{_FACTOR_DOC} at the last step"),
    ),
}


def schedule_factor(config: dict, where: str) -> Callable[[int, int], float]:
    """``f(step, total_steps)`` from a recipe ``schedule`` section ``{kind: ..., <parameters>}``."""
    kind = config.get("kind")
    if kind not in SCHEDULES:
        raise RecipeError(f"{where}: schedule.kind must be one of {tuple(SCHEDULES)}; got '{kind}'")
    values, problems = resolve_params(SCHEDULE_PARAMS[kind], {k: v for k, v in config.items() if k != "kind"})
    if problems:
        raise RecipeError("; ".join(f"{where}: schedule '{kind}': {problem}" for problem in problems))
    fn, params = SCHEDULES[kind], vars(values)
    return lambda step, total: fn(step, total, **params)


def optimizer_argument_problems(name: str, config: dict) -> list[str]:
    """Problems of the optimiser arguments in ``config`` for ``torch.optim.<name>``: unknown names, and values
    whose type differs from the argument's default (a finite number where torch's default is a number, a
    bool where it is a bool, a list of finite numbers where it is a tuple such as Adam's ``betas``)."""
    signature = inspect.signature(OPTIMIZERS[name]).parameters
    problems = []
    for key in sorted(set(config) - {"name", "clip_grad_norm", "group_scales"}):
        if key == "params" or key not in signature:
            problems.append(f"{name} has no argument '{key}' (allowed: {', '.join(sorted(set(signature) - {'params'}))})")
            continue
        default, value = signature[key].default, config[key]
        if isinstance(default, bool) or default is None:
            ok = default is None or isinstance(value, bool)
        elif isinstance(default, (int, float)):
            ok = _finite_number(value)
        elif isinstance(default, tuple):
            ok = isinstance(value, list) and len(value) == len(default) and all(map(_finite_number, value))
        else:
            ok = True
        if not ok:
            problems.append(f"{name} argument '{key}' must be like its default {default!r}; got {value!r}")
    return problems


def _finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def clip_grad_norm(config: dict, where: str) -> float | None:
    """The optimizer section's ``clip_grad_norm``: the gradients' global L2 norm is clipped to it before
    every step (``torch.nn.utils.clip_grad_norm_``); ``None`` (the default) clips nothing."""
    value = config.get("clip_grad_norm")
    if value is None:
        return None
    if not (_finite_number(value) and value > 0):
        raise RecipeError(f"{where}: optimizer.clip_grad_norm must be a positive number; got {value!r}")
    return float(value)


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
