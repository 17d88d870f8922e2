"""Models a sweep trains: plans keyed by what each stage computes, the cache that holds them, stage-1 reuse.

A method with ``train: {recipe, stage, set}`` needs the export of ``stage`` from the recipe with those
overrides. A stage depends on an earlier one when one of its flowgraph ``variables`` or ``set`` values
names the earlier stage's export (its path, or its shipped name: ``codec: deepjscc_awgn``). Every stage
the target depends on gets a key: SHA-256 of its resolved configuration (everything but where files go;
its flowgraph variables as they take effect, whether set by the flowgraph, the recipe or the stage, with
1 and 1.0 alike; paths relative to the recipe, so every checkout computes the same key), its training
flowgraph's content (comments aside), the recipe-wide overrides, the seed it trains with (its own or the
recipe's, plus its position), and the keys or file digests of what it loads (also of the checkpoints a
list names, ``semantic.more_classifiers=[a, b]``). So:

- a stage whose configuration the overrides leave as the recipe has it, and whose export exists (the
  shipped ``deepjscc_awgn.pt`` for stage ``deepjscc`` of ``recipes/sdjscc_cifar10.yaml``), is reused
  as it is: changing only stage-2 parameters (``variables.tau``, ``variables.gsw_mode``) retrains only
  stage 2, from the shipped stage-1 model (the paper's procedure);
- any other stage is trained once into ``<models>/<stage>-<key>/`` (``jsccflow train`` with ``--stage``
  and its references rewired to the cached upstream export), resumably, and reused by every later point
  or sweep whose resolved stage has the same key.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from sdjscc_phy.core.flowgraph import flowgraph_fingerprint
from sdjscc_phy.core.yaml_lines import parse_assignment
from sdjscc_phy.errors import ParameterError, RecipeError
from sdjscc_phy.io.paths import is_file
from sdjscc_phy.models.checkpoints import resolve_checkpoint
from sdjscc_phy.sweep.spec import TrainSpec, file_digest

# Stage keys that say where files go or how often to checkpoint: not part of what a stage computes.
# A stage's own ``seed`` enters the key as the seed it trains with (``stage_seed``), as the recipe's does.
_FREE_KEYS = ("export", "checkpoint_every_steps", "index", "lines", "seed")


@dataclass
class StagePlan:
    """One stage of a model plan: its cache key, the export it reads or writes, and whether it trains."""

    name: str
    index: int
    key: str
    export: str
    reused: bool  # the recipe's own export, unchanged by the overrides: never trained by a sweep
    depends_on: list[str] = field(default_factory=list)  # keys of the stages it loads

    @property
    def ready(self) -> bool:
        return Path(self.export).is_file()


@dataclass
class ModelPlan:
    """The stages (in order) that produce ``train``'s checkpoint, and the recipe rewired to the cache."""

    train: TrainSpec
    recipe: dict
    stages: list[StagePlan]

    @property
    def checkpoint(self) -> str:
        return self.stages[-1].export

    @property
    def target(self) -> dict:
        return next(s for s in self.recipe["stages"] if s["name"] == self.stages[-1].name)


def plan_model(train: TrainSpec, models_dir: str) -> ModelPlan:
    """Resolve the recipe with the overrides and key each needed stage; RecipeError when it is invalid."""
    from sdjscc_phy.training import load_recipe
    from sdjscc_phy.training.recipe import stage_seed

    base = load_recipe(train.recipe, check_flowgraphs=False)
    recipe = load_recipe(train.recipe, list(train.overrides), check_flowgraphs=False)
    names = [s["name"] for s in recipe["stages"]]
    if train.stage not in names:
        raise RecipeError(f"recipe '{train.recipe}' has no stage '{train.stage}' (stages: {', '.join(names)})")
    needed = _dependencies(recipe, names.index(train.stage))
    plans: dict[int, StagePlan] = {}
    rewired = copy.deepcopy(recipe)
    same_shared = all(recipe[k] == base[k] for k in ("variables", "set"))
    for index in sorted(needed):
        config = rewired["stages"][index]
        unchanged = (same_shared and index < len(base["stages"]) and _identity(config) == _identity(base["stages"][index])
                     and stage_seed(recipe, config) == stage_seed(base, base["stages"][index]))
        inputs, depends = {}, []
        for ref, value in _values(config):
            upstream = _upstream(recipe, index, value)
            if upstream is not None:
                plan = plans[upstream]
                _set_value(config, ref, plan.export)
                inputs[ref] = plan.key
                depends.append(plan.key)
                unchanged = unchanged and plan.reused
            elif (digests := _file_digests(value)) is not None:
                inputs[ref] = digests
        identity = {"stage": _identity(config, blank=set(inputs)), "set": recipe["set"], "inputs": inputs,
                    "seed": stage_seed(recipe, config)}
        identity["stage"]["variables"] = _effective_variables(recipe, identity["stage"])
        identity["flowgraph"] = flowgraph_fingerprint(config["flowgraph"])
        portable = _portable(_canonical(identity), Path(train.recipe).parent)
        key = hashlib.sha256(json.dumps(portable, sort_keys=True, default=str).encode()).hexdigest()[:16]
        original = base["stages"][index]["export"] if index < len(base["stages"]) else None
        if unchanged and original and is_file(original):
            export, reused = original, True
        else:
            export, reused = str(Path(models_dir) / f"{config['name']}-{key}" / f"{config['name']}.pt"), False
        config["export"] = export
        plans[index] = StagePlan(config["name"], index, key, export, reused, depends)
    return ModelPlan(train, rewired, [plans[i] for i in sorted(plans)])


def _file_digests(value):
    """The content digest of the checkpoint ``value`` names (a path or a shipped name), or for a list written
    in an override (``semantic.more_classifiers=[a, b]``) its elements with each file replaced by its digest;
    None when no file is named (the value then enters the key as written)."""
    if isinstance(value, str) and is_file(resolve_checkpoint(value)):
        return file_digest(str(resolve_checkpoint(value)))
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            items = parse_assignment(f"value={value}")[1]
        except ParameterError:
            return None
        digests = [_file_digests(item) for item in items] if isinstance(items, list) else []
        if any(d is not None for d in digests):
            return [item if d is None else d for item, d in zip(items, digests)]
    return None


def _effective_variables(recipe: dict, config: dict) -> dict:
    """The values a stage's flowgraph variables take: the flowgraph's own, then the recipe's, then the
    stage's. A variable given its default value, or given in the recipe rather than the stage, trains
    the same model, so it gets the same key (Fig. 7's tau = 1 and Fig. 8's SNR_train = 5 dB share one)."""
    from sdjscc_phy.training.recipe import flowgraph_defaults

    defaults = flowgraph_defaults(config["flowgraph"])
    return defaults | {k: v for k, v in recipe["variables"].items() if k in defaults} | config["variables"]


def _canonical(value):
    """``value`` with whole floats and ints alike (``tau: 1`` and ``tau: 1.0`` set the same model)."""
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _portable(value, base: Path):
    """``value`` with absolute paths made relative to ``base`` (the recipe's folder), so a checkout
    elsewhere computes the same keys and finds the models and results recorded here."""
    if isinstance(value, dict):
        return {k: _portable(v, base) for k, v in value.items()}
    if isinstance(value, list):
        return [_portable(v, base) for v in value]
    if isinstance(value, str) and Path(value).is_absolute():
        return os.path.relpath(value, base)
    return value


def _values(config: dict) -> list[tuple[str, object]]:
    """``(reference, value)`` of a stage's flowgraph variables (``variables.NAME``) and overrides (``set.I``)."""
    refs = [(f"variables.{k}", v) for k, v in config["variables"].items()]
    return refs + [(f"set.{i}", text.partition("=")[2]) for i, text in enumerate(config["set"])]


def _set_value(config: dict, ref: str, value: str) -> None:
    kind, _, name = ref.partition(".")
    if kind == "variables":
        config["variables"][name] = value
    else:
        index = int(name)
        config["set"][index] = f"{config['set'][index].partition('=')[0]}={value}"


def _upstream(recipe: dict, index: int, value) -> int | None:
    """The earlier stage whose export ``value`` names (path or shipped name), if any."""
    if not isinstance(value, str) or not value:
        return None
    for earlier in recipe["stages"][:index]:
        export = earlier["export"]
        if export and (value == Path(export).stem or str(Path(value).expanduser().resolve()) == export):
            return earlier["index"]
    return None


def _dependencies(recipe: dict, target: int) -> set[int]:
    """``target`` and every earlier stage whose export it (transitively) loads."""
    needed, todo = set(), [target]
    while todo:
        index = todo.pop()
        if index in needed:
            continue
        needed.add(index)
        todo.extend(u for _, v in _values(recipe["stages"][index]) if (u := _upstream(recipe, index, v)) is not None)
    return needed


def _identity(config: dict, blank: set[str] = frozenset()) -> dict:
    """A stage's configuration without the keys that do not change what it computes; loaded checkpoints
    (``blank`` references) enter the key by content, not by where they lie."""
    out = copy.deepcopy({k: v for k, v in config.items() if k not in _FREE_KEYS})
    for ref in blank:
        _set_value(out, ref, "")
    return out


def stage_run_dir(plan: StagePlan) -> Path:
    """Where a cached stage trains (checkpoints and logs, resumable): beside its export."""
    return Path(plan.export).parent / "run"


def train_stage(plan: ModelPlan, stage: StagePlan, progress: bool = False) -> str:
    """Train one stage of ``plan`` into the cache (resuming a killed run); returns its export path.

    A lock file beside the export serialises trainers of the same key (two sweeps, or two Dask workers,
    that need one model): the second waits, then finds the export ready.
    """
    from filelock import FileLock  # (also a torch dependency)

    from sdjscc_phy.training import Trainer

    if stage.ready:
        return stage.export
    Path(stage.export).parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(Path(stage.export).parent / ".lock")):
        if stage.ready:
            return stage.export
        recipe = copy.deepcopy(plan.recipe)
        recipe["output_dir"] = str(stage_run_dir(stage))
        Trainer(recipe, resume=True, progress=progress, only=(stage.name,)).run()
    return stage.export


def write_standin(plan: ModelPlan, path: Path) -> bool:
    """An untrained export of the target stage's trained blocks, so a flowgraph can be validated before
    training: the target's flowgraph with every reference to a stage export not trained yet set to null
    (a fresh model built from the block's architecture parameters); False when the stage has no export."""
    from sdjscc_phy.training.recipe import export_groups, stage_flowgraphs

    recipe = copy.deepcopy(plan.recipe)
    config = next(s for s in recipe["stages"] if s["name"] == plan.stages[-1].name)
    if not config["export"]:
        return False
    pending = {s.export for s in plan.stages if not s.ready}
    for ref, value in _values(config):
        if isinstance(value, str) and value in pending:
            _set_value(config, ref, None if ref.startswith("variables.") else "null")
    train_fg, _ = stage_flowgraphs(recipe, config)
    blocks = export_groups(train_fg, config["train"])
    type(blocks[0]).export(blocks, str(path), {"standin": True})
    return True
