"""Training recipes: which flowgraph trains, which of its blocks, and how.

A recipe is YAML; its keys are declared below (:data:`RECIPE_KEYS`, :data:`STAGE_KEYS`,
:data:`VALIDATION_KEYS`) with the typed parameters blocks use, and validated all at once (every stage,
every key, every training flowgraph) with ``file:line`` before any training starts::

    seed: 0
    output_dir: ../runs/sdjscc_cifar10
    stages:
      - name: deepjscc
        flowgraph: ../flowgraphs/train/jscc_awgn.yaml   # relative to the recipe
        set: [enc.checkpoint=null, dec.checkpoint=null]   # --set overrides of the flowgraph
        train: [enc, dec]                                 # every other block is frozen
        epochs: 8
        optimizer: {name: Adam, lr: 0.001}
        validation: {set: [src.split=val]}                # what the validation run overrides
        export: ../sdjscc_phy/checkpoints/deepjscc_awgn.pt

``--set`` on a recipe takes dotted keys (``stages.deepjscc.epochs=2``; a stage by name or index,
``stages.sdjscc.variables.snr_db=10``); a string given to a ``set`` key adds one flowgraph override to
the list (``stages.sdjscc.set=semantic.tau=2``), a list replaces it.
Recipe paths (``output_dir``, ``flowgraph``, ``export``) resolve against the recipe's folder, and so do
variables given in the recipe or its ``--set`` that are written as paths (with a ``/``; see
:func:`_variable_value`) or name an earlier stage's export; paths inside flowgraphs and ``set`` are read
as ``jsccflow run`` reads them (relative to the working directory).
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
from collections.abc import Collection
from pathlib import Path

from sdjscc_phy.core.devices import device_problem
from sdjscc_phy.core.flowgraph import Flowgraph, load_flowgraph
from sdjscc_phy.core.loss import LossBlock
from sdjscc_phy.core.params import REQUIRED, Param, problem_parameter, resolve_params
from sdjscc_phy.core.yaml_lines import ErrorLines, brief, load_yaml_with_lines, parse_assignment, plain, source_line
from sdjscc_phy.errors import FlowgraphError, JsccflowError, ParameterError, RecipeError
from sdjscc_phy.io.paths import is_file, name_problem
from sdjscc_phy.training.optim import (
    OPTIMIZERS, SCHEDULES, clip_grad_norm, optimizer_argument_problems, schedule_factor,
)

RECIPE_KEYS: tuple[Param, ...] = (
    Param("seed", "int", 0, low=0, high=2**62 - 1, doc="stage i trains with seed + i: data order, noise, initialisation"),
    Param("output_dir", "path", REQUIRED, doc="checkpoints and log.csv, one folder per stage"),
    Param("num_threads", "int", None, low=1, high=1024, nullable=True, doc="torch CPU threads (default: torch's)"),
    Param("device", "str", "auto", doc="auto (the GPU when present) | cpu | cuda | cuda:N"),
    Param("variables", "mapping", {}, doc="flowgraph variables set in every stage whose flowgraph declares them "
                                          "(a string with a '/' is a path relative to the recipe)"),
    Param("set", "list[str]", [], doc="--set overrides applied to every stage's flowgraph"),
    Param("stages", "list", REQUIRED, doc="the stages, trained in order"),
)
STAGE_KEYS: tuple[Param, ...] = (
    Param("name", "str", REQUIRED, doc="stage name (output sub-folder, --stage)"),
    Param("flowgraph", "path", REQUIRED, doc="the training flowgraph, relative to the recipe"),
    Param("variables", "mapping", {}, doc="variables of the flowgraph (after the recipe's); a string with a '/' "
                                          "or naming an earlier stage's export is a path relative to the recipe"),
    Param("set", "list[str]", [], doc="--set overrides of the flowgraph (after the variables)"),
    Param("train", "list[str]", REQUIRED, doc="ids of the blocks to optimise; every other block is frozen"),
    Param("epochs", "int", 1, low=1, doc="passes over the training items"),
    Param("batch_size", "int", 128, low=1, unit="items", doc="items per optimiser step"),
    Param("precision", "str", "fp32", choices=("fp32", "bf16"), doc="bf16: torch.autocast on the device"),
    Param("optimizer", "mapping", {"name": "Adam", "lr": 1e-3},
          doc="name (any torch.optim class), its arguments, clip_grad_norm, group_scales"),
    Param("schedule", "mapping", {"kind": "constant"}, doc="learning-rate factor: kind and its parameters"),
    Param("checkpoint_every_steps", "int", 0, low=0, doc="also checkpoint every N steps (0: each epoch only)"),
    Param("seed", "int", None, low=0, high=2**62 - 1, nullable=True,
          doc="this stage's seed in place of the recipe's (it trains with seed + its index); other stages keep theirs"),
    Param("export", "path", None, nullable=True, doc="inference checkpoint of the trained blocks, written at the end"),
    Param("validation", "mapping", {}, doc="the validation run (keys below)"),
    Param("monitor", "str", "", doc="validation metric shown in the progress bar (e.g. val_psnr_db)"),
)
VALIDATION_KEYS: tuple[Param, ...] = (
    Param("set", "list[str]", [], doc="--set overrides of the validation run (e.g. src.split=val)"),
    Param("batch_size", "int", 500, low=1, unit="items", doc="items per validation batch"),
)
# Stage keys that say where files go or how often to checkpoint: a resumed run may change them.
FREE_KEYS = ("export", "checkpoint_every_steps")


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = (), check_flowgraphs: bool = False,
                only: Collection[str] = ()) -> dict:
    """Read, override and validate a recipe; RecipeError lists every problem.

    Without ``check_flowgraphs`` it checks the recipe's own keys and the variables its flowgraphs declare
    (cheap: no model or data is loaded); with it, also every stage's flowgraphs as training graphs (what
    ``jsccflow validate`` and the trainer do), or only those of the stages named in ``only`` (the ones a
    training will run: a stage left out need not be trainable as the overrides left it). Returns the
    normalised recipe: every key present, paths absolute, ``path`` the recipe file.
    """
    path = str(path)
    if not is_file(path):
        raise RecipeError(f"recipe '{path}' does not exist")
    raw = load_yaml_with_lines(path)  # syntax and hostile-text errors name file and line
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe must be a mapping with keys {', '.join(p.name for p in RECIPE_KEYS)}")
    if isinstance(raw.get("stages"), list):  # YAML aliases (&data / *data) share one object between stages:
        raw["stages"][:] = [copy.deepcopy(stage) for stage in raw["stages"]]  # an override must change one
    errors = ErrorLines(path)
    for item in overrides:
        try:
            apply_override(raw, item)
        except RecipeError as err:
            errors.add(str(err))
    recipe = _normalise(raw, Path(path).resolve().parent, errors)
    if not errors.lines:
        _check_variables(recipe, raw, errors)
    if not errors.lines and check_flowgraphs:
        runs = [s for s in recipe["stages"] if not only or s["name"] in only]
        for stage in runs:
            pending = [s["export"] for s in runs if s["index"] < stage["index"] and s["export"]]
            for message in check_stage(recipe, stage, [p for p in pending if not Path(p).exists()]):
                errors.add(message, stage["lines"].get("train"))
    if errors.lines:
        raise RecipeError(errors.lines)
    recipe["path"] = path
    return recipe


def _check_variables(recipe: dict, raw: dict, errors: ErrorLines) -> None:
    """Every stage variable is one its flowgraph declares; every recipe variable one some stage's declares."""
    declared = {s["index"]: flowgraph_variables(s["flowgraph"]) for s in recipe["stages"]}
    for name in sorted(set(recipe["variables"]) - set().union(*declared.values())):
        errors.add(f"key 'variables': no stage's flowgraph declares variable '{name}'", source_line(raw, "variables"))
    for stage in recipe["stages"]:
        for name in sorted(set(stage["variables"]) - declared[stage["index"]]):
            known = ", ".join(sorted(declared[stage["index"]])) or "none"
            errors.add(f"stage '{stage['name']}': key 'variables': its flowgraph declares no variable '{name}' "
                       f"(declared: {known})", stage["lines"].get("variables"))


def apply_override(recipe: dict, item: str) -> None:
    """Set ``recipe[a][b]... = value`` from ``'a.b...=value'``; the value is parsed as YAML."""
    if "=" not in item:
        raise RecipeError(f"--set {brief(item)}: expected KEY=VALUE")
    key, text = item.split("=", 1)
    try:
        value = plain(parse_assignment(item)[1]) if text.strip() else None
    except ParameterError as err:
        raise RecipeError(str(err)) from None
    parts = key.strip().split(".")
    node = recipe
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, list):
            index = _list_index(node, part)
            if index is None:
                raise RecipeError(f"--set {key}: no element '{part}' in '{'.'.join(parts[:depth])}'")
            if last:
                node[index] = value
            node = node[index]
        elif isinstance(node, dict):
            if last and part == "set" and isinstance(value, str):
                node[part] = [*(node.get(part) or []), value]
            elif last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise RecipeError(f"--set {key}: '{'.'.join(parts[:depth])}' is not a mapping or list")


def _list_index(node: list, part: str) -> int | None:
    if part.lstrip("-").isdigit():
        index = int(part)
        return index if -len(node) <= index < len(node) else None
    names = [i for i, item in enumerate(node) if isinstance(item, dict) and item.get("name") == part]
    return names[0] if names else None


def resolve_path(value: str | None, base: Path) -> str | None:
    """Absolute path of ``value`` (``~`` expanded; relative to ``base``); ``None`` stays ``None``."""
    if value is None:
        return None
    p = Path(str(value)).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def _resolve(declared: tuple[Param, ...], given: dict, where: str, errors: ErrorLines) -> dict:
    values, problems = resolve_params(declared, dict(given))
    for problem in problems:
        errors.add(f"{where}{problem.replace('parameter ', 'key ', 1)}", source_line(given, problem_parameter(problem)))
    resolved = {p.name: None if p.required else copy.deepcopy(p.default) for p in declared}  # the bad keys too
    resolved.update(vars(values))
    return {k: plain(v) for k, v in resolved.items()}  # checkpoints store the recipe: plain containers only


def _normalise(raw: dict, base: Path, errors: ErrorLines) -> dict:
    recipe = _resolve(RECIPE_KEYS, raw, "", errors)
    if isinstance(recipe["device"], str) and (problem := device_problem(recipe["device"])):
        errors.add(f"key 'device': {problem}", source_line(raw, "device"))
    if recipe["output_dir"] is not None:
        recipe["output_dir"] = resolve_path(recipe["output_dir"], base)
    recipe["variables"] = {k: _variable_value(v, base, set()) for k, v in recipe["variables"].items()}
    stages, seen = [], set()
    raw_stages = raw.get("stages") if isinstance(raw.get("stages"), list) else []
    if isinstance(raw.get("stages"), list) and not raw_stages:
        errors.add("key 'stages': needs at least one stage", source_line(raw, "stages"))
    for index, given in enumerate(raw_stages):
        line = raw_stages.item_lines[index] if hasattr(raw_stages, "item_lines") else None
        if not isinstance(given, dict):
            errors.add(f"stages[{index}]: must be a mapping", line)
            continue
        name = given.get("name", f"#{index}")
        where = f"stage {brief(name)}: "
        stage = _resolve(STAGE_KEYS, given, where, errors)
        if isinstance(stage["name"], str) and name_problem(stage["name"]):  # it names the stage's folder
            errors.add(f"{where}key 'name' {name_problem(stage['name'])}", source_line(given, "name"))
        stage["validation"] = _resolve(VALIDATION_KEYS, stage["validation"] or {}, f"{where}validation: ", errors)
        if isinstance(name, str) and name in seen:  # a name of another type is already an error
            errors.add(f"{where}the name is used twice", line)
        seen.add(name if isinstance(name, str) else "")
        _check_optimisation(stage, where, given, errors)
        for key in ("flowgraph", "export"):
            stage[key] = resolve_path(stage[key], base)
        if stage["flowgraph"] is not None and not is_file(stage["flowgraph"]):
            errors.add(f"{where}key 'flowgraph': file '{stage['flowgraph']}' does not exist", source_line(given, "flowgraph"))
        stage["index"] = index
        stage["lines"] = {key: source_line(given, key) for key in given}
        exports = {s["export"] for s in stages if s["export"]}
        stage["variables"] = {k: _variable_value(v, base, exports) for k, v in stage["variables"].items()}
        stages.append(stage)
    recipe["stages"] = stages
    return recipe


def _variable_value(value, base: Path, exports: set[str]):
    """A variable as the flowgraph receives it: a string written as a path (with a '/' or a leading '~'), or
    naming an earlier stage's export as that stage's ``export`` writes it, is a path relative to the recipe
    (absolute from here on); other values (numbers, shipped checkpoint names, modes) pass unchanged."""
    if not isinstance(value, str):
        return value
    resolved = resolve_path(value, base)
    return resolved if written_as_path(value) or resolved in exports else value


def written_as_path(value) -> bool:
    """A string with a path separator or a leading '~': a file, not a name (of a shipped checkpoint, a mode)."""
    return isinstance(value, str) and (any(sep and sep in value for sep in ("/", os.sep, os.altsep))
                                       or value.startswith("~"))


def _check_optimisation(stage: dict, where: str, given: dict, errors: ErrorLines) -> None:
    """The optimizer and schedule sections (their keys depend on the optimiser and the schedule kind)."""
    optimizer = stage["optimizer"]
    if isinstance(optimizer, dict):
        name = optimizer.get("name")
        if not isinstance(name, str) or name not in OPTIMIZERS:
            errors.add(f"{where}key 'optimizer': name must be a torch.optim optimiser (e.g. SGD, AdamW); "
                       f"got {name!r}", source_line(given, "optimizer"))
        else:
            for problem in optimizer_argument_problems(name, optimizer):
                errors.add(f"{where}key 'optimizer': {problem}", source_line(given, "optimizer"))
        try:
            clip_grad_norm(optimizer, where.rstrip(": "))
        except RecipeError as err:
            errors.add(str(err), source_line(given, "optimizer"))
    if isinstance(stage["schedule"], dict) and not isinstance(stage["schedule"].get("kind"), str):
        errors.add(f"{where}key 'schedule': kind must be one of {tuple(SCHEDULES)}; got {stage['schedule'].get('kind')!r}",
                   source_line(given, "schedule"))
    elif isinstance(stage["schedule"], dict):
        try:
            schedule_factor(stage["schedule"], where.rstrip(": "))
        except RecipeError as err:
            errors.add(str(err), source_line(given, "schedule"))


def base_seed(recipe: dict, stage: dict) -> int | None:
    """A stage's own ``seed`` key, else the recipe's."""
    return recipe.get("seed") if stage.get("seed") is None else stage["seed"]


def stage_seed(recipe: dict, stage: dict) -> int:
    """The seed a stage trains with: :func:`base_seed` plus its index."""
    return base_seed(recipe, stage) + stage["index"]


def flowgraph_overrides(recipe: dict, stage: dict, validation: bool) -> list[str]:
    """The ``--set`` list of a stage's training (or validation) flowgraph: the recipe's, the stage's, then
    the validation run's; options come from the recipe (seed + stage index, device, batch size, torch path)."""
    batch_size = stage["validation"]["batch_size"] if validation else stage["batch_size"]
    options = [f"options.seed={stage_seed(recipe, stage)}", f"options.device={recipe['device']}",
               f"options.batch_size={batch_size}", "options.path=torch"]
    declared = flowgraph_variables(stage["flowgraph"])
    variables = {k: v for k, v in recipe["variables"].items() if k in declared} | stage["variables"]
    return [*(f"{k}={json.dumps(v)}" for k, v in variables.items()), *recipe["set"], *stage["set"],
            *(stage["validation"]["set"] if validation else ()), *options]


def flowgraph_variables(path: str) -> frozenset[str]:
    """The variables a flowgraph file declares."""
    return frozenset(flowgraph_defaults(path))


def flowgraph_defaults(path: str) -> dict:
    """The variables a flowgraph file declares, with the values it gives them."""
    try:
        stat = os.stat(path)
    except OSError:  # the YAML reader says what is wrong with the path, in its one-line form
        return dict(_declared_variables.__wrapped__(path, 0, 0))
    return dict(_declared_variables(path, stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=64)
def _declared_variables(path: str, mtime_ns: int, size: int) -> tuple:
    """Parsed once per file version: a sweep dry run asks for every stage of every point (a third of its time)."""
    data = load_yaml_with_lines(path)
    variables = data.get("variables") if isinstance(data, dict) else None
    return tuple(variables.items()) if isinstance(variables, dict) else ()


def stage_flowgraphs(recipe: dict, stage: dict) -> tuple[Flowgraph, Flowgraph]:
    """(training, validation) flowgraphs of a stage. The validation flowgraph shares every block whose
    parameters the validation run leaves as they are (the trained ones included), so it runs the model
    being trained."""
    train_fg = load_flowgraph(stage["flowgraph"], flowgraph_overrides(recipe, stage, False))
    val_fg = load_flowgraph(stage["flowgraph"], flowgraph_overrides(recipe, stage, True))
    for block_id, block in val_fg.blocks.items():
        twin = train_fg.blocks.get(block_id)
        if twin is not None and type(twin) is type(block) and vars(twin.p) == vars(block.p):
            val_fg.blocks[block_id] = twin
    return train_fg, val_fg


def check_stage(recipe: dict, stage: dict, pending: list[str] = ()) -> list[str]:
    """Every problem of a stage's flowgraphs as training graphs (empty when it can train).

    ``pending``: exports of earlier stages not written yet. A block that loads one cannot be checked
    now; the stage is then checked in full when it starts (after the earlier stage wrote it)."""
    where = f"stage '{stage['name']}'"
    try:
        train_fg, val_fg = stage_flowgraphs(recipe, stage)
    except FlowgraphError as err:
        return [f"{where}: {line}" for line in err.errors if not _loads_pending(line, pending)]
    except JsccflowError as err:
        return [f"{where}: {err}"]
    problems = [f"{where}: {p}" for p in check_training_graph(train_fg, stage["train"])]
    for block_id in stage["train"]:
        if block_id in train_fg.blocks and val_fg.blocks.get(block_id) is not train_fg.blocks[block_id]:
            problems.append(f"{where}: validation: set changes trained block '{block_id}'; validate the model "
                            "being trained")
    if stage["export"] and not problems:
        try:
            export_groups(train_fg, stage["train"])
        except RecipeError as err:
            problems.append(f"{where}: {err}")
    return problems


def _loads_pending(line: str, pending: list[str]) -> bool:
    """Whether an error line is about loading one of the ``pending`` exports (by path or shipped name)."""
    names = {str(Path(p).resolve()) for p in pending} | {Path(p).stem for p in pending}
    quoted = re.findall(r"'([^']+)'", line)
    return any(q in names or str(Path(q).expanduser().resolve()) in names for q in quoted)


def is_differentiable(block) -> bool:
    """A block passes gradients when it declares so and has a torch path at all."""
    return type(block).differentiable and "torch" in type(block).available_paths()


def check_training_graph(fg: Flowgraph, train: list[str]) -> list[str]:
    """Problems of ``fg`` as a graph that trains the blocks ``train``, one line each with the flowgraph's file:line."""
    problems: list[str] = []

    def add(message: str, block_id: str | None = None) -> None:
        line = fg.block_lines.get(block_id) if block_id else None
        problems.append(f"{fg.path}:{line}: {message}" if line else f"{fg.path}: {message}")

    trained = []
    for block_id in train:
        block = fg.blocks.get(block_id)
        if block is None:
            add(f"train: no block '{block_id}' in the flowgraph (blocks: {', '.join(fg.blocks)})")
        elif "torch" not in type(block).available_paths():
            add(f"train: block '{block_id}' ({type(block).type_name}) has no torch path", block_id)
        elif not any(p.requires_grad for m in block.modules().values() for p in m.parameters()):
            add(f"train: block '{block_id}' ({type(block).type_name}) has no trainable parameters", block_id)
        else:
            trained.append(block_id)
    losses = [b.id for b in fg.blocks.values() if isinstance(b, LossBlock)]
    if not losses:
        add("a training flowgraph needs a loss block (mse_loss, semantic_loss, ...)")
    downstream = {b: _reachable(fg, b, gradient=False) for b in fg.blocks}
    for loss in losses:
        if not any(loss in downstream[t] for t in train if t in fg.blocks):
            add(f"loss '{loss}' has no trained block upstream (train: {', '.join(train)})", loss)
    for block_id in trained:
        reached = _reachable(fg, block_id, gradient=True)
        for loss in losses:
            if loss in downstream[block_id] and loss not in reached:
                between = [b for b in fg.blocks if b in downstream[block_id] and loss in downstream[b]
                           and not is_differentiable(fg.blocks[b])]
                blocker = (f"non-differentiable block '{between[0]}' ({type(fg.blocks[between[0]]).type_name})"
                           if between else "a port without gradient (an integer or noise-variance output)")
                add(f"{blocker} lies between trained block '{block_id}' and loss '{loss}': no gradient reaches it",
                    between[0] if between else loss)
        if not any(loss in downstream[block_id] for loss in losses):
            add(f"trained block '{block_id}' has no loss downstream", block_id)
    return problems


def _reachable(fg: Flowgraph, start: str, gradient: bool) -> set[str]:
    """Blocks whose inputs depend on ``start``; with ``gradient``, only through differentiable float outputs
    and on only through differentiable blocks, i.e. the blocks whose inputs carry gradients back to ``start``."""
    seen: set[str] = set()
    frontier = [start]
    while frontier:
        current = frontier.pop()
        for conn in fg.connections:
            if conn.src != current or conn.dst in seen:
                continue
            port = type(fg.blocks[conn.src]).output_port(conn.src_port)
            if gradient and (port.dtype == "int64" or not port.differentiable):
                continue
            seen.add(conn.dst)
            if not gradient or is_differentiable(fg.blocks[conn.dst]):
                frontier.append(conn.dst)
    return seen


def export_groups(fg: Flowgraph, train: list[str]) -> list:
    """The blocks one export writes: every block of the flowgraph sharing the trained blocks' export format."""
    families = {type(fg.blocks[b]).export.__func__ for b in train}
    if len(families) != 1:
        names = sorted({type(fg.blocks[b]).type_name for b in train})
        raise RecipeError(f"export: the trained blocks ({', '.join(names)}) have different export formats; "
                          "train them in separate stages")
    family = families.pop()
    return [b for b in fg.blocks.values() if type(b).export.__func__ is family]
