"""Training recipes: YAML files naming the stages to train, with ``--set`` overrides and validation.

Top level: ``seed`` (determines every random stream), ``output_dir`` (checkpoints and CSV logs, one
sub-folder per stage), optional ``num_threads``, ``device`` (``auto``: the GPU when present, ``cpu``,
``cuda``, ``cuda:N``) and ``stages`` (a list; see
:mod:`sdjscc_phy.training.stages`). Relative paths resolve against the recipe file's folder.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

from sdjscc_phy.errors import RecipeError
from sdjscc_phy.training.stages import COMMON_DEFAULTS, PRECISIONS, STAGE_KINDS

TOP_DEFAULTS: dict[str, Any] = {"seed": 0, "output_dir": None, "num_threads": None, "device": "auto", "stages": None}


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Read a recipe YAML, apply ``KEY=VALUE`` overrides (dotted keys) and validate it.

    Returns the normalised recipe: every stage merged over its defaults, paths absolute. A list element
    is addressed by index or, for stages, by name: ``stages.classifier.epochs=1``.
    """
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe '{path}' does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise RecipeError(f"recipe '{path}' is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"recipe '{path}' must be a mapping with 'stages'")
    if isinstance(raw.get("stages"), list):  # YAML aliases (&data / *data) share one object between stages:
        raw["stages"] = [copy.deepcopy(stage) for stage in raw["stages"]]  # an override must change one stage
    for item in overrides:
        apply_override(raw, item, str(path))
    return normalise_recipe(raw, path.resolve().parent, str(path))


def apply_override(recipe: dict, item: str, where: str = "recipe") -> None:
    """Set ``recipe[a][b]... = value`` from ``'a.b...=value'``; the value is parsed as YAML."""
    if "=" not in item:
        raise RecipeError(f"{where}: override '{item}' must look like KEY=VALUE")
    key, text = item.split("=", 1)
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise RecipeError(f"{where}: override '{item}' has a value that is not valid YAML") from None
    parts = key.strip().split(".")
    node = recipe
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, list):
            index = _list_index(node, part)
            if index is None:
                raise RecipeError(f"{where}: override '{key}': no element '{part}' in '{'.'.join(parts[:depth])}'")
            if last:
                node[index] = value
            node = node[index]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise RecipeError(f"{where}: override '{key}': '{'.'.join(parts[:depth])}' is not a mapping or list")


def _list_index(node: list, part: str) -> int | None:
    if part.lstrip("-").isdigit():
        index = int(part)
        return index if -len(node) <= index < len(node) else None
    names = [i for i, item in enumerate(node) if isinstance(item, dict) and item.get("name") == part]
    return names[0] if names else None


def _merge(defaults: dict, given: dict, prefix: str, where: str) -> dict:
    """``given`` over ``defaults``, recursing into dict-valued defaults; unknown keys are errors."""
    out = copy.deepcopy(defaults)
    for key, value in given.items():
        if key not in defaults:
            allowed = ", ".join(sorted(defaults))
            raise RecipeError(f"{where}: unknown key '{prefix}{key}' (allowed: {allowed})")
        if isinstance(defaults[key], dict) and defaults[key] and key not in ("optimizer", "schedule"):
            if not isinstance(value, dict):
                raise RecipeError(f"{where}: '{prefix}{key}' must be a mapping")
            out[key] = _merge(defaults[key], value, f"{prefix}{key}.", where)
        else:
            out[key] = value
    return out


def resolve_path(value: str | None, base: Path) -> str | None:
    """Absolute path of ``value`` (``~`` expanded; relative to ``base``); ``None`` stays ``None``."""
    if value is None:
        return None
    p = Path(str(value)).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def get_dotted(d: dict, dotted: str):
    """``d[a][b]...`` for ``dotted = 'a.b...'``."""
    for part in dotted.split("."):
        d = d[part]
    return d


def set_dotted(d: dict, dotted: str, value) -> None:
    """``d[a][b]... = value`` for ``dotted = 'a.b...'``."""
    *head, last = dotted.split(".")
    for part in head:
        d = d[part]
    d[last] = value


def normalise_recipe(raw: dict, base: Path, where: str = "recipe") -> dict:
    """Validate a recipe mapping and fill defaults; paths resolve against ``base``."""
    recipe = _merge(TOP_DEFAULTS, raw, "", where)
    if not isinstance(recipe["seed"], int) or isinstance(recipe["seed"], bool):
        raise RecipeError(f"{where}: seed must be an integer; got {recipe['seed']!r}")
    if not recipe["output_dir"]:
        raise RecipeError(f"{where}: output_dir is required")
    if not (isinstance(recipe["device"], str) and re.fullmatch(r"auto|cpu|cuda(:\d+)?", recipe["device"])):
        raise RecipeError(f"{where}: device must be auto, cpu, cuda or cuda:N; got {recipe['device']!r}")
    recipe["output_dir"] = resolve_path(recipe["output_dir"], base)
    stages = recipe["stages"]
    if not isinstance(stages, list) or not stages:
        raise RecipeError(f"{where}: stages must be a non-empty list")
    out_stages, seen = [], set()
    for i, stage in enumerate(stages):
        if not isinstance(stage, dict):
            raise RecipeError(f"{where}: stages[{i}] must be a mapping")
        kind = stage.get("kind")
        if kind not in STAGE_KINDS:
            raise RecipeError(f"{where}: stages[{i}].kind must be one of {tuple(sorted(STAGE_KINDS))}; got '{kind}'")
        cls = STAGE_KINDS[kind]
        name = stage.get("name") or kind
        if name in seen:
            raise RecipeError(f"{where}: stage name '{name}' is used twice")
        seen.add(name)
        swhere = f"{where}: stage '{name}'"
        merged = _merge({**COMMON_DEFAULTS, **cls.DEFAULTS}, {**stage, "name": name}, "", swhere)
        _check_common(merged, swhere)
        merged["export"] = resolve_path(merged["export"], base)
        for key in cls.PATH_KEYS:
            set_dotted(merged, key, resolve_path(get_dotted(merged, key), base))
        out_stages.append(merged)
    recipe["stages"] = out_stages
    return recipe


def _check_common(stage: dict, where: str) -> None:
    for key in ("epochs", "batch_size"):
        v = stage[key]
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise RecipeError(f"{where}: {key} must be a positive integer; got {v!r}")
    every = stage["checkpoint_every_steps"]
    if not isinstance(every, int) or every < 0:
        raise RecipeError(f"{where}: checkpoint_every_steps must be an integer >= 0; got {every!r}")
    if stage["precision"] not in PRECISIONS:
        raise RecipeError(f"{where}: precision must be one of {PRECISIONS}; got '{stage['precision']}'")
    for key in ("optimizer", "schedule"):
        if not isinstance(stage[key], dict):
            raise RecipeError(f"{where}: {key} must be a mapping")
