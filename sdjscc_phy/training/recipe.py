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

from sdjscc_phy.core.yaml_lines import brief, load_yaml_with_lines, parse_assignment, plain
from sdjscc_phy.errors import ParameterError, RecipeError
from sdjscc_phy.io.paths import is_file, name_problem
from sdjscc_phy.training.stages import COMMON_DEFAULTS, PRECISIONS, STAGE_KINDS

TOP_DEFAULTS: dict[str, Any] = {"seed": 0, "output_dir": None, "num_threads": None, "device": "auto", "stages": None}


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Read a recipe YAML, apply ``KEY=VALUE`` overrides (dotted keys) and validate it.

    Returns the normalised recipe: every stage merged over its defaults, paths absolute. A list element
    is addressed by index or, for stages, by name: ``stages.classifier.epochs=1``.
    """
    path = Path(path)
    if not is_file(path):
        raise RecipeError(f"recipe '{path}' does not exist")
    raw = plain(load_yaml_with_lines(str(path)))
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
        raise RecipeError(f"{where}: override {brief(item)} must look like KEY=VALUE")
    key, text = item.split("=", 1)
    try:
        value = plain(parse_assignment(item)[1]) if text.strip() else None
    except ParameterError as err:
        raise RecipeError(f"{where}: {err}") from None
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
    if not isinstance(recipe["seed"], int) or isinstance(recipe["seed"], bool) or not 0 <= recipe["seed"] < 2**62:
        raise RecipeError(f"{where}: seed must be an integer in [0, 2**62); got {brief(recipe['seed'])}")
    threads = recipe["num_threads"]
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= 1024):
        raise RecipeError(f"{where}: num_threads must be null or an integer in [1, 1024]; got {brief(threads)}")
    if not isinstance(recipe["output_dir"], str) or not recipe["output_dir"]:
        raise RecipeError(f"{where}: output_dir (a folder) is required; got {brief(recipe['output_dir'])}")
    if not (isinstance(recipe["device"], str) and re.fullmatch(r"auto|cpu|cuda(:\d+)?", recipe["device"])):
        raise RecipeError(f"{where}: device must be auto, cpu, cuda or cuda:N; got {brief(recipe['device'])}")
    recipe["output_dir"] = resolve_path(recipe["output_dir"], base)
    stages = recipe["stages"]
    if not isinstance(stages, list) or not stages:
        raise RecipeError(f"{where}: stages must be a non-empty list")
    out_stages, seen = [], set()
    for i, stage in enumerate(stages):
        if not isinstance(stage, dict):
            raise RecipeError(f"{where}: stages[{i}] must be a mapping")
        kind = stage.get("kind")
        if not isinstance(kind, str) or kind not in STAGE_KINDS:
            raise RecipeError(f"{where}: stages[{i}].kind must be one of {tuple(sorted(STAGE_KINDS))}; "
                              f"got {brief(kind)}")
        cls = STAGE_KINDS[kind]
        name = stage.get("name") or kind
        if name_problem(name):  # it names the stage's folder under output_dir
            raise RecipeError(f"{where}: stages[{i}].name {name_problem(name)}")
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
            raise RecipeError(f"{where}: {key} must be a positive integer; got {brief(v)}")
    every = stage["checkpoint_every_steps"]
    if not isinstance(every, int) or every < 0:
        raise RecipeError(f"{where}: checkpoint_every_steps must be an integer >= 0; got {brief(every)}")
    if stage["precision"] not in PRECISIONS:
        raise RecipeError(f"{where}: precision must be one of {PRECISIONS}; got '{stage['precision']}'")
    for key in ("optimizer", "schedule"):
        if not isinstance(stage[key], dict):
            raise RecipeError(f"{where}: {key} must be a mapping")
