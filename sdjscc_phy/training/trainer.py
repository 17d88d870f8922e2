"""The trainer: optimises the blocks of a flowgraph, with checkpoints, exact resume, CSV curves and a NaN guard.

Per stage it loads the stage's flowgraph twice (training and validation runs, see
:func:`~sdjscc_phy.training.recipe.stage_flowgraphs`), lets blocks calibrate on training items, then runs
the training flowgraph's torch path with autograd batch by batch and minimises the sum of its loss blocks'
``weight`` x loss over the parameters of the ``train`` blocks. After every epoch it runs the validation
flowgraph in evaluation mode; its sinks' metrics (prefixed ``val_``) are the epoch's figures.

It writes ``<output_dir>/<stage>/last.pt`` (atomically, at the end of every epoch and every
``checkpoint_every_steps`` steps) and ``<output_dir>/<stage>/log.csv`` (one row per epoch: train loss,
validation metrics, learning rate, epoch time). ``resume=True`` continues from ``last.pt``: data order,
augmentation and channel noise are functions of (seed, stage, epoch, batch index) and the learning rate a
function of the step, so the resumed loss trajectory equals an uninterrupted run's.

Under ``torchrun`` or ``train(..., nproc=N)`` it trains data-parallel (:mod:`~sdjscc_phy.training.distributed`):
every rank runs its share of each batch, rank 0 validates and writes every file.
"""

from __future__ import annotations

import csv
import ctypes
import io
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from filelock import FileLock, Timeout
from tqdm import tqdm

from sdjscc_phy.core.flowgraph import Flowgraph
from sdjscc_phy.core.loss import LossBlock
from sdjscc_phy.core.scheduler import Scheduler, count_items, resolve_device
from sdjscc_phy.errors import CheckpointError, JsccflowError, RecipeError, TrainingError
from sdjscc_phy.io.paths import check_output_file, check_output_folder
from sdjscc_phy.training import distributed
from sdjscc_phy.training.checkpoint import (
    TRAIN_FORMAT, TRAIN_VERSION, atomic_torch_save, code_version, load_checkpoint, rng_state, seed_everything,
    set_rng_state,
)
from sdjscc_phy.training.distributed import World
from sdjscc_phy.training.optim import build_optimizer, clip_grad_norm, schedule_factor
from sdjscc_phy.training.recipe import FREE_KEYS, base_seed, export_groups, load_recipe, stage_flowgraphs, stage_seed

# on_step(trainer, stage, global_step, loss) runs after every optimiser step (tests stop runs with it).
StepCallback = Callable[["Trainer", "StageRun", int, float], None]


class StageRun:
    """One stage being trained: its flowgraphs, schedulers, trained blocks and loss blocks."""

    def __init__(self, recipe: dict, stage: dict, device: torch.device):
        self.config = stage
        self.name = stage["name"]
        self.device = device
        self.fg, self.val_fg = stage_flowgraphs(recipe, stage)
        self.trained = [self.fg.blocks[b] for b in stage["train"]]
        # a training step runs only what the weighted losses need (metric sinks, their classifiers and losses
        # of weight 0 wait for validation)
        self.losses = [b for b in self.fg.blocks.values() if isinstance(b, LossBlock) and b.p.weight > 0]
        self.needed = {b.id for b in self.losses} | {a for b in self.losses for a in _ancestors(self.fg, b.id)}
        for block in self.fg.blocks.values():  # frozen blocks pass gradients on but keep their weights
            if block.id not in stage["train"]:
                for module in block.modules().values():
                    module.requires_grad_(False)
                block.train(False)
        self.scheduler, self.val_scheduler = Scheduler(self.fg), Scheduler(self.val_fg)
        self.scheduler.setup()
        self.items = count_items(self.fg)
        self.batch_size = stage["batch_size"]
        self.monitor = stage["monitor"]

    def modules(self) -> dict[str, torch.nn.Module]:
        """The trained modules by ``<block id>.<name>`` (what a checkpoint holds)."""
        return {f"{b.id}.{name}": m for b in self.trained for name, m in b.modules().items()}

    def parameter_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        groups: dict[str, list[torch.nn.Parameter]] = {}
        for block in self.trained:
            for name, params in block.parameter_groups().items():
                groups.setdefault(name, []).extend(p for p in params if p.requires_grad)
        return groups

    def num_batches(self) -> int:
        return -(-self.items // self.batch_size)

    def set_training(self, mode: bool) -> None:
        for block in self.trained:
            block.train(mode)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config["precision"] == "bf16")

    def training_loss(self, epoch: int, index: int, world: World = World()) -> torch.Tensor:
        """The objective of batch ``index`` of ``epoch``: sum of weight x loss over the loss blocks. In
        data-parallel training, the objective of this rank's share times the share's fraction of the
        batch: the ranks' objectives sum to the batch's (for per-item losses)."""
        start = index * self.batch_size
        size = min(self.batch_size, self.items - start)
        offset, rows = world.share(size)
        if rows == 0:  # more ranks than items in the last batch
            return torch.zeros((), device=self.device)
        with self.autocast():
            self.scheduler.run_batch(index, start + offset, rows, epoch=epoch, training=True, only=self.needed,
                                     share=(offset, size) if world.size > 1 else None)
        objective = sum(loss.objective() for loss in self.losses)
        return objective * (rows / size) if world.size > 1 else objective

    def batch_statistics(self) -> list[str]:
        """What computes statistics over a batch (batch-level losses, BatchNorm in trained blocks): in
        data-parallel training these see a rank's share, not the whole batch."""
        found = [f"loss '{b.id}'" for b in self.losses if not type(b).per_item]
        found += [f"BatchNorm of '{key}'" for key, module in self.modules().items()
                  if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in module.modules())]
        return found

    @torch.no_grad()
    def calibrate(self, only_recalibrating: bool = False) -> None:
        """Give each calibrating block its inputs over the first training items of the calibration order
        (epoch -1: no augmentation, its own noise), with the trained blocks in evaluation mode."""
        wanted = {b.id: b.calibration_items() for b in self.fg.blocks.values() if b.id in self.needed
                  and b.calibration_items() and (b.recalibrate or not only_recalibrating)}
        if not wanted:
            return
        upstream = {src for b in wanted for src in _ancestors(self.fg, b)}
        count = min(max(wanted.values()), self.items)
        inputs: dict[str, list] = {b: [] for b in wanted}
        self.set_training(False)
        for index, start in enumerate(range(0, count, self.batch_size)):
            size = min(self.batch_size, count - start)
            values = self.scheduler.run_batch(index, start, size, epoch=-1, only=upstream - set(wanted))
            for block_id in wanted:
                if start < wanted[block_id]:
                    keep = min(size, wanted[block_id] - start)
                    inputs[block_id].append({port: values[src][:keep] for port, src
                                             in self.fg.upstream(block_id).items()})
        for block_id, batches in inputs.items():
            self.fg.blocks[block_id].calibrate(batches)
        self.set_training(True)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Run the validation flowgraph (evaluation mode, its own fixed noise); metrics prefixed ``val_``,
        ``val_loss`` = the objective's value on the validation items."""
        self.set_training(False)
        self.calibrate(only_recalibrating=True)
        self.set_training(False)
        scheduler, fg = self.val_scheduler, self.val_fg
        total, batch_size = count_items(fg), fg.options.batch_size
        scheduler.setup()
        try:
            for index, start in enumerate(range(0, total, batch_size)):
                with self.autocast():
                    scheduler.run_batch(index, start, min(batch_size, total - start))
        except BaseException:
            scheduler.abort()
            raise
        metrics = {f"val_{k}": v for k, v in scheduler.close().items()}
        losses = [b for b in fg.blocks.values() if isinstance(b, LossBlock)]
        if losses:
            metrics["val_loss"] = sum(b.p.weight * b.results()[f"loss_{b.id}"] for b in losses)
        self.set_training(True)
        return {k: v for k, v in metrics.items() if math.isfinite(v)}

    def export(self, path: str, metadata: dict) -> None:
        blocks = export_groups(self.fg, self.config["train"])
        self.calibrate(only_recalibrating=True)
        names = next((s.data.class_names for s in self.fg.sources if hasattr(s, "data")), None)
        type(blocks[0]).export(blocks, path, {**metadata, **({"class_names": list(names)} if names else {})})


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 32 << 20  # the largest glibc accepts on 64-bit systems
_TRIM_THRESHOLD = 1 << 30


def keep_freed_heap() -> bool:
    """Let glibc's malloc keep freed memory for the next training step instead of returning it to the system.

    By default glibc gives the top of the heap back once more than a (dynamic) threshold of it is free, and
    serves large blocks by mmap; each step of a CPU training then page-faults tens of MB of activations and
    gradients back in, zero-filled, inside the convolutions that first touch them (measured: 6,700-12,700
    minor faults per deep-JSCC step, 5-11 % of its CPU time; how many depends on the order in which a step
    frees its tensors; docs/training.md, "Speed"). Both thresholds are fixed together: fixing the trim threshold alone also freezes the
    mmap threshold at 128 KB, and every activation is then mmapped afresh. The process keeps its peak heap.
    True when set (glibc only; other C libraries keep their behaviour).
    """
    if platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))


def _ancestors(fg: Flowgraph, block_id: str) -> set[str]:
    """Every block ``block_id``'s inputs depend on."""
    found: set[str] = set()
    frontier = [block_id]
    while frontier:
        for src, _ in fg.upstream(frontier.pop()).values():
            if src not in found:
                found.add(src)
                frontier.append(src)
    return found


class Trainer:
    """Runs every stage of a normalised recipe (see :func:`~sdjscc_phy.training.recipe.load_recipe`)."""

    def __init__(
        self,
        recipe: dict,
        *,
        resume: bool = False,
        progress: bool = True,
        callbacks: tuple[StepCallback, ...] | list[StepCallback] = (),
        only: tuple[str, ...] | list[str] = (),
        report: bool | None = None,
        force: bool = False,
        backend: str | None = None,
    ):
        """``progress``: the step progress bar; ``report`` (default: as ``progress``): one line per epoch,
        resume and export on stderr, also without a bar (a log file then shows how training goes);
        ``force``: a fresh stage may replace an existing export file; ``backend``: the torch.distributed
        backend under torchrun (default: nccl on CUDA, gloo on the CPU)."""
        names = [stage["name"] for stage in recipe["stages"]]
        unknown = [name for name in only if name not in names]
        if unknown:
            raise RecipeError(f"recipe has no stage '{unknown[0]}' (stages: {', '.join(names)})")
        self.only = tuple(only)
        self.recipe = recipe
        self.resume = resume
        self.progress = progress
        self.report = progress if report is None else report
        self.callbacks = list(callbacks)
        self.force = force
        self.backend = backend
        self.world = World()
        self.output_dir = Path(recipe["output_dir"])
        self.step_losses: list[tuple[int, float]] = []  # (global step, loss) of the steps run by this process

    def run(self) -> dict[str, dict[str, float]]:
        """Train every stage in order; returns the final validation metrics per stage name."""
        if self.recipe["num_threads"]:
            torch.set_num_threads(int(self.recipe["num_threads"]))
        keep_freed_heap()
        device = resolve_device(self.recipe["device"], "recipe: device")
        self.world, self.device = distributed.join(device, self.backend)
        try:
            if self.device != device:  # the GPU of this rank (LOCAL_RANK)
                self.recipe = {**self.recipe, "device": str(self.device)}
            if not self.world.is_main:
                self.progress = self.report = False
            selected = [c for c in self.recipe["stages"] if not self.only or c["name"] in self.only]
            lock = self.world.on_main(lambda: self._prepare_output(selected))
            try:
                # a skipped stage's export must already exist for later stages that load it
                return {config["name"]: self._run_stage(config) for config in selected}
            finally:
                if lock is not None:
                    lock.release()
        finally:
            distributed.leave()

    def _prepare_output(self, stages: list[dict]) -> FileLock:
        """Check the exports and output_dir, create it and lock it (a second trainer on the same output_dir
        would interleave checkpoints: refuse it)."""
        self._check_exports(stages)
        check_output_folder(self.output_dir, "recipe: output_dir")
        self.output_dir.mkdir(parents=True, exist_ok=True)
        try:
            lock = FileLock(str(self.output_dir / ".lock"), timeout=0)
            lock.acquire()
        except Timeout:
            raise TrainingError(f"'{self.output_dir}' is in use by another training; wait for it to finish or "
                                "choose another output_dir") from None
        return lock

    def _check_exports(self, stages: list[dict]) -> None:
        """A stage that starts afresh must not silently replace an existing export (a shipped checkpoint,
        another run's model): only ``force`` allows it. A resumed stage rewrites its own export."""
        for config in stages:
            resumed = self.resume and (self.stage_dir(config["name"]) / "last.pt").exists()
            if config["export"]:
                check_output_file(config["export"], f"stage '{config['name']}': export", force=self.force or resumed,
                                  force_hint="pass --force or set another export path")

    def stage_dir(self, name: str) -> Path:
        return self.output_dir / name

    def _run_stage(self, config: dict) -> dict[str, float]:
        name = config["name"]
        ckpt_path = self.stage_dir(name) / "last.pt"
        if ckpt_path.exists() and not self.resume:
            raise TrainingError(f"stage '{name}': '{ckpt_path}' exists; resume it (--resume) or choose another output_dir")
        seed = stage_seed(self.recipe, config)
        seed_everything(seed)  # fresh blocks initialise their weights from the global generators
        stage = StageRun(self.recipe, config, self.device)
        stage.calibrate()
        modules = stage.modules()
        optimizer = build_optimizer(config["optimizer"], stage.parameter_groups(), f"recipe: stage '{name}'")
        max_norm = clip_grad_norm(config["optimizer"], f"recipe: stage '{name}'")
        factor = schedule_factor(config["schedule"], f"recipe: stage '{name}'")
        state = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "finished": False, "history": [],
                 "metrics": {}, "epoch_loss_sum": 0.0, "epoch_loss_count": 0, "epoch_time": 0.0}
        if self.resume and ckpt_path.exists():
            state = self._restore(ckpt_path, config, modules, optimizer)
        self.world.broadcast_modules(modules)
        if self.world.size > 1 and stage.batch_statistics():
            self._say(f"{name}: {', '.join(stage.batch_statistics())} see each process's share of a batch, not the "
                      "whole batch: this training differs from one process's")

        batches = stage.num_batches()
        total_steps = config["epochs"] * batches
        if not state["finished"]:
            self._train_loop(stage, modules, optimizer, max_norm, factor, state, batches, total_steps, ckpt_path)
        if config["export"] and (not Path(config["export"]).exists() or not state.get("exported")):
            # the other ranks wait: a later stage loads the export
            self.world.on_main(lambda: stage.export(config["export"], {
                "metrics": state["metrics"], "recipe": stored_stage(config), "seed": seed, "code_version": code_version(),
            }))
            state["exported"] = True
            self._save(ckpt_path, config, modules, optimizer, state)
            self._say(f"{name}: exported {config['export']}")
        return state["metrics"]

    def _train_loop(self, stage: StageRun, modules, optimizer, max_norm, factor, state, batches, total_steps,
                    ckpt_path):
        config = stage.config
        name, epochs = config["name"], config["epochs"]
        every = config["checkpoint_every_steps"]
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        bar = tqdm(
            total=total_steps, initial=state["global_step"], desc=name, unit="step", disable=not self.progress,
            mininterval=1.0 if sys.stderr.isatty() else 30.0, dynamic_ncols=True,
        )
        try:
            for epoch in range(state["epoch"], epochs):
                stage.set_training(True)
                t_start = time.perf_counter() - state["epoch_time"]
                for i in range(state["step_in_epoch"], batches):
                    lr_factor = factor(state["global_step"], total_steps)
                    for group in optimizer.param_groups:
                        group["lr"] = group["initial_lr"] * lr_factor
                    loss = stage.training_loss(epoch, i, self.world)
                    optimizer.zero_grad(set_to_none=True)
                    if loss.requires_grad:  # not on a rank whose share of a short last batch is empty
                        loss.backward()
                    loss_value = self.world.sum_gradients(parameters, loss)
                    if not math.isfinite(loss_value):
                        raise TrainingError(f"stage '{name}' epoch {epoch + 1} step {state['global_step'] + 1}: "
                                            f"loss is {loss_value}; {_kept(ckpt_path)}")
                    if max_norm is not None:
                        torch.nn.utils.clip_grad_norm_(parameters, max_norm)
                    optimizer.step()
                    state["global_step"] += 1
                    state["step_in_epoch"] = i + 1
                    state["epoch_loss_sum"] += loss_value
                    state["epoch_loss_count"] += 1
                    self.step_losses.append((state["global_step"], loss_value))
                    bar.update(1)
                    bar.set_postfix(epoch=f"{epoch + 1}/{epochs}", loss=f"{loss_value:.4f}", refresh=False,
                                    **self._shown(stage, state))
                    for callback in self.callbacks:
                        callback(self, stage, state["global_step"], loss_value)
                    if every and state["global_step"] % every == 0 and i + 1 < batches:
                        state["epoch_time"] = time.perf_counter() - t_start
                        self._save(ckpt_path, config, modules, optimizer, state)
                train_time = time.perf_counter() - t_start
                if not self.world.is_main:  # rank 0 validates alone, but each rank refits what validation refits
                    stage.calibrate(only_recalibrating=True)
                metrics = self.world.broadcast(self.world.on_main(stage.evaluate))
                row = {
                    "epoch": epoch + 1, "step": state["global_step"],
                    "train_loss": state["epoch_loss_sum"] / max(1, state["epoch_loss_count"]),
                    **metrics, "lr": _reported_lr(optimizer), "epoch_time_s": train_time,
                    "eval_time_s": time.perf_counter() - t_start - train_time,
                }
                state.update(epoch=epoch + 1, step_in_epoch=0, metrics=metrics, epoch_loss_sum=0.0,
                             epoch_loss_count=0, epoch_time=0.0, finished=epoch + 1 == epochs)
                state["history"] = state["history"] + [row]
                self._save(ckpt_path, config, modules, optimizer, state)
                self.world.on_main(lambda: self._write_csv(self.stage_dir(name) / "log.csv", state["history"]))
                shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items())
                self._say(f"{name} epoch {epoch + 1}/{epochs}: train_loss={row['train_loss']:.4f} {shown} "
                          f"lr={row['lr']:.4g} epoch_time={train_time:.1f}s eval_time={row['eval_time_s']:.1f}s")
        finally:
            bar.close()

    @staticmethod
    def _shown(stage: StageRun, state: dict) -> dict:
        value = state["metrics"].get(stage.monitor)
        return {stage.monitor: f"{value:.4f}"} if value is not None else {}

    def _say(self, line: str) -> None:
        if self.report:  # rank 0 only
            tqdm.write(line, file=sys.stderr)

    def _save(self, path: Path, config: dict, modules: dict, optimizer, state: dict) -> None:
        """Write ``last.pt`` (rank 0, with every rank's RNG state); parameters that went non-finite (a
        diverging step) never replace a good one."""
        rngs = self.world.gather(rng_state())
        self.world.on_main(lambda: self._write_checkpoint(path, config, modules, optimizer, state, rngs))

    def _write_checkpoint(self, path: Path, config: dict, modules: dict, optimizer, state: dict,
                          rngs: list[dict]) -> None:
        for key, module in modules.items():
            if not all(torch.isfinite(v).all() for v in module.state_dict().values() if v.is_floating_point()):
                raise TrainingError(f"stage '{config['name']}' step {state['global_step']}: "
                                    f"parameters of '{key}' became nan/inf; {_kept(path)}")
        atomic_torch_save({
            "format": TRAIN_FORMAT, "version": TRAIN_VERSION, "stage": config["name"],
            "modules": {k: m.state_dict() for k, m in modules.items()}, "optimizer": optimizer.state_dict(),
            "rng": rngs[0], "world_size": len(rngs), "rank_rng": rngs[1:], "state": state,
            "recipe": {**self.recipe, "stages": [stored_stage(s) for s in self.recipe["stages"]]},
            "code_version": code_version(),
        }, path)

    def _restore(self, path: Path, config: dict, modules: dict, optimizer) -> dict:
        ckpt = load_checkpoint(path)
        if ckpt.get("stage") != config["name"]:
            raise CheckpointError(f"checkpoint '{path}' belongs to stage '{ckpt.get('stage')}', not '{config['name']}'")
        self._check_same_recipe(path, ckpt, config)
        written_by = ckpt.get("world_size", 1)
        if written_by != self.world.size:
            raise CheckpointError(f"checkpoint '{path}' was written by a training of {written_by} process(es); resume "
                                  f"it with {written_by} (this one has {self.world.size})")
        try:
            if set(ckpt["modules"]) != set(modules):
                raise KeyError(f"modules {sorted(ckpt['modules'])} != {sorted(modules)}")
            for key, module in modules.items():
                module.load_state_dict(ckpt["modules"][key])
            optimizer.load_state_dict(ckpt["optimizer"])
            set_rng_state(ckpt["rng"] if self.world.is_main else ckpt["rank_rng"][self.world.rank - 1])
        except (KeyError, IndexError, ValueError, RuntimeError, TypeError) as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"checkpoint '{path}' does not match the recipe's model: {msg}") from None
        state = ckpt["state"]
        self._say(f"{config['name']}: resumed from '{path}' at epoch {state['epoch']} step {state['global_step']}")
        return state

    def _check_same_recipe(self, path: Path, ckpt: dict, config: dict) -> None:
        """A resumed run must follow the recipe it started with (epochs, schedule, flowgraph, set, seed...);
        only where the export goes and how often to checkpoint may change."""
        saved = next((s for s in ckpt.get("recipe", {}).get("stages", []) if s.get("name") == config["name"]), None)
        # a stage with its own seed never read the recipe's, which may then differ
        if saved is None or base_seed(ckpt["recipe"], saved) != base_seed(self.recipe, config):
            raise CheckpointError(f"checkpoint '{path}' was not written by this recipe (stage or seed differs)")
        before, now = _flatten(saved), _flatten(stored_stage(config))
        for key in sorted((before.keys() | now.keys()) - set(FREE_KEYS)):
            if before.get(key) != now.get(key):
                raise CheckpointError(f"checkpoint '{path}' was trained with {key}={before.get(key)!r}; "
                                      f"the recipe now says {now.get(key)!r} (use another output_dir)")

    @staticmethod
    def _write_csv(path: Path, rows: list[dict]) -> None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(buf.getvalue())
        os.replace(tmp, path)


def stored_stage(stage: dict) -> dict:
    """A stage as checkpoints store it: without the bookkeeping keys (its index, the YAML line numbers), and
    without ``seed`` when the stage has none of its own (stored as before stages could have one)."""
    return {k: v for k, v in stage.items() if k not in ("index", "lines") and not (k == "seed" and v is None)}


def _flatten(d: dict, prefix: str = "") -> dict:
    """``{'a': {'b': 1}}`` -> ``{'a.b': 1}``."""
    out = {}
    for key, value in d.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _kept(path: Path) -> str:
    return f"last good checkpoint kept: '{path}'" if path.exists() else "no checkpoint written yet"


def _reported_lr(optimizer: torch.optim.Optimizer) -> float:
    """The learning rate of the ``default`` parameter group (the first group when there is none)."""
    groups = [g for g in optimizer.param_groups if g.get("group_name") == "default"] or optimizer.param_groups
    return groups[0]["lr"]


def train(
    recipe_path: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    resume: bool = False,
    *,
    progress: bool = True,
    callbacks: tuple[StepCallback, ...] | list[StepCallback] = (),
    only: tuple[str, ...] | list[str] = (),
    report: bool | None = None,
    force: bool = False,
    nproc: int | None = None,
    backend: str | None = None,
) -> dict[str, dict[str, float]]:
    """Load ``recipe_path`` with ``KEY=VALUE`` overrides and train it (only the stages named in ``only``,
    if given); final metrics per stage. ``nproc``: train data-parallel in that many processes on this
    machine (``callbacks`` then run in every process and must be picklable); ``backend``: the
    torch.distributed backend (gloo or nccl; default nccl on CUDA, gloo on the CPU)."""
    if backend is not None and backend not in distributed.BACKENDS:
        raise JsccflowError(f"--backend: must be one of {', '.join(distributed.BACKENDS)}; got '{backend}'")
    if nproc is not None:
        distributed.check_nproc(nproc)
    recipe = load_recipe(recipe_path, overrides, check_flowgraphs=True, only=only or ())
    options = {"resume": resume, "progress": progress, "callbacks": callbacks, "only": only, "report": report,
               "force": force, "backend": backend}
    if nproc is None:
        return Trainer(recipe, **options).run()
    distributed.check_devices(nproc, resolve_device(recipe["device"], "recipe: device"), backend)
    return distributed.launch(nproc, _train_worker, str(recipe_path), list(overrides), options)


def _train_worker(recipe_path: str, overrides: list[str], options: dict) -> dict[str, dict[str, float]]:
    """One process of a data-parallel training started by :func:`train` (``nproc``)."""
    # the processes share the cores (torchrun sets OMP_NUM_THREADS=1); a recipe's num_threads wins
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["LOCAL_WORLD_SIZE"])))
    return Trainer(load_recipe(recipe_path, overrides, check_flowgraphs=True, only=options["only"] or ()),
                   **options).run()
