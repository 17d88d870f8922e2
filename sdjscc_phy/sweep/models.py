"""Models a sweep trains: plans keyed by recipe hash, the cache that holds them, stage-1 reuse.

A method with ``train: {recipe, stage, set}`` needs the export of ``stage`` from the recipe with those
overrides. Every stage the target depends on (through ``init_from``/``classifier`` pointing at an
earlier stage's export) gets a key: SHA-256 of its resolved configuration (everything but where files
go), the recipe seed, its position, and the keys or file digests of what it loads. So:

- a stage whose configuration the overrides leave as the recipe has it, and whose export exists (the
  shipped ``deepjscc_awgn.pt`` for stage ``deepjscc`` of ``recipes/sdjscc_cifar10.yaml``), is reused
  as it is: changing only stage-2 parameters (``gsw.tau``, ``gsw.mode``) retrains only stage 2, from
  the shipped stage-1 model (the paper's procedure);
- any other stage is trained once into ``<models>/<stage>-<key>/`` (``jsccflow train`` with ``--stage``
  and ``init_from`` rewired to the cached upstream export), resumably, and reused by every later point
  or sweep whose resolved stage has the same key.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from sdjscc_phy.errors import JsccflowError, RecipeError
from sdjscc_phy.io.paths import is_file
from sdjscc_phy.sweep.spec import TrainSpec, file_digest
from sdjscc_phy.training.recipe import get_dotted, set_dotted

# Stage keys that say where files go or how often to checkpoint: not part of what a stage computes.
_FREE_KEYS = ("export", "checkpoint_every_steps")


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
    from sdjscc_phy.training.stages import STAGE_KINDS

    base = load_recipe(train.recipe)
    recipe = load_recipe(train.recipe, list(train.overrides))
    names = [s["name"] for s in recipe["stages"]]
    if train.stage not in names:
        raise RecipeError(f"recipe '{train.recipe}' has no stage '{train.stage}' (stages: {', '.join(names)})")
    by_export = {s["export"]: i for i, s in enumerate(recipe["stages"]) if s["export"]}
    target = names.index(train.stage)
    needed = _dependencies(recipe, target, by_export, STAGE_KINDS)
    plans: dict[int, StagePlan] = {}
    rewired = copy.deepcopy(recipe)
    for index in sorted(needed):
        config = rewired["stages"][index]
        path_keys = STAGE_KINDS[config["kind"]].PATH_KEYS
        inputs, depends = {}, []
        unchanged = (index < len(base["stages"]) and recipe["seed"] == base["seed"]
                     and _identity(config, ()) == _identity(base["stages"][index], ()))
        for key in path_keys:
            value = get_dotted(config, key)
            upstream = by_export.get(value) if value else None
            if upstream is not None and upstream < index:
                plan = plans[upstream]
                set_dotted(config, key, plan.export)
                inputs[key] = plan.key
                depends.append(plan.key)
                unchanged = unchanged and plan.reused
            elif value and is_file(value):
                inputs[key] = file_digest(value)
        identity = {"stage": _identity(config, path_keys), "inputs": inputs, "seed": recipe["seed"] + index}
        key = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
        original = base["stages"][index]["export"] if index < len(base["stages"]) else None
        if unchanged and original and is_file(original):
            export, reused = original, True
        else:
            export, reused = str(Path(models_dir) / f"{config['name']}-{key}" / f"{config['name']}.pt"), False
        config["export"] = export
        plans[index] = StagePlan(config["name"], index, key, export, reused, depends)
    return ModelPlan(train, rewired, [plans[i] for i in sorted(plans)])


def _dependencies(recipe: dict, target: int, by_export: dict, kinds: dict) -> set[int]:
    """``target`` and every earlier stage whose export it (transitively) loads."""
    needed, todo = set(), [target]
    while todo:
        index = todo.pop()
        if index in needed:
            continue
        needed.add(index)
        config = recipe["stages"][index]
        for key in kinds[config["kind"]].PATH_KEYS:
            upstream = by_export.get(get_dotted(config, key))
            if upstream is not None and upstream < index:
                todo.append(upstream)
    return needed


def _identity(config: dict, path_keys: tuple[str, ...]) -> dict:
    """A stage's configuration without the keys that do not change what it computes."""
    out = copy.deepcopy(config)
    for key in _FREE_KEYS:
        out.pop(key, None)
    for key in path_keys:  # loaded checkpoints enter the key by content, not by where they lie
        if key in ("init_from", "classifier"):
            set_dotted(out, key, None)
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
    """An untrained export with the target stage's model and link, so a flowgraph can be validated before
    training; False for stage kinds without one (the flowgraph then validates with its own checkpoint)."""
    config = plan.target
    if config["kind"] != "jscc":
        return False
    from sdjscc_phy.models.jscc import JsccCodec, codec_config, export_codec
    from sdjscc_phy.phy.link import LinkConfig

    try:
        link = LinkConfig(**config["link"])
        codec = JsccCodec(codec_config(config["model"], link.num_bits_per_symbol))
    except (JsccflowError, TypeError, ValueError) as exc:
        raise RecipeError(f"recipe '{plan.train.recipe}': stage '{config['name']}': {exc}") from None
    export_codec(codec, path, link.as_dict(), {"standin": True})
    return True
